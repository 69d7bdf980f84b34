//! Credentials that change (a rotated secret): the token is dropped, the client's published state
//! and the spacing are kept, and answers to requests that carried the old secret are superseded.

use super::*;

#[tokio::test(start_paused = true)]
async fn a_change_drops_the_token_but_keeps_validity_and_spacing() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    endpoint.acquire(&cache, None).await;
    let verified = cache.snapshot().last_verified;
    assert!(cache.change_credentials(|| true));
    let snapshot = cache.snapshot();
    assert_eq!(snapshot.token_expires_at, None);
    assert_eq!(snapshot.credentials_valid, Some(true));
    assert_eq!(snapshot.last_verified, verified);
    let next = endpoint.acquire(&cache, None).await;
    assert!(!next.reused && next.token.is_some());
    assert_spaced(&endpoint.calls(), POLICY.min_interval);
}

#[tokio::test(start_paused = true)]
async fn a_change_that_changed_nothing_keeps_the_token() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    endpoint.acquire(&cache, None).await;
    assert!(!cache.change_credentials(|| false));
    assert!(endpoint.acquire(&cache, None).await.reused);
    assert_eq!(endpoint.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_rejection_of_the_old_secret_is_superseded_and_not_reported() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    endpoint.acquire(&cache, None).await;
    tokio::time::sleep(Duration::from_secs(300)).await; // the token has expired
                                                        // The secret changes while the request with the old one is in flight; the old one is refused.
    let acquired = cache
        .acquire(BUDGET, None, || async {
            cache.credentials_changed();
            Err(failure(Reason::Rejected))
        })
        .await;
    let request = acquired.request.expect("a request was sent");
    assert!(request.superseded);
    assert_eq!(request.result.unwrap_err().reason, Reason::Rejected);
    assert!(acquired.token.is_none());
    assert_eq!(cache.snapshot().credentials_valid, Some(true));
    // The next request (spacing kept, no hold-back after a rejection) carries the new secret.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let next = endpoint.acquire(&cache, None).await;
    assert!(next.token.is_some(), "{next:?}");
    assert!(started.elapsed() >= POLICY.min_interval - Duration::from_millis(200));
    assert!(!next.request.unwrap().superseded);
}

#[tokio::test(start_paused = true)]
async fn a_token_obtained_with_the_old_secret_serves_its_caller_only() {
    let cache = TokenCache::new(POLICY);
    let endpoint = FakeEndpoint::lifetime(300);
    let acquired = cache
        .acquire(BUDGET, None, || async {
            cache.credentials_changed();
            Ok(IssuedToken {
                access_token: SecretString::from("old-secret-token"),
                expires_in: Some(Duration::from_secs(300)),
            })
        })
        .await;
    assert!(acquired.request.as_ref().unwrap().superseded);
    assert!(acquired.token.is_some());
    assert_eq!(cache.snapshot().credentials_valid, None, "nothing said yet");
    assert_eq!(cache.snapshot().token_expires_at, None);
    let next = endpoint.acquire(&cache, None).await;
    assert!(!next.reused, "the old secret's token is not cached");
    assert_eq!(cache.snapshot().credentials_valid, Some(true));
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_in_flight_during_a_change_still_backs_off() {
    let cache = TokenCache::new(POLICY);
    let acquired = cache
        .acquire(BUDGET, None, || async {
            cache.credentials_changed();
            Err(failure(Reason::RateLimited))
        })
        .await;
    assert!(acquired.request.unwrap().superseded);
    let short = cache
        .acquire(Duration::from_secs(1), None, || async {
            Err(failure(Reason::ServerError))
        })
        .await;
    assert_eq!(
        short.withheld,
        Some(Withheld::NotYet),
        "the server asked us to slow down"
    );
}
