//! Tests of the simulator's credential lifecycle modes: tokens that survive revocation, several
//! secrets per client (rotation), and the per-client counters a shared-credential test reads.
//! In-process ones run on `tokio::time::pause()`; the `/sim/` control API ones over real sockets.

use std::time::Duration;

use tokio::time::advance;

use super::state::TokenOutcome;
use super::test_http::request;
use super::tests::{get, get_token, start, token_basic};
use super::{Faults, SimOptions, Simulator};

const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// No spacing and one-minute tokens, with client `org` / `old`.
fn sim() -> Simulator {
    let sim = Simulator::new(SimOptions {
        token_min_interval: Duration::ZERO,
        token_lifetime: Duration::from_secs(60),
        ..SimOptions::default()
    });
    sim.add_client("org", "old");
    sim
}

fn issue(sim: &Simulator, secret: &str) -> String {
    match sim.state.issue("org", secret) {
        TokenOutcome::Issued { token, .. } => token,
        other => panic!("expected a token, got {other:?}"),
    }
}

fn answers(sim: &Simulator, token: &str) -> bool {
    sim.state.authorized("org", token)
}

fn survive(sim: &Simulator, on: bool) {
    assert!(sim.update_faults("org", |f| f.tokens_survive_revocation = on));
}

#[tokio::test(start_paused = true)]
async fn by_default_revocation_kills_issued_tokens_at_once() {
    let sim = sim();
    let token = issue(&sim, "old");
    assert!(sim.revoke("org"));
    assert!(!answers(&sim, &token));
    assert!(sim.issued_tokens("org").is_empty());
}

#[tokio::test(start_paused = true)]
async fn surviving_tokens_answer_after_revocation_until_they_expire() {
    let sim = sim();
    survive(&sim, true);
    let token = issue(&sim, "old");
    advance(Duration::from_secs(20)).await;
    assert!(sim.revoke("org"));
    assert_eq!(sim.state.issue("org", "old"), TokenOutcome::Rejected);
    assert!(answers(&sim, &token));
    assert_eq!(sim.issued_tokens("org"), vec![token.clone()]);
    advance(Duration::from_secs(39)).await;
    assert!(answers(&sim, &token), "still inside its 60 s lifetime");
    advance(Duration::from_secs(1)).await;
    assert!(!answers(&sim, &token), "expired");
}

#[tokio::test(start_paused = true)]
async fn the_survival_mode_counts_when_the_credentials_go_away() {
    let sim = sim();
    // Spared at revocation: turning the mode off later does not kill the token.
    survive(&sim, true);
    let spared = issue(&sim, "old");
    sim.revoke("org");
    survive(&sim, false);
    assert!(answers(&sim, &spared));
    // Killed at revocation (with the mode off, all of the client's tokens go, the one spared
    // earlier too): turning the mode on later does not bring them back.
    sim.restore("org");
    let killed = issue(&sim, "old");
    sim.revoke("org");
    survive(&sim, true);
    assert!(!answers(&sim, &killed));
    assert!(!answers(&sim, &spared));
    // Restoring lets new tokens through again.
    sim.restore("org");
    let fresh = issue(&sim, "old");
    assert!(answers(&sim, &fresh));
}

#[tokio::test(start_paused = true)]
async fn every_current_secret_obtains_tokens_and_each_is_counted() {
    let sim = sim();
    assert!(sim.add_secret("org", "new"));
    assert!(
        sim.add_secret("org", "new"),
        "adding an accepted secret again is harmless"
    );
    assert!(!sim.add_secret("nobody", "new"));
    let old = issue(&sim, "old");
    let new = issue(&sim, "new");
    issue(&sim, "new");
    assert_eq!(sim.state.issue("org", "wrong"), TokenOutcome::Rejected);
    let stats = sim.client_stats("org").expect("org");
    assert_eq!(stats.secrets, 2);
    assert_eq!(stats.tokens_issued_per_secret, vec![1, 2]);
    assert_eq!(stats.tokens_issued, 3);
    assert!(answers(&sim, &old) && answers(&sim, &new));
}

