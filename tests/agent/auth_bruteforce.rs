//! Basic auth under attack, through the whole agent: while 127.0.0.2 floods it with 300 parallel
//! wrong-password requests, a scraper on 127.0.0.1 that has never logged in (as after a restart)
//! gets its first `/metrics` within seconds; and a reload that leaves a user's hash unchanged
//! keeps that user's login cached.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use obf_exporter::fleet::controller::{self, ConfigSource, Controller};
use obf_exporter::http::web::{BasicAuth, WebGuards};
use obf_exporter::http::{server, ServerState};
use obf_exporter::metrics::Metrics;
use tokio::net::TcpListener;

use crate::cli::TempDir;
use crate::support::TestSim;

const USER: &str = "prometheus";
const PASSWORD: &str = "scrape-password";
const ATTACKERS: usize = 300;
/// Requests each attacker sends at most, back to back, while the scraper waits.
const ATTACK_ROUNDS: usize = 20;

/// The agent's router and controller for the config at `path`, served by the agent's accept loop
/// (`web::serve`, which puts the peer address in every request's extensions); the test keeps the
/// `BasicAuth` handle to count bcrypt verifications.
struct ProtectedAgent {
    addr: SocketAddr,
    auth: BasicAuth,
    controller: Arc<Controller>,
    server: tokio::task::JoinHandle<()>,
}

impl ProtectedAgent {
    async fn start(path: &Path) -> Self {
        let source = ConfigSource::File(path.to_path_buf());
        let config = controller::load(&source, None).expect("valid config");
        let web = WebGuards::from_config(&config).expect("web config");
        let metrics = Arc::new(Metrics::new());
        let controller = Controller::start(source, None, metrics, config, web.clone())
            .await
            .expect("agent starts");
        let state = ServerState {
            controller: controller.clone(),
            ready: Arc::new(AtomicBool::new(true)),
        };
        let router =
            obf_exporter::http::web::protect(server::router(state), Some(web.auth.clone()));
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        // The agent's own accept loop, which puts the peer address in every request.
        let limits = obf_exporter::http::web::Limits::for_this_process();
        let server = tokio::spawn(obf_exporter::http::web::serve(
            tcp,
            None,
            router,
            limits,
            std::future::pending::<()>(),
        ));
        ProtectedAgent {
            addr,
            auth: web.auth,
            controller,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn stop(self) {
        self.controller.stop().await;
        self.server.abort();
    }
}

fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last_octet)))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// bcrypt cost of the brute-force test: 8 takes ~50-130 ms per verification in a debug build,
/// so 300 queued verifications take 7 s or more on two cores (the bug), one or two well under a
/// second. (Production hashes are usually cost 10, four times slower still.)
const ATTACK_COST: u32 = 8;

/// A `[exporter.web]` with one user.
fn config_with_hash(sim: &TestSim, hash: &str) -> String {
    format!(
        "[exporter.web]\nbasic_auth_users = {{ {USER} = \"{hash}\" }}\n\n{}",
        sim.org("acme", "BRUTE", "")
    )
}

/// What the attacker saw.
#[derive(Default)]
struct Tally {
    unauthorized: AtomicU64,
    too_many: AtomicU64,
    too_many_without_retry_after: AtomicU64,
    other: AtomicU64,
}

