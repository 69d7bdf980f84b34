//! Token cache rules, driven by a fake token endpoint under paused time.

use super::*;
use secrecy::ExposeSecret;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

const POLICY: TokenPolicy = TokenPolicy {
    refresh_margin: Duration::from_secs(60),
    min_interval: Duration::from_secs(10),
    max_age: Duration::from_secs(3600),
    check_interval: Duration::ZERO,
};
const BUDGET: Duration = Duration::from_secs(10);

/// A scripted token endpoint: records when it was called and answers from a closure.
#[derive(Clone)]
struct FakeEndpoint {
    calls: Arc<StdMutex<Vec<Instant>>>,
    counter: Arc<AtomicU64>,
    answer: Arc<dyn Fn(u64) -> Result<Option<Duration>, TokenFailure> + Send + Sync>,
}

impl FakeEndpoint {
    fn new(
        answer: impl Fn(u64) -> Result<Option<Duration>, TokenFailure> + Send + Sync + 'static,
    ) -> Self {
        FakeEndpoint {
            calls: Arc::default(),
            counter: Arc::default(),
            answer: Arc::new(answer),
        }
    }

    fn lifetime(secs: u64) -> Self {
        Self::new(move |_| Ok(Some(Duration::from_secs(secs))))
    }

    async fn acquire(&self, cache: &TokenCache, replace: Option<u64>) -> Acquired {
        let this = self.clone();
        cache
            .acquire(BUDGET, replace, move || async move {
                this.calls.lock().unwrap().push(Instant::now());
                let n = this.counter.fetch_add(1, Ordering::SeqCst);
                // Answering takes a little time, like a real endpoint.
                tokio::time::sleep(Duration::from_millis(50)).await;
                (this.answer)(n).map(|expires_in| IssuedToken {
                    access_token: SecretString::from(format!("token-{n}")),
                    expires_in,
                })
            })
            .await
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

fn failure(reason: Reason) -> TokenFailure {
    TokenFailure {
        reason,
        retry_after: None,
        detail: String::new(),
    }
}

fn assert_spaced(calls: &[Instant], min: Duration) {
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= min, "token requests only {gap:?} apart");
    }
}

#[tokio::test(start_paused = true)]
async fn reuses_the_token_until_the_refresh_margin() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    let first = endpoint.acquire(&cache, None).await;
    assert!(!first.reused && first.request.is_some());
    for _ in 0..230 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = endpoint.acquire(&cache, None).await;
        assert!(again.reused && again.request.is_none());
        assert_eq!(again.token.unwrap().generation, 1);
    }
    tokio::time::sleep(Duration::from_secs(10)).await; // past 300 - 60
    let refreshed = endpoint.acquire(&cache, None).await;
    assert!(!refreshed.reused);
    assert_eq!(refreshed.token.unwrap().generation, 2);
    assert_eq!(endpoint.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn short_lived_tokens_are_never_requested_closer_than_the_minimum_interval() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(3);
    for _ in 0..120 {
        endpoint.acquire(&cache, None).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let calls = endpoint.calls();
    assert!(calls.len() >= 8, "only {} requests", calls.len());
    assert_spaced(&calls, POLICY.min_interval);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_share_one_request() {
    let cache = Arc::new(TokenCache::new(POLICY));
    let endpoint = FakeEndpoint::lifetime(300);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (cache, endpoint) = (cache.clone(), endpoint.clone());
        tasks.push(tokio::spawn(
            async move { endpoint.acquire(&cache, None).await },
        ));
    }
    let mut fetched = 0;
    for task in tasks {
        let acquired = task.await.unwrap();
        assert!(acquired.token.is_some());
        fetched += usize::from(acquired.request.is_some());
    }
    assert_eq!(fetched, 1);
    assert_eq!(endpoint.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn retry_after_holds_back_requests() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Err(TokenFailure {
            reason: Reason::RateLimited,
            retry_after: Some(Duration::from_secs(30)),
            detail: String::new(),
        }),
        _ => Ok(Some(Duration::from_secs(300))),
    });
    let start = Instant::now();
    let first = endpoint.acquire(&cache, None).await;
    assert!(first.token.is_none());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let acquired = endpoint.acquire(&cache, None).await;
        if acquired.token.is_some() {
            break;
        }
        assert_eq!(acquired.withheld, Some(Withheld::NotYet));
    }
    let calls = endpoint.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1] - start >= Duration::from_secs(30));
    assert!(calls[1] - start < Duration::from_secs(32));
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_exponentially_up_to_five_minutes() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|_| Err(failure(Reason::ServerError)));
    for _ in 0..1800 {
        endpoint.acquire(&cache, None).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let calls = endpoint.calls();
    let gaps: Vec<Duration> = calls.windows(2).map(|p| p[1] - p[0]).collect();
    // 10, 20, 40, 80, 160, 300, 300 … each with up to 20 % jitter, rounded up to whole seconds.
    assert!(gaps[0] >= Duration::from_secs(10) && gaps[0] <= Duration::from_secs(13));
    assert!(gaps[1] >= Duration::from_secs(20) && gaps[1] <= Duration::from_secs(25));
    assert!(gaps[2] >= Duration::from_secs(40) && gaps[2] <= Duration::from_secs(49));
    for gap in &gaps[5..] {
        assert!(*gap >= Duration::from_secs(300) && *gap <= Duration::from_secs(302));
    }
}