#[tokio::test(start_paused = true)]
async fn removing_a_secret_kills_only_the_tokens_it_issued() {
    let sim = sim();
    sim.add_secret("org", "new");
    let old = issue(&sim, "old");
    let new = issue(&sim, "new");
    assert!(sim.remove_secret("org", "old"));
    assert!(!sim.remove_secret("org", "old"), "already removed");
    assert!(!sim.remove_secret("org", "never"));
    assert!(!sim.remove_secret("nobody", "new"));
    assert!(!answers(&sim, &old));
    assert!(answers(&sim, &new));
    assert_eq!(sim.issued_tokens("org"), vec![new]);

    assert_eq!(sim.state.issue("org", "old"), TokenOutcome::Rejected);
    assert_eq!(sim.state.issue("org", "wrong"), TokenOutcome::Rejected);
    let stats = sim.client_stats("org").expect("org");
    assert_eq!(
        (
            stats.secrets,
            stats.tokens_issued_per_secret,
            stats.removed_secret_rejections
        ),
        (1, vec![1, 1], 1),
        "only the removed secret counts as a rotation not followed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_removed_secrets_tokens_survive_until_expiry_in_survival_mode() {
    let sim = sim();
    survive(&sim, true);
    sim.add_secret("org", "new");
    let old = issue(&sim, "old");
    assert!(sim.remove_secret("org", "old"));
    assert_eq!(sim.state.issue("org", "old"), TokenOutcome::Rejected);
    advance(Duration::from_secs(59)).await;
    assert!(answers(&sim, &old));
    advance(Duration::from_secs(1)).await;
    assert!(!answers(&sim, &old));
}

#[tokio::test(start_paused = true)]
async fn removing_the_last_secret_leaves_no_working_credentials() {
    let sim = sim();
    assert!(sim.remove_secret("org", "old"));
    assert_eq!(sim.state.issue("org", "old"), TokenOutcome::Rejected);
    assert_eq!(sim.client_stats("org").map(|s| s.secrets), Some(0));
    // Adding it back is a new secret with its own count.
    sim.add_secret("org", "old");
    issue(&sim, "old");
    let per_secret = sim.client_stats("org").map(|s| s.tokens_issued_per_secret);
    assert_eq!(per_secret, Some(vec![0, 1]));
}

#[tokio::test(start_paused = true)]
async fn add_client_on_an_existing_client_still_just_replaces_its_secret() {
    let sim = sim();
    sim.add_secret("org", "second");
    let token = issue(&sim, "old");
    sim.add_client("org", "replaced");
    assert_eq!(sim.state.issue("org", "old"), TokenOutcome::Rejected);
    assert_eq!(sim.state.issue("org", "second"), TokenOutcome::Rejected);
    issue(&sim, "replaced");
    // As before several secrets existed, tokens already issued stay valid.
    assert!(answers(&sim, &token));
    let stats = sim.client_stats("org").expect("org");
    assert_eq!(
        (stats.secrets, stats.tokens_issued_per_secret),
        (1, vec![1, 0, 1])
    );
    // Registering the same secret again (two orgs sharing a client) changes nothing.
    sim.add_client("org", "replaced");
    assert_eq!(
        sim.client_stats("org")
            .map(|s| s.tokens_issued_per_secret.len()),
        Some(3)
    );
}

#[tokio::test(start_paused = true)]
async fn the_token_spacing_is_per_client_whichever_secret_is_sent() {
    let sim = sim();
    sim.update_options(|o| o.token_min_interval = Duration::from_secs(10));
    sim.add_secret("org", "new");
    issue(&sim, "old");
    advance(Duration::from_secs(4)).await;
    assert_eq!(
        sim.state.issue("org", "new"),
        TokenOutcome::RateLimited {
            retry_after: Duration::from_secs(6)
        }
    );
    advance(Duration::from_secs(6)).await;
    issue(&sim, "new");
}

#[tokio::test]
async fn control_api_adds_and_removes_secrets() {
    let (sim, addr) = start(SimOptions::default()).await;
    let new = br#"{"secret":"secret1b"}"#;
    let added = request(addr, "POST", "/sim/clients/org1/secrets", &JSON, new).await;
    assert_eq!(added.status, 204);
    let token = get_token(addr, "org1", "secret1b").await;

    let old = br#"{"secret":"secret1"}"#;
    let path = "/sim/clients/org1/secrets/remove";
    assert_eq!(request(addr, "POST", path, &JSON, old).await.status, 204);
    let again = request(addr, "POST", path, &JSON, old).await;
    assert_eq!(
        (again.status, again.body.as_str()),
        (404, "unknown secret\n")
    );
    assert_eq!(token_basic(addr, "org1", "secret1").await.status, 403);
    assert_eq!(
        get(addr, "/v2/client/org1/ping", Some(&token)).await.status,
        200
    );

    let stats = get(addr, "/sim/clients/org1/stats", None).await.json();
    assert_eq!(stats["secrets"], 1);
    assert_eq!(stats["tokens_issued_per_secret"], serde_json::json!([0, 1]));
    assert_eq!(stats["removed_secret_rejections"], 1);
    assert_eq!(stats["rejected"], 1);
    assert!(!stats.to_string().contains("secret1"), "{stats}");
    assert_eq!(sim.client_stats("org1").map(|s| s.secrets), Some(1));

    for path in [
        "/sim/clients/nobody/secrets",
        "/sim/clients/nobody/secrets/remove",
    ] {
        let reply = request(addr, "POST", path, &JSON, new).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, "unknown client\n"),
            "{path}"
        );
    }
    let typo = br#"{"client_secret":"x"}"#;
    let refused = request(addr, "POST", "/sim/clients/org1/secrets", &JSON, typo).await;
    assert!(refused.status >= 400, "{}", refused.status);
    assert_eq!(sim.client_stats("org1").map(|s| s.secrets), Some(1));
}