/// 300 parallel wrong-password requests from 127.0.0.2, each repeated until `stop` (at most
/// [`ATTACK_ROUNDS`] times), on a runtime of its own so the attacker is not the server's guest.
fn brute_force(
    url: String,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("attacker runtime");
        runtime.block_on(async move {
            let client = client_from(2);
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..ATTACKERS {
                let (client, url, stop, tally) =
                    (client.clone(), url.clone(), stop.clone(), tally.clone());
                tasks.spawn(async move {
                    for round in 0..ATTACK_ROUNDS {
                        if round > 0 && stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let guess = format!("guess-{i}-{round}");
                        let sent = client.get(&url).basic_auth(USER, Some(guess)).send();
                        let counter = match sent.await {
                            Ok(r) if r.status() == 401 => &tally.unauthorized,
                            Ok(r) if r.status() == 429 => {
                                if r.headers().get("retry-after").is_none() {
                                    tally
                                        .too_many_without_retry_after
                                        .fetch_add(1, Ordering::Relaxed);
                                }
                                &tally.too_many
                            }
                            _ => &tally.other,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        });
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_scraper_gets_in_within_two_seconds_while_another_address_brute_forces() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    let hash = bcrypt::hash(PASSWORD, ATTACK_COST).unwrap();
    let dir = TempDir::new("auth-bruteforce");
    let path = dir.write("config.toml", &config_with_hash(&sim, &hash));
    let agent = ProtectedAgent::start(&path).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let attack = brute_force(agent.url("/metrics"), stop.clone(), tally.clone());
    // Wait until the attack is being verified, so the scraper arrives in the thick of it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent.auth.verifications() == 0 {
        assert!(Instant::now() < deadline, "the attack never reached bcrypt");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let scraper = client_from(1);
    let started = Instant::now();
    let response = scraper
        .get(agent.url("/metrics"))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("scrape answered");
    let took = started.elapsed();
    let status = response.status();
    let body = response.text().await.expect("body");
    stop.store(true, Ordering::Relaxed);
    let verifications_at_scrape = agent.auth.verifications();
    tokio::task::spawn_blocking(move || attack.join())
        .await
        .expect("join")
        .expect("attacker thread");

    let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "first scrape during the attack: {status} in {took:?}; bcrypt verifications by then: \
         {verifications_at_scrape}, in all: {}; attacker saw 401 x{}, 429 x{}, other x{}",
        agent.auth.verifications(),
        count(&tally.unauthorized),
        count(&tally.too_many),
        count(&tally.other),
    );
    assert_eq!(status, 200);
    assert!(body.contains("obf_org_info"));
    assert!(
        took < Duration::from_secs(2),
        "the first scrape took {took:?} during the attack"
    );
    assert!(count(&tally.too_many) > 0, "the attacker was throttled");
    assert_eq!(count(&tally.too_many_without_retry_after), 0);
    assert_eq!(
        count(&tally.other),
        0,
        "every attempt was answered 401 or 429"
    );
    assert!(
        agent.auth.verifications() < 50,
        "the attacker got {} bcrypt verifications out of {} attempts",
        agent.auth.verifications(),
        count(&tally.unauthorized) + count(&tally.too_many)
    );
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_a_login_whose_hash_is_unchanged_and_drops_a_changed_one() {
    let sim = TestSim::with_spacing(Duration::from_millis(100)).await;
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let dir = TempDir::new("auth-reload");
    let path = dir.write("config.toml", &config_with_hash(&sim, &hash));
    let agent = ProtectedAgent::start(&path).await;
    let client = client_from(1);
    let scrape = |password: &'static str| {
        let request = client
            .get(agent.url("/metrics"))
            .basic_auth(USER, Some(password));
        async move { request.send().await.expect("response").status() }
    };
    let reload = |password: &'static str| {
        let request = client
            .post(agent.url("/-/reload"))
            .basic_auth(USER, Some(password));
        async move { request.send().await.expect("response").status() }
    };

    assert_eq!(scrape(PASSWORD).await, 200);
    assert_eq!(agent.auth.verifications(), 1);
    assert_eq!(reload(PASSWORD).await, 200, "reload with the same file");
    assert_eq!(scrape(PASSWORD).await, 200);
    assert_eq!(
        agent.auth.verifications(),
        1,
        "still logged in after the reload"
    );

    let new_hash = bcrypt::hash("rotated", 4).unwrap();
    dir.write("config.toml", &config_with_hash(&sim, &new_hash));
    assert_eq!(reload(PASSWORD).await, 200);
    assert_eq!(
        scrape(PASSWORD).await,
        401,
        "the old password is gone at once"
    );
    assert_eq!(scrape("rotated").await, 200);
    assert_eq!(agent.auth.verifications(), 3);
    agent.stop().await;
}
