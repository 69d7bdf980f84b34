//! Secrets and access tokens never leave the process: not in logs at trace level, not in metrics,
//! not in error output. Runs the real binary.

use std::time::Duration;

use obf_sim::Faults;

use crate::cli::{Agent, TempDir};
use crate::support::{get, TestSim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_tokens_never_appear_in_logs_or_metrics() {
    let sim = TestSim::with_spacing(Duration::from_millis(500)).await;
    let secrets = [
        ("BASICORG", "basic-secret-7f3a9c1e"),
        ("BODYORG", "body-secret-52d8e0b4"),
        ("REVOKEDORG", "revoked-secret-c41f77aa"),
        ("FORBIDORG", "forbid-secret-9be0d3f2"),
    ];
    for (client_id, secret) in secrets {
        sim.sim.add_client(client_id, secret);
    }
    sim.sim.revoke("REVOKEDORG");
    sim.sim.set_faults(
        "FORBIDORG",
        Faults {
            ping_status: Some(403),
            ..Faults::default()
        },
    );
    let dir = TempDir::new("secrets");
    let mut config =
        String::from("[defaults]\ninterval = \"1s\"\ntoken_min_interval = \"500ms\"\n");
    for (i, (client_id, secret)) in secrets.iter().enumerate() {
        let secret_file = dir.write(&format!("secret{i}"), &format!("{secret}\n"));
        let auth = if i % 2 == 0 { "basic" } else { "body" };
        config.push_str(&format!(
            "[[org]]\nname = \"org{i}\"\nclient_id = \"{client_id}\"\nclient_secret_file = \"{}\"\nhost = \"{}\"\nauth = \"{auth}\"\n",
            secret_file.display(),
            sim.url()
        ));
    }
    let config_path = dir.write("config.toml", &config);

    let agent = Agent::start(&config_path, &[("RUST_LOG", "trace")]).await;
    let mut scraped = String::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        scraped.push_str(&get(&format!("http://{}/metrics", agent.addr)).await.1);
    }
    let logs = agent.stop().await;

    let stats = sim.sim.stats();
    assert!(stats.tokens_issued >= 3, "{stats:?}");
    assert!(
        logs.contains("TRACE") || logs.contains("trace"),
        "trace logging was on"
    );
    let mut tokens = Vec::new();
    for (client_id, _) in secrets {
        tokens.extend(sim.sim.issued_tokens(client_id));
    }
    assert!(!tokens.is_empty());
    for (_, secret) in secrets {
        assert!(!logs.contains(secret), "secret in logs");
        assert!(!scraped.contains(secret), "secret in metrics");
    }
    for token in &tokens {
        assert!(!logs.contains(token.as_str()), "token in logs");
        assert!(!scraped.contains(token.as_str()), "token in metrics");
    }
}