#[tokio::test]
async fn control_api_switches_tokens_that_survive_revocation() {
    let (sim, addr) = start(SimOptions::default()).await;
    let faults = br#"{"tokens_survive_revocation":true}"#;
    let put = request(addr, "PUT", "/sim/clients/org1/faults", &JSON, faults).await;
    assert_eq!(put.status, 204);
    assert_eq!(
        sim.faults("org1"),
        Some(Faults {
            tokens_survive_revocation: true,
            ..Faults::default()
        })
    );
    let token = get_token(addr, "org1", "secret1").await;
    let revoked = request(addr, "POST", "/sim/clients/org1/revoke", &[], b"").await;
    assert_eq!(revoked.status, 204);
    for path in ["/v2/client/org1/ping", "/v1/ping/org1", "/v2/client/org1"] {
        assert_eq!(get(addr, path, Some(&token)).await.status, 200, "{path}");
    }
    // The token endpoint refuses as for any revoked client (spacing aside: 403, not 429).
    sim.update_options(|o| o.token_min_interval = Duration::ZERO);
    assert_eq!(token_basic(addr, "org1", "secret1").await.status, 403);
    let got = get(addr, "/sim/clients/org1/faults", None).await.json();
    assert_eq!(got["tokens_survive_revocation"], true);
}

#[tokio::test]
async fn a_shared_clients_counters_show_tokens_and_spacing_refusals() {
    // Two requesters with the same credentials at the same moment: one token, one 429, and the
    // client's counters (in-process and over the control API) say so.
    let (sim, addr) = start(SimOptions::default()).await;
    let (a, b) = tokio::join!(
        token_basic(addr, "org1", "secret1"),
        token_basic(addr, "org1", "secret1")
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 429]);
    let stats = sim.client_stats("org1").expect("org1");
    assert_eq!(
        (
            stats.token_requests,
            stats.tokens_issued,
            stats.rate_limited,
            stats.rejected
        ),
        (2, 1, 1, 0)
    );
    assert_eq!(stats.tokens_issued_per_secret, vec![1]);
    let json = get(addr, "/sim/clients/org1/stats", None).await.json();
    assert_eq!(
        (json["tokens_issued"].clone(), json["rate_limited"].clone()),
        (1.into(), 1.into())
    );
    // The other client is untouched.
    assert_eq!(sim.client_stats("org2").map(|s| s.token_requests), Some(0));
}
