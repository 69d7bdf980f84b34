//! One credential, one state: orgs that share a credential move together, a token that outlives
//! a revocation is caught by `credential_check_interval`, `--shard` keeps a credential's orgs
//! together, and a labels-only reload restarts nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use obf_exporter::config::shard::Shard;
use obf_exporter::fleet::controller::{load, ConfigSource};
use obf_sim::Faults;

use crate::cli::TempDir;
use crate::support::{get, parse_config, App, TestSim};

fn series(family: &str, org: &str) -> String {
    format!("{family}{{org=\"{org}\"}}")
}

async fn post(url: &str) -> (u16, String) {
    let response = reqwest::Client::new().post(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_sharing_a_credential_move_together() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    // b runs every second; b2 shares its client but runs once an hour, so after its first run
    // only b ever talks to the token endpoint.
    let mut config = sim.org(
        "b",
        "SHARED",
        "interval = \"1s\"\ntoken_min_interval = \"1s\"",
    );
    config.push_str(&format!(
        "[[org]]\nname = \"b2\"\nclient_id = \"SHARED\"\nclient_secret = \"SHARED-secret-value\"\n\
         host = \"{}\"\ninterval = \"1h\"\ntoken_min_interval = \"1s\"\n",
        sim.url()
    ));
    sim.sim.revoke("SHARED");
    let app = App::spawn(&config).await;
    for org in ["b", "b2"] {
        app.wait_for(
            &series("obf_credentials_valid", org),
            Duration::from_secs(10),
            |v| v == 0.0,
        )
        .await;
    }

    sim.sim.restore("SHARED");
    app.wait_for(
        &series("obf_credentials_valid", "b"),
        Duration::from_secs(10),
        |v| v == 1.0,
    )
    .await;
    // The same scrape that shows b accepted shows b2 accepted, with the same token and time.
    let metrics = app.metrics().await;
    for family in [
        "obf_credentials_valid",
        "obf_token_expiry_timestamp_seconds",
        "obf_credentials_last_verified_timestamp_seconds",
    ] {
        let b = crate::support::metric_value(&metrics, &series(family, "b"));
        let b2 = crate::support::metric_value(&metrics, &series(family, "b2"));
        assert!(b.is_some(), "{family} missing:\n{metrics}");
        assert_eq!(b, b2, "{family} differs between b and b2");
    }
    // The status page agrees with the metrics for b2, which has not run since.
    let (_, status) = get(&app.url("/api/status")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let b2 = status["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["org"] == "b2")
        .expect("b2 on the status page");
    assert_eq!(b2["credentials_valid"], true, "{b2}");
    assert!(b2["credentials_last_verified"].as_f64().is_some(), "{b2}");
    app.stop().await;
}

/// OBF may honour tokens issued before a revocation (self-contained tokens): the simulator's
/// `tokens_survive_revocation` keeps pings answering with the old token while the token endpoint
/// refuses the credentials. Only the periodic credential check can see the revocation then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_outlives_revocation_is_caught_within_the_check_interval() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let timing = "interval = \"1s\"\ntoken_min_interval = \"1s\"\ntimeout = \"2s\"";
    let mut config = sim.org(
        "checked",
        "CHECKED",
        &format!("{timing}\ncredential_check_interval = \"3s\""),
    );
    config.push_str(&sim.org(
        "unchecked",
        "UNCHECKED",
        &format!("{timing}\ncredential_check_interval = \"0s\""),
    ));
    let app = App::spawn(&config).await;
    for org in ["checked", "unchecked"] {
        app.wait_for(
            &series("obf_credentials_valid", org),
            Duration::from_secs(10),
            |v| v == 1.0,
        )
        .await;
    }
    let verified = app
        .value(&series(
            "obf_credentials_last_verified_timestamp_seconds",
            "checked",
        ))
        .await
        .expect("last verified is set after an accepted token request");

    // Old tokens keep working after the revocation, as self-contained tokens would.
    for client in ["CHECKED", "UNCHECKED"] {
        sim.sim.set_faults(
            client,
            Faults {
                tokens_survive_revocation: true,
                ..Faults::default()
            },
        );
        sim.sim.revoke(client);
    }
    let revoked = Instant::now();
    app.wait_for(
        &series("obf_credentials_valid", "checked"),
        Duration::from_secs(15),
        |v| v == 0.0,
    )
    .await;
    // Check interval 3 s + one run + slack for a loaded machine.
    assert!(
        revoked.elapsed() < Duration::from_secs(12),
        "{:?}",
        revoked.elapsed()
    );
    assert_eq!(
        app.value(&series(
            "obf_credentials_last_verified_timestamp_seconds",
            "checked"
        ))
        .await,
        Some(verified),
        "a rejection does not move the last acceptance"
    );
    // Without the check the old token keeps the org green: the gap this setting closes.
    assert_eq!(
        app.value(&series("obf_credentials_valid", "unchecked"))
            .await,
        Some(1.0)
    );
    assert_eq!(
        app.value(&series("obf_ping_success", "unchecked")).await,
        Some(1.0)
    );
    assert!(
        sim.sim.client_stats("UNCHECKED").unwrap().rejected == 0,
        "the unchecked org asked for no token"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_that_fails_transiently_changes_nothing() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let config = sim.org(
        "acme",
        "FLAKY",
        "interval = \"1s\"\ntoken_min_interval = \"1s\"\ntimeout = \"2s\"\ncredential_check_interval = \"2s\"",
    );
    let app = App::spawn(&config).await;
    let last_verified = series("obf_credentials_last_verified_timestamp_seconds", "acme");
    app.wait_for(&last_verified, Duration::from_secs(10), |_| true)
        .await;
    sim.sim
        .update_faults("FLAKY", |f| f.token_status = Some(503));
    let verified = app.value(&last_verified).await;
    app.wait_for(
        "obf_token_refresh_failures_total{org=\"acme\",reason=\"server_error\"}",
        Duration::from_secs(15),
        |v| v >= 1.0,
    )
    .await;
    let metrics = app.metrics().await;
    let value = |s: &str| crate::support::metric_value(&metrics, s);
    assert_eq!(value(&series("obf_credentials_valid", "acme")), Some(1.0));
    assert_eq!(
        value(&series("obf_ping_success", "acme")),
        Some(1.0),
        "the token in hand is still used"
    );
    assert_eq!(value(&last_verified), verified);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_labels_only_reload_keeps_the_schedule_and_the_token() {
    let sim = TestSim::with_spacing(Duration::from_millis(200)).await;
    let dir = TempDir::new("relabel");
    // Once an hour: any restart of the org would show as a second run right after the reload.
    let org = sim.org(
        "acme",
        "RELABEL",
        "interval = \"1h\"\nlabels = { team = \"a\" }",
    );
    let path = dir.write("config.toml", &org);
    let app = App::spawn_file(&path).await;
    let pings = "obf_pings_total{org=\"acme\",result=\"success\"}";
    app.wait_for(pings, Duration::from_secs(10), |v| v == 1.0)
        .await;

    dir.write("config.toml", &org.replace("team = \"a\"", "team = \"b\""));
    let (status, body) = post(&app.url("/-/reload")).await;
    assert_eq!(status, 200, "{body}");
    let metrics = app.metrics().await;
    assert!(metrics.contains("team=\"b\""), "{metrics}");
    assert!(!metrics.contains("team=\"a\""), "{metrics}");
    let (_, status) = get(&app.url("/api/status")).await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["orgs"][0]["labels"]["team"], "b", "{status}");

    // Give a restarted org time to run: it would run at once, send a ping and ask for a token.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.value(pings).await, Some(1.0), "the org ran again");
    let stats = sim.sim.client_stats("RELABEL").unwrap();
    assert_eq!(stats.token_requests, 1, "the token was dropped");
    assert_eq!(stats.pings, 1);
    app.stop().await;
}

/// `--shard` splits by credential: every org in exactly one shard, and the orgs of one credential
/// (host spelt in different ways) always together, for every shard count tried.
#[test]
fn shards_split_by_credential() {
    let mut text = String::new();
    let mut credential_of = BTreeMap::new();
    for i in 0..60 {
        let credential = i % 17;
        let host = match i % 3 {
            0 => "https://obf.example",
            1 => "HTTPS://OBF.example:443/",
            _ => "https://obf.example/",
        };
        text.push_str(&format!(
            "[[org]]\nname = \"org-{i}\"\nclient_id = \"CLIENT{credential}\"\n\
             client_secret = \"secret-{credential}\"\nhost = \"{host}\"\n"
        ));
        credential_of.insert(format!("org-{i}"), credential);
    }
    let source = ConfigSource::Fixed(Box::new(parse_config(&text)));
    for count in 1..=6 {
        let mut seen = Vec::new();
        for index in 0..count {
            let shard = Shard { index, count };
            let config = load(&source, Some(shard)).expect("config loads");
            let credentials: BTreeSet<_> = config
                .orgs
                .iter()
                .map(|org| credential_of[org.name.as_str()])
                .collect();
            for org in credential_of
                .iter()
                .filter(|(_, c)| credentials.contains(c))
            {
                assert!(
                    config.orgs.iter().any(|o| o.name.as_str() == org.0),
                    "{} is not with the other orgs of its credential in shard {shard}",
                    org.0
                );
            }
            seen.extend(config.orgs.iter().map(|o| o.name.to_string()));
        }
        assert_eq!(
            seen.len(),
            60,
            "{count} shards: an org in two shards or none"
        );
        let unique: BTreeSet<_> = seen.into_iter().collect();
        assert_eq!(unique.len(), 60);
    }
}
