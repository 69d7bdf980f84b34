//! Micro-benchmarks of the hot paths: `/metrics` rendering at 10,000 orgs (latency histograms per
//! org, then per host), a token cache hit, and failure classification.
//!
//! A plain `harness = false` program rather than Criterion: Criterion would add ~40 crates to
//! every CI build (`clippy --all-targets` compiles benches) for statistics these three numbers do
//! not need. `cargo bench` runs it fully; under `cargo test` it runs one quick pass as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use obf_exporter::metrics::{Metrics, OrgInfoLabels};
use obf_exporter::obf::reason::Reason;
use obf_exporter::obf::token::{IssuedToken, TokenCache, TokenFailure, TokenPolicy};
use secrecy::SecretString;

/// Runs `f` `iterations` times per sample and prints the median time per iteration.
fn measure(name: &str, samples: usize, iterations: u32, mut f: impl FnMut()) {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed() / iterations
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    println!("{name:<44} median {median:>12.3?} per iteration ({samples} samples x {iterations})");
}

const POLICY: TokenPolicy = TokenPolicy {
    refresh_margin: Duration::from_secs(60),
    min_interval: Duration::from_secs(10),
    max_age: Duration::from_secs(3600),
    check_interval: Duration::from_secs(3600),
};

async fn fetch() -> Result<IssuedToken, TokenFailure> {
    Ok(IssuedToken {
        access_token: SecretString::from("bench-token"),
        expires_in: Some(Duration::from_secs(18_000)),
    })
}

fn fleet(orgs: usize) -> Metrics {
    let metrics = Metrics::new();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    for i in 0..orgs {
        // One credential per org, with a token in hand, as after a successful first round.
        let cache = TokenCache::new(POLICY);
        runtime.block_on(cache.acquire(Duration::from_secs(1), None, fetch));
        let credential = cache.credential();
        let org = metrics.add_org(
            OrgInfoLabels {
                org: format!("org{i:05}"),
                client_id: format!("sim{i:05}"),
                host: "https://openbadgefactory.com".to_string(),
                api: "v2".to_string(),
                custom: [("team".to_string(), "learning".to_string())].into(),
            },
            Duration::from_secs(60),
            credential.clone(),
        );
        org.ping_succeeded(200, Duration::from_millis(40 + (i % 50) as u64));
        org.token_refreshed(Duration::from_millis(80), None);
        org.set_subscription_expiry(1_900_000_000);
        org.probe_finished(std::time::SystemTime::now());
        if i % 10 == 0 {
            org.ping_failed(
                Reason::ServerError,
                Some(503),
                Some(Duration::from_millis(30)),
            );
        }
    }
    metrics
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (samples, scale) = if full { (15, 1) } else { (1, 0) };

    let orgs = if full { 10_000 } else { 100 };
    let metrics = fleet(orgs);
    let size = metrics.render().len();
    println!("metrics text for {orgs} orgs: {:.1} MB", size as f64 / 1e6);
    measure(
        &format!("render /metrics, {orgs} orgs (one string)"),
        samples,
        1,
        || {
            black_box(metrics.render());
        },
    );
    measure(
        &format!("render /metrics, {orgs} orgs (256 KB chunks, as served)"),
        samples,
        1,
        || {
            let mut bytes = 0;
            let mut scrape = metrics.scrape();
            while let Some(chunk) = scrape.next_chunk(256 * 1024) {
                bytes += chunk.len();
            }
            black_box(bytes);
        },
    );
    // The same fleet with `latency_histograms = "host"`: one ping and one token histogram in all.
    metrics.set_latency_per_host(true);
    let size = metrics.render().len();
    println!(
        "metrics text for {orgs} orgs, latency histograms per host: {:.1} MB",
        size as f64 / 1e6
    );
    measure(
        &format!("render /metrics, {orgs} orgs, histograms per host (256 KB chunks)"),
        samples,
        1,
        || {
            let mut bytes = 0;
            let mut scrape = metrics.scrape();
            while let Some(chunk) = scrape.next_chunk(256 * 1024) {
                bytes += chunk.len();
            }
            black_box(bytes);
        },
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let cache = TokenCache::new(POLICY);
    runtime.block_on(cache.acquire(Duration::from_secs(1), None, fetch));
    measure(
        "token cache hit (acquire, cached)",
        samples,
        10_000 * scale + 1,
        || {
            black_box(runtime.block_on(cache.acquire(Duration::from_secs(1), None, fetch)));
        },
    );

    let statuses = [200u16, 301, 401, 403, 404, 418, 429, 500, 503];
    measure(
        "failure classification (status -> reason)",
        samples,
        100_000 * scale + 1,
        || {
            for status in statuses {
                black_box(Reason::for_resource_status(black_box(status)));
            }
        },
    );
}