#[tokio::test(start_paused = true)]
async fn a_rejection_marks_credentials_invalid_and_is_retried_at_a_later_run() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Err(failure(Reason::Rejected)),
        _ => Ok(Some(Duration::from_secs(300))),
    });
    assert_eq!(cache.snapshot(), Snapshot::default());
    let first = endpoint.acquire(&cache, None).await;
    assert!(first.token.is_none());
    assert_eq!(cache.snapshot().credentials_valid, Some(false));
    // A later run waits out the spacing (it fits the budget) and asks again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = endpoint.acquire(&cache, None).await;
    assert!(later.token.is_some());
    assert_eq!(cache.snapshot().credentials_valid, Some(true));
    assert_spaced(&endpoint.calls(), POLICY.min_interval);
}

#[tokio::test(start_paused = true)]
async fn callers_waiting_behind_a_rejection_do_not_ask_again() {
    let cache = Arc::new(TokenCache::new(POLICY));
    let endpoint = FakeEndpoint::new(|_| Err(failure(Reason::Rejected)));
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let (cache, endpoint) = (cache.clone(), endpoint.clone());
        tasks.push(tokio::spawn(
            async move { endpoint.acquire(&cache, None).await },
        ));
    }
    let mut withheld = 0;
    for task in tasks {
        let acquired = task.await.unwrap();
        withheld += usize::from(acquired.withheld == Some(Withheld::AfterRejection));
    }
    assert_eq!(withheld, 4);
    assert_eq!(endpoint.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_leave_credential_validity_unchanged() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Ok(Some(Duration::from_secs(30))),
        _ => Err(failure(Reason::Timeout)),
    });
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let failed = endpoint.acquire(&cache, None).await;
    assert!(failed.token.is_none());
    assert_eq!(cache.snapshot().credentials_valid, Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_keeps_using_the_token_still_valid() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Ok(Some(Duration::from_secs(300))),
        _ => Err(failure(Reason::ServerError)),
    });
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(250)).await; // inside the 60 s margin
    let acquired = endpoint.acquire(&cache, None).await;
    assert!(acquired.reused);
    assert_eq!(acquired.token.unwrap().generation, 1);
    assert!(acquired.request.unwrap().result.is_err());
    // In backoff the valid token is still served without another request.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(endpoint.acquire(&cache, None).await.reused);
    assert_eq!(endpoint.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn without_expires_in_the_token_is_reused_up_to_max_age_less_the_margin() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|_| Ok(None));
    endpoint.acquire(&cache, None).await;
    // The expiry is unknown: no gauge value is made up from the reuse cap.
    assert_eq!(cache.snapshot().token_expires_at, None);
    assert_eq!(cache.snapshot().credentials_valid, Some(true));
    tokio::time::sleep(Duration::from_secs(3530)).await;
    assert!(endpoint.acquire(&cache, None).await.reused);
    tokio::time::sleep(Duration::from_secs(15)).await; // past 3600 - 60
    assert!(!endpoint.acquire(&cache, None).await.reused);
    assert_eq!(endpoint.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_reset_drops_the_token_but_keeps_the_spacing() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    endpoint.acquire(&cache, None).await;
    cache.reset(POLICY);
    assert_eq!(cache.snapshot().token_expires_at, None);
    assert_eq!(cache.snapshot().credentials_valid, Some(true));
    let after = endpoint.acquire(&cache, None).await;
    assert!(after.token.is_some() && !after.reused);
    assert_spaced(&endpoint.calls(), POLICY.min_interval);
}

#[tokio::test(start_paused = true)]
async fn an_enormous_retry_after_is_capped_at_an_hour() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Err(TokenFailure {
            reason: Reason::RateLimited,
            retry_after: Some(Duration::from_secs(u64::MAX / 4)),
            detail: String::new(),
        }),
        _ => Ok(Some(Duration::from_secs(u64::MAX / 4))),
    });
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(MAX_RETRY_AFTER + Duration::from_secs(1)).await;
    let later = endpoint.acquire(&cache, None).await;
    assert!(later.token.is_some(), "{later:?}");
}

