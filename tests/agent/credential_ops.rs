//! The credential signal in real operations, against the built binary (issue 13, items 1-5):
//! a token that outlives its revocation, a secret file rotated (in place, renamed over, by a
//! Kubernetes `..data` swap) with the old secret removed later, two `--shard` replicas over
//! shared credentials, shared credentials moving together, and a labels-only SIGHUP.
//!
//! Intervals are 1 s (the config floor) and the simulator's token spacing is scaled to 1 s to
//! match `token_min_interval = "1s"`. Every wait is bounded.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use obf_exporter::config::shard::Shard;
use obf_sim::Faults;

use crate::cli::{Agent, TempDir};
use crate::support::{get, metric_value, TestSim};

/// 1 s runs and token spacing, as the simulator is scaled.
const FAST: &str = "interval = \"1s\"\ntoken_min_interval = \"1s\"\ntimeout = \"2s\"";

fn series(family: &str, org: &str) -> String {
    format!("{family}{{org=\"{org}\"}}")
}

async fn scrape(agent: &Agent) -> String {
    get(&format!("http://{}/metrics", agent.addr)).await.1
}

async fn value(agent: &Agent, series: &str) -> Option<f64> {
    metric_value(&scrape(agent).await, series)
}

/// Polls `series` every 100 ms until `check` holds; panics after `within`.
async fn wait_for(agent: &Agent, series: &str, within: Duration, check: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if value(agent, series).await.is_some_and(&check) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never matched within {within:?}:\n{}",
            scrape(agent).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An `[[org]]` whose secret is read from `file`.
fn org_with_file(sim: &TestSim, name: &str, client_id: &str, file: &Path, extra: &str) -> String {
    format!(
        "[[org]]\nname = \"{name}\"\nclient_id = \"{client_id}\"\nclient_secret_file = \"{}\"\n\
         host = \"{}\"\n{extra}\n",
        file.display(),
        sim.url()
    )
}

/// (1) OBF may honour tokens issued before a revocation: pings keep working with the old token,
/// only a fresh token request shows the revocation. `credential_check_interval` makes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_catches_a_token_that_outlives_revocation_within_the_check_interval() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let config = sim.org(
        "checked",
        "OPSCHECKED",
        &format!("{FAST}\ncredential_check_interval = \"3s\""),
    );
    let dir = TempDir::new("ops-survive");
    let agent = Agent::start(&dir.write("config.toml", &config), &[]).await;
    let valid = series("obf_credentials_valid", "checked");
    wait_for(&agent, &valid, Duration::from_secs(15), |v| v == 1.0).await;

    sim.sim.set_faults(
        "OPSCHECKED",
        Faults {
            tokens_survive_revocation: true,
            ..Faults::default()
        },
    );
    sim.sim.revoke("OPSCHECKED");
    let revoked = Instant::now();
    wait_for(&agent, &valid, Duration::from_secs(20), |v| v == 0.0).await;
    // 3 s check interval + a 1 s run, with slack for a loaded machine.
    assert!(
        revoked.elapsed() < Duration::from_secs(12),
        "{:?}",
        revoked.elapsed()
    );
    let stats = sim.sim.client_stats("OPSCHECKED").unwrap();
    assert!(stats.rejected >= 1, "{stats:?}");
    agent.stop().await;
}

/// Kubernetes' layout: `secret -> ..data/secret`, `..data -> ..<version>`.
fn k8s_mount(dir: &Path, secret: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("..v1")).unwrap();
    std::fs::write(dir.join("..v1/secret"), format!("{secret}\n")).unwrap();
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/secret", dir.join("secret")).unwrap();
    dir.join("secret")
}

/// Kubernetes' atomic update: a new version directory, `..data` swapped to it by a rename.
fn k8s_update(dir: &Path, secret: &str) {
    std::fs::create_dir_all(dir.join("..v2")).unwrap();
    std::fs::write(dir.join("..v2/secret"), format!("{secret}\n")).unwrap();
    std::os::unix::fs::symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();
}

