//! `credential_check_interval`, the request slot (no waiting behind a request with a working
//! token) and the published credential state.

use super::*;

const HOURLY: TokenPolicy = TokenPolicy {
    check_interval: Duration::from_secs(3600),
    ..POLICY
};

#[tokio::test(start_paused = true)]
async fn a_token_older_than_the_check_interval_is_replaced_and_verified_again() {
    let cache = TokenCache::new(HOURLY);
    let endpoint = FakeEndpoint::lifetime(18_000);
    endpoint.acquire(&cache, None).await;
    let first_verified = cache.snapshot().last_verified.unwrap();
    tokio::time::sleep(Duration::from_secs(3599)).await;
    assert!(endpoint.acquire(&cache, None).await.reused);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let checked = endpoint.acquire(&cache, None).await;
    assert!(!checked.reused);
    assert_eq!(checked.token.unwrap().generation, 2);
    assert_eq!(endpoint.calls().len(), 2);
    // Wall time does not move under a paused clock, but the timestamp is written again.
    assert!(cache.snapshot().last_verified.unwrap() >= first_verified);
}

#[tokio::test(start_paused = true)]
async fn a_check_rejected_drops_the_token_and_marks_the_credentials_invalid() {
    let cache = TokenCache::new(HOURLY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Ok(Some(Duration::from_secs(18_000))),
        _ => Err(failure(Reason::Rejected)),
    });
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let checked = endpoint.acquire(&cache, None).await;
    assert!(
        checked.token.is_none(),
        "the old token is not used after a rejection"
    );
    let snapshot = cache.snapshot();
    assert_eq!(snapshot.credentials_valid, Some(false));
    assert_eq!(snapshot.token_expires_at, None);
    // The last acceptance stays what it was.
    assert!(snapshot.last_verified.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_check_that_fails_transiently_keeps_the_token_and_the_state() {
    let cache = TokenCache::new(HOURLY);
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Ok(Some(Duration::from_secs(18_000))),
        _ => Err(failure(Reason::ServerError)),
    });
    endpoint.acquire(&cache, None).await;
    let before = cache.snapshot();
    tokio::time::sleep(Duration::from_secs(3601)).await;
    let checked = endpoint.acquire(&cache, None).await;
    assert!(checked.reused && checked.request.is_some());
    assert_eq!(checked.token.unwrap().generation, 1);
    assert_eq!(cache.snapshot(), before);
    // Backoff as always: the next run reuses the token without asking.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(endpoint.acquire(&cache, None).await.request.is_none());
    assert_eq!(endpoint.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_new_policy_keeps_the_token_and_judges_it_by_the_new_rules() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(18_000);
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    cache.set_policy(TokenPolicy {
        check_interval: Duration::from_secs(300),
        ..POLICY
    });
    assert!(cache.snapshot().credentials_valid.is_some());
    assert!(!endpoint.acquire(&cache, None).await.reused);
}

#[tokio::test(start_paused = true)]
async fn a_caller_with_a_working_token_never_waits_behind_a_request() {
    let cache = Arc::new(TokenCache::new(POLICY));
    // The refresh request takes 5 s to answer.
    let slow = FakeEndpoint::lifetime(300);
    slow.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(250)).await; // inside the margin: a refresh is due
    let (refresher, slow_cache) = (slow.clone(), cache.clone());
    let refresh = tokio::spawn(async move {
        slow_cache
            .acquire(BUDGET, None, move || async move {
                refresher.calls.lock().unwrap().push(Instant::now());
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(IssuedToken {
                    access_token: SecretString::from("new"),
                    expires_in: Some(Duration::from_secs(300)),
                })
            })
            .await
    });
    tokio::time::sleep(Duration::from_secs(1)).await; // the refresh is in flight
    let started = Instant::now();
    let meanwhile = slow.acquire(&cache, None).await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "waited behind the request"
    );
    assert!(meanwhile.reused && meanwhile.request.is_none());
    assert_eq!(meanwhile.token.unwrap().generation, 1);
    assert_eq!(refresh.await.unwrap().token.unwrap().generation, 2);
    assert_eq!(slow.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn callers_without_a_token_share_the_request_sleeping_for_the_spacing() {
    let cache = Arc::new(TokenCache::new(POLICY));
    let endpoint = FakeEndpoint::lifetime(300);
    let first = endpoint.acquire(&cache, None).await.token.unwrap();
    // One org saw the token refused and waits out the spacing for a fresh one.
    let (waiter, waiting_cache) = (endpoint.clone(), cache.clone());
    let replace =
        tokio::spawn(async move { waiter.acquire(&waiting_cache, Some(first.generation)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Another org has no token either (it was dropped): it queues behind and shares the answer.
    let started = Instant::now();
    let shared = endpoint.acquire(&cache, None).await;
    assert!(shared.reused && shared.token.unwrap().generation == 2);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(replace.await.unwrap().token.unwrap().generation, 2);
    // A caller whose budget cannot cover the spacing learns so at once, instead of queueing
    // behind the sleeping request until its budget runs out.
    let (waiter, waiting_cache) = (endpoint.clone(), cache.clone());
    let again = tokio::spawn(async move { waiter.acquire(&waiting_cache, Some(2)).await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let short = cache
        .acquire(Duration::from_secs(2), None, || async {
            Err(failure(Reason::ServerError))
        })
        .await;
    assert_eq!(short.withheld, Some(Withheld::NotYet));
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(again.await.unwrap().token.unwrap().generation, 3);
    assert_spaced(&endpoint.calls(), POLICY.min_interval);
}

#[tokio::test(start_paused = true)]
async fn every_answer_is_published_for_the_orgs_of_the_credential() {
    let cache = TokenCache::new(POLICY);
    let published = cache.credential();
    let endpoint = FakeEndpoint::new(|n| match n {
        0 => Ok(Some(Duration::from_secs(300))),
        _ => Err(failure(Reason::Rejected)),
    });
    endpoint.acquire(&cache, None).await;
    assert_eq!(published.snapshot().credentials_valid, Some(true));
    assert!(published.snapshot().token_expires_at.is_some());
    assert!(published.snapshot().last_verified.is_some());
    cache.credentials_changed();
    // The token is gone; what is known about the client stays until the new secret is answered.
    let after = published.snapshot();
    assert_eq!(after.token_expires_at, None);
    assert_eq!(after.credentials_valid, Some(true));
    assert!(after.last_verified.is_some());
}