#[tokio::test(start_paused = true)]
async fn replacing_a_refused_token_waits_for_the_spacing_when_it_fits() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    let first = endpoint.acquire(&cache, None).await.token.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = endpoint.acquire(&cache, Some(first.generation)).await;
    assert_eq!(fresh.token.unwrap().generation, 2);
    assert_spaced(&endpoint.calls(), POLICY.min_interval);

    // A budget too short for the spacing gives no token and sends nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls_before = endpoint.calls().len();
    let short = cache
        .acquire(Duration::from_secs(2), Some(2), || async {
            Ok(IssuedToken {
                access_token: SecretString::from("unused"),
                expires_in: None,
            })
        })
        .await;
    assert_eq!(short.withheld, Some(Withheld::NotYet));
    assert_eq!(endpoint.calls().len(), calls_before);
}

#[tokio::test(start_paused = true)]
async fn a_token_replaced_by_another_caller_is_not_replaced_twice() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let second = endpoint.acquire(&cache, Some(1)).await.token.unwrap();
    assert_eq!(second.generation, 2);
    // A second org that also saw generation 1 refused gets generation 2 without a request.
    let other = endpoint.acquire(&cache, Some(1)).await;
    assert!(other.reused);
    assert_eq!(other.token.unwrap().generation, 2);
    assert_eq!(endpoint.calls().len(), 2);
}

#[test]
fn backoff_grows_and_caps() {
    let base = Duration::from_secs(10);
    assert!(backoff_delay(base, 0) >= base && backoff_delay(base, 0) <= Duration::from_secs(12));
    assert!(backoff_delay(base, 3) >= Duration::from_secs(80));
    for step in 5..40 {
        assert!(backoff_delay(base, step) <= MAX_BACKOFF);
        assert!(backoff_delay(base, step) >= Duration::from_secs(240));
    }
    // A minimum interval longer than the cap still wins: spacing is never broken.
    assert_eq!(
        backoff_delay(Duration::from_secs(600), 2),
        Duration::from_secs(600)
    );
}

#[test]
fn debug_output_redacts_the_access_token() {
    let token = Token {
        access_token: SecretString::from("super-secret-token"),
        generation: 1,
        expires_at: Some(SystemTime::UNIX_EPOCH),
    };
    let shown = format!("{token:?}");
    assert!(!shown.contains("super-secret-token"));
    assert_eq!(token.access_token.expose_secret(), "super-secret-token");
}

#[tokio::test(start_paused = true)]
async fn a_discarded_token_is_gone_but_a_newer_one_is_kept() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    let first = endpoint.acquire(&cache, None).await.token.unwrap();
    cache.discard(first.generation);
    assert_eq!(cache.snapshot().token_expires_at, None);
    // The next caller asks for a new token, after the spacing.
    let second = endpoint.acquire(&cache, None).await.token.unwrap();
    assert!(second.generation > first.generation);
    assert_spaced(&endpoint.calls(), POLICY.min_interval);
    // Discarding an older generation leaves the newer token in hand.
    cache.discard(first.generation);
    assert!(cache.snapshot().token_expires_at.is_some());
}

proptest::proptest! {
    /// Whatever the policy (even beyond what config validation allows) and whatever the server
    /// answers (huge `expires_in`, huge `Retry-After`), the cache's clock arithmetic never panics.
    #[test]
    fn huge_policies_and_server_values_never_panic(
        margin in proptest::prelude::any::<u64>(),
        min_interval in proptest::prelude::any::<u64>(),
        max_age in 1u64..,
        check_interval in proptest::prelude::any::<u64>(),
        expires_in in proptest::option::of(proptest::prelude::any::<u64>()),
        retry_after in proptest::prelude::any::<u64>(),
        step in proptest::prelude::any::<u32>(),
    ) {
        let _ = backoff_delay(Duration::from_secs(min_interval), step);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let cache = TokenCache::new(TokenPolicy {
                refresh_margin: Duration::from_secs(margin),
                min_interval: Duration::from_secs(min_interval),
                max_age: Duration::from_secs(max_age),
                check_interval: Duration::from_secs(check_interval),
            });
            let ok = cache
                .acquire(BUDGET, None, || async move {
                    Ok(IssuedToken {
                        access_token: SecretString::from("t".to_string()),
                        expires_in: expires_in.map(Duration::from_secs),
                    })
                })
                .await;
            assert!(ok.token.is_some());
            let generation = ok.token.map(|t| t.generation);
            let _ = cache
                .acquire(BUDGET, generation, || async move {
                    Err(TokenFailure {
                        reason: Reason::RateLimited,
                        retry_after: Some(Duration::from_secs(retry_after)),
                        detail: String::new(),
                    })
                })
                .await;
            let _ = cache.snapshot();
        });
    }
}

mod credential_check;
mod rotation;