/// Samples `obf_credentials_valid` of `orgs` every 200 ms until stopped (at most 2 minutes) and
/// returns every sample that was not 1.
fn sample_validity(
    addr: String,
    orgs: Vec<&'static str>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let mut bad = Vec::new();
        for _ in 0..600 {
            if stop.load(Ordering::Acquire) {
                break;
            }
            let metrics = get(&format!("http://{addr}/metrics")).await.1;
            for org in &orgs {
                let seen = metric_value(&metrics, &series("obf_credentials_valid", org));
                if seen != Some(1.0) {
                    bad.push(format!("{org}: {seen:?}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bad
    })
}

/// (2) A rotated secret file is followed with no signal, however it is replaced; removing the
/// old secret afterwards raises nothing; a SIGHUP after that drops no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_follows_rotated_secret_files_and_never_reports_the_rotation_as_a_rejection() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let dir = TempDir::new("ops-rotate");
    let cases = [
        ("inplace", "ROTINPLACE"),
        ("renamed", "ROTRENAMED"),
        ("k8s", "ROTK8S"),
    ];
    let old = |client: &str| format!("{client}-old-secret");
    let new = |client: &str| format!("{client}-new-secret");
    let mut config = String::new();
    for (org, client) in cases {
        sim.sim.add_client(client, &old(client));
        let file = match org {
            "k8s" => {
                let mount = dir.write_path("k8s");
                std::fs::create_dir_all(&mount).unwrap();
                k8s_mount(&mount, &old(client))
            }
            _ => dir.write(&format!("{org}.secret"), &format!("{}\n", old(client))),
        };
        config.push_str(&org_with_file(&sim, org, client, &file, FAST));
    }
    let config_path = dir.write("config.toml", &config);
    let agent = Agent::start(&config_path, &[]).await;
    for (org, _) in cases {
        let valid = series("obf_credentials_valid", org);
        wait_for(&agent, &valid, Duration::from_secs(15), |v| v == 1.0).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_validity(
        agent.addr.clone(),
        cases.iter().map(|(org, _)| *org).collect(),
        stop.clone(),
    );

    // The operator adds a second secret in OBF, then writes it where the agent reads it.
    for (_, client) in cases {
        assert!(sim.sim.add_secret(client, &new(client)));
    }
    std::fs::write(
        dir.write_path("inplace.secret"),
        format!("{}\n", new("ROTINPLACE")),
    )
    .unwrap();
    let renamed = dir.write("renamed.partial", &format!("{}\n", new("ROTRENAMED")));
    std::fs::rename(renamed, dir.write_path("renamed.secret")).unwrap();
    k8s_update(&dir.write_path("k8s"), &new("ROTK8S"));
    let written = Instant::now();

    // Followed within 10 s: a token obtained with the new secret (slot 1 in the simulator).
    let deadline = written + Duration::from_secs(20);
    for (_, client) in cases {
        loop {
            let stats = sim.sim.client_stats(client).unwrap();
            if stats
                .tokens_issued_per_secret
                .get(1)
                .is_some_and(|n| *n >= 1)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{client} never used its new secret: {stats:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        written.elapsed() < Duration::from_secs(10),
        "followed after {:?}",
        written.elapsed()
    );

    // The old secret is removed in OBF: nothing happens, the agent no longer uses it.
    for (_, client) in cases {
        assert!(sim.sim.remove_secret(client, &old(client)));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    // A reload reads the same new secrets: no token is dropped.
    let issued = |client: &str| sim.sim.client_stats(client).unwrap().tokens_issued;
    let before: Vec<u64> = cases.iter().map(|(_, c)| issued(c)).collect();
    agent.signal("-HUP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: Vec<u64> = cases.iter().map(|(_, c)| issued(c)).collect();
    assert_eq!(before, after, "the reload dropped a token");

    stop.store(true, Ordering::Release);
    let bad = sampler.await.unwrap();
    assert!(bad.is_empty(), "obf_credentials_valid left 1: {bad:?}");
    for (org, client) in cases {
        let stats = sim.sim.client_stats(client).unwrap();
        assert_eq!(stats.rate_limited, 0, "{client}: spacing broken: {stats:?}");
        assert_eq!(stats.rejected, 0, "{client}: {stats:?}");
        assert_eq!(stats.removed_secret_rejections, 0, "{client}: {stats:?}");
        for pair in stats.token_issue_times_ms.windows(2) {
            assert!(
                pair[1] - pair[0] >= 1000,
                "{client}: tokens {pair:?} ms apart"
            );
        }
        let metrics = scrape(&agent).await;
        let rejected =
            format!("obf_token_refresh_failures_total{{org=\"{org}\",reason=\"rejected\"}}");
        assert_eq!(metric_value(&metrics, &rejected), None, "{metrics}");
    }
    let logs = agent.stop().await;
    assert_eq!(logs.matches("secret file changed").count(), 3, "{logs}");
    assert!(logs.contains("unchanged=3"), "{logs}");
    for (_, client) in cases {
        assert!(
            !logs.contains(&old(client)) && !logs.contains(&new(client)),
            "{logs}"
        );
    }
}

/// (3) Two replicas split orgs by credential: each org in exactly one, the orgs of a credential
/// together, so no credential's token requests come from two processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_shards_split_shared_credentials_without_rate_limits() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let host = sim.url();
    let clients: Vec<String> = (0..6).map(|i| format!("SHARDED{i}")).collect();
    let owner = |client: &str| {
        (0..2)
            .find(|index| {
                Shard {
                    index: *index,
                    count: 2,
                }
                .owns(&host, client)
            })
            .unwrap()
    };
    let owners: Vec<u64> = clients.iter().map(|c| owner(c)).collect();
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "both shards get orgs: {owners:?}"
    );
    let mut config = String::new();
    for client in &clients {
        let secret = format!("{client}-secret");
        sim.sim.add_client(client, &secret);
        for suffix in ["a", "b"] {
            config.push_str(&format!(
                "[[org]]\nname = \"{client}-{suffix}\"\nclient_id = \"{client}\"\n\
                 client_secret = \"{secret}\"\nhost = \"{host}\"\n{FAST}\n"
            ));
        }
    }
    let dir = TempDir::new("ops-shard");
    let path = dir.write("config.toml", &config);
    let mut replicas = Vec::new();
    for index in 0..2 {
        let shard = format!("{index}/2");
        replicas.push(
            Agent::start_with(&path, &[], |command| {
                command.args(["--shard", &shard]);
            })
            .await,
        );
    }
    for (client, owner) in clients.iter().zip(&owners) {
        for suffix in ["a", "b"] {
            let org = format!("{client}-{suffix}");
            let owner = &replicas[*owner as usize];
            wait_for(
                owner,
                &series("obf_ping_success", &org),
                Duration::from_secs(20),
                |v| v == 1.0,
            )
            .await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scrapes = [scrape(&replicas[0]).await, scrape(&replicas[1]).await];
    for client in &clients {
        for suffix in ["a", "b"] {
            let label = format!("org=\"{client}-{suffix}\"");
            let holders = scrapes.iter().filter(|m| m.contains(&label)).count();
            assert_eq!(holders, 1, "{client}-{suffix} is in {holders} replicas");
        }
        let stats = sim.sim.client_stats(client).unwrap();
        assert_eq!(stats.rate_limited, 0, "{client}: {stats:?}");
        assert_eq!(
            stats.tokens_issued, 1,
            "{client}: one token for both orgs: {stats:?}"
        );
    }
    for replica in replicas {
        replica.stop().await;
    }
}

/// (4) Two orgs sharing a client: the one that runs every second learns the credentials are
/// accepted again, and the hourly one shows it in the same scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_shows_one_state_for_orgs_sharing_a_credential() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let mut config = sim.org("b", "OPSSHARED", FAST);
    config.push_str(&format!(
        "[[org]]\nname = \"b2\"\nclient_id = \"OPSSHARED\"\nclient_secret = \"OPSSHARED-secret-value\"\n\
         host = \"{}\"\ninterval = \"1h\"\ntoken_min_interval = \"1s\"\ntimeout = \"2s\"\n",
        sim.url()
    ));
    sim.sim.revoke("OPSSHARED");
    let dir = TempDir::new("ops-shared");
    let agent = Agent::start(&dir.write("config.toml", &config), &[]).await;
    for org in ["b", "b2"] {
        let valid = series("obf_credentials_valid", org);
        wait_for(&agent, &valid, Duration::from_secs(15), |v| v == 0.0).await;
    }
    sim.sim.restore("OPSSHARED");
    let valid_b = series("obf_credentials_valid", "b");
    wait_for(&agent, &valid_b, Duration::from_secs(15), |v| v == 1.0).await;
    let metrics = scrape(&agent).await;
    for family in [
        "obf_credentials_valid",
        "obf_credentials_last_verified_timestamp_seconds",
        "obf_token_expiry_timestamp_seconds",
    ] {
        let b = metric_value(&metrics, &series(family, "b"));
        assert!(b.is_some(), "{family}:\n{metrics}");
        assert_eq!(b, metric_value(&metrics, &series(family, "b2")), "{family}");
    }
    agent.stop().await;
}

/// (5) A SIGHUP that changes only labels updates `obf_org_info` without a restart: no second
/// run, no new token request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_applies_a_labels_only_reload_without_restarting_the_org() {
    let sim = TestSim::with_spacing(Duration::from_secs(1)).await;
    let org = sim.org(
        "acme",
        "OPSLABELS",
        "interval = \"1h\"\nlabels = { team = \"a\" }",
    );
    let dir = TempDir::new("ops-labels");
    let path = dir.write("config.toml", &org);
    let agent = Agent::start(&path, &[]).await;
    let pings = "obf_pings_total{org=\"acme\",result=\"success\"}";
    wait_for(&agent, pings, Duration::from_secs(15), |v| v == 1.0).await;

    dir.write("config.toml", &org.replace("team = \"a\"", "team = \"b\""));
    agent.signal("-HUP");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !scrape(&agent).await.contains("team=\"b\"") {
        assert!(Instant::now() < deadline, "labels never changed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = scrape(&agent).await;
    assert!(!metrics.contains("team=\"a\""), "{metrics}");
    // A restarted org would run at once: a ping and a token request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(value(&agent, pings).await, Some(1.0), "the org ran again");
    let stats = sim.sim.client_stats("OPSLABELS").unwrap();
    assert_eq!((stats.token_requests, stats.pings), (1, 1), "{stats:?}");
    let logs = agent.stop().await;
    assert!(logs.contains("relabelled=[\"acme\"]"), "{logs}");
}
