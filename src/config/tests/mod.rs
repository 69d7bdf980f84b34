//! Tests of [`parse`](super::parse) as a whole: valid files and their defaults here,
//! rejected files in `rejects.rs`, secret handling in `secrets.rs`, the unknown-key walk against
//! the real schema in `schema.rs`, README's configuration tables against it in `readme.rs`.

mod readme;
mod rejects;
mod schema;
mod secrets;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

/// A scratch directory removed on drop; unique per process and call.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("obf-exporter-config-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Self(dir)
    }

    /// Writes `contents` to `name` in the scratch dir; returns the path as TOML-ready text.
    pub(super) fn file(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path_str(&path)
    }

    pub(super) fn path(&self, name: &str) -> String {
        path_str(&self.0.join(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_str(path: &Path) -> String {
    // Backslashes (Windows) would be escapes in a TOML basic string.
    path.display().to_string().replace('\\', "/")
}

pub(super) const SECRET: &str = "s3cr3tValue_42";

pub(super) fn env(name: &str) -> Option<String> {
    match name {
        "ACME_SECRET" => Some(SECRET.to_owned()),
        "OTHER_SECRET" => Some("0therSecret".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

pub(super) fn parse_ok(text: &str) -> Config {
    match parse(text, "t.toml", &env) {
        Ok(config) => config,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

pub(super) fn problems(text: &str) -> Vec<String> {
    match parse(text, "t.toml", &env) {
        Ok(_) => panic!("expected problems, config was accepted:\n{text}"),
        Err(e) => e.lines(),
    }
}

/// Asserts some problem line contains every fragment.
#[track_caller]
pub(super) fn assert_problem(text: &str, fragments: &[&str]) -> Vec<String> {
    let problems = problems(text);
    assert!(
        problems
            .iter()
            .any(|p| fragments.iter().all(|f| p.contains(f))),
        "no problem containing all of {fragments:?} in:\n{}",
        problems.join("\n")
    );
    problems
}

pub(super) const MINIMAL: &str = r#"
[[org]]
name = "acme"
client_id = "ABC123"
client_secret_env = "ACME_SECRET"
"#;

/// `MINIMAL` with extra lines added to the org table.
pub(super) fn org_with(extra: &str) -> String {
    format!("{MINIMAL}{extra}\n")
}

#[test]
fn a_minimal_org_gets_every_default() {
    let config = parse_ok(MINIMAL);
    assert_eq!(config.listen, None);
    assert!(config.web.is_none());
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let [org] = config.orgs.as_slice() else {
        panic!("one org expected");
    };
    assert_eq!(org.name.as_str(), "acme");
    assert_eq!(org.host, "https://openbadgefactory.com");
    assert_eq!(org.api, ApiVersion::V2);
    assert_eq!(org.auth, AuthMode::Basic);
    assert_eq!(org.schedule, Schedule::Interval(Duration::from_secs(60)));
    assert_eq!(org.jitter, Duration::ZERO);
    assert_eq!(org.timeout, Duration::from_secs(10));
    assert_eq!(org.token_refresh_margin, Duration::from_secs(60));
    assert_eq!(org.token_min_interval, Duration::from_secs(10));
    assert_eq!(org.token_max_age, Duration::from_secs(3600));
    assert_eq!(org.subscription_check_interval, Duration::from_secs(3600));
    assert_eq!(org.credential_check_interval, Duration::from_secs(3600));
    assert_eq!(org.ca_file, None);
    assert_eq!(org.client_id, "ABC123");
    assert_eq!(org.client_secret.expose_secret(), SECRET);
    assert_eq!(org.secret_source, SecretSource::Env("ACME_SECRET".into()));
    assert!(org.labels.is_empty());
    assert_eq!(DEFAULT_LISTEN.to_string(), "0.0.0.0:9852");
}

#[test]
fn a_full_file_round_trips_every_key() {
    let dir = Scratch::new();
    let ca = dir.file(
        "ca.pem",
        include_str!("../../../tests/fixtures/tls/cert1.pem"),
    );
    let cert = dir.file(
        "tls.crt",
        include_str!("../../../tests/fixtures/tls/cert1.pem"),
    );
    let key = dir.file(
        "tls.key",
        include_str!("../../../tests/fixtures/tls/key1.pem"),
    );
    let secret = dir.file("acme.secret", "fileSecret\n");
    let hash = "$2y$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
    let text = format!(
        r#"
[exporter]
listen = "127.0.0.1:9999"
latency_histograms = "host"

[exporter.web]
tls_cert_file = "{cert}"
tls_key_file = "{key}"
basic_auth_users = {{ prometheus = "{hash}" }}

[defaults]
host = "http://127.0.0.1:8080/obf/"
api = "v1"
auth = "body"
interval = "2m"
jitter = "5s"
timeout = "3s"
token_refresh_margin = "30s"
token_min_interval = "20s"
token_max_age = "30m"
subscription_check_interval = "0s"
credential_check_interval = "0s"
ca_file = "{ca}"

[[org]]
name = "acme"
client_id = "ABC123"
client_secret_file = "{secret}"
labels = {{ team = "learning", env = "prod" }}

[[org]]
name = "beta.org-1"
client_id = "XYZ_9"
client_secret_env = "OTHER_SECRET"
host = "https://factory.cancred.ca/"
api = "v2"
auth = "basic"
cron = "0 */5 * * * *"
jitter = "1m"
timeout = "4s"
token_refresh_margin = "0s"
token_min_interval = "11s"
token_max_age = "2h"
subscription_check_interval = "6h"
credential_check_interval = "11s"
"#
    );
    let config = parse_ok(&text);
    assert_eq!(config.listen, "127.0.0.1:9999".parse().ok());
    assert_eq!(config.latency_histograms, LatencyHistograms::Host);
    let web = config.web.as_ref().expect("web");
    assert_eq!(web.tls_cert_file.as_deref(), Some(Path::new(&cert)));
    assert_eq!(web.tls_key_file.as_deref(), Some(Path::new(&key)));
    let users: Vec<(&str, &str)> = web
        .basic_auth_users
        .iter()
        .map(|(u, h)| (u.as_str(), h.expose_secret()))
        .collect();
    assert_eq!(users, [("prometheus", hash)]);

    let [acme, beta] = config.orgs.as_slice() else {
        panic!("two orgs expected");
    };
    assert_eq!(acme.host, "http://127.0.0.1:8080/obf");
    assert_eq!(acme.api, ApiVersion::V1);
    assert_eq!(acme.auth, AuthMode::Body);
    assert_eq!(acme.schedule, Schedule::Interval(Duration::from_secs(120)));
    assert_eq!(acme.jitter, Duration::from_secs(5));
    assert_eq!(acme.timeout, Duration::from_secs(3));
    assert_eq!(acme.token_refresh_margin, Duration::from_secs(30));
    assert_eq!(acme.token_min_interval, Duration::from_secs(20));
    assert_eq!(acme.token_max_age, Duration::from_secs(1800));
    assert_eq!(acme.subscription_check_interval, Duration::ZERO);
    assert_eq!(acme.credential_check_interval, Duration::ZERO, "off");
    assert_eq!(
        acme.ca_file.as_ref().map(|c| c.path.as_path()),
        Some(Path::new(&ca))
    );
    assert_eq!(acme.client_secret.expose_secret(), "fileSecret");
    assert_eq!(acme.secret_source, SecretSource::File(secret.into()));
    assert_eq!(
        acme.labels.get("team").map(String::as_str),
        Some("learning")
    );
    assert_eq!(acme.labels.len(), 2);

    assert_eq!(beta.name.to_string(), "beta.org-1");
    assert_eq!(beta.host, "https://factory.cancred.ca");
    assert_eq!(beta.api, ApiVersion::V2);
    assert_eq!(beta.auth, AuthMode::Basic);
    let Schedule::Cron(cron) = &beta.schedule else {
        panic!("cron schedule expected, got {:?}", beta.schedule);
    };
    assert_eq!(cron.expression, "0 */5 * * * *");
    assert_eq!(beta.jitter, Duration::from_secs(60));
    assert_eq!(beta.timeout, Duration::from_secs(4));
    assert_eq!(beta.token_refresh_margin, Duration::ZERO);
    assert_eq!(beta.token_min_interval, Duration::from_secs(11));
    assert_eq!(beta.token_max_age, Duration::from_secs(7200));
    assert_eq!(
        beta.subscription_check_interval,
        Duration::from_secs(6 * 3600)
    );
    assert_eq!(beta.credential_check_interval, Duration::from_secs(11));
    assert_eq!(
        beta.ca_file.as_ref().map(|c| c.path.as_path()),
        Some(Path::new(&ca)),
        "inherited"
    );
    assert_eq!(beta.client_secret.expose_secret(), "0therSecret");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}

#[test]
fn an_org_schedule_replaces_the_defaults_schedule_of_either_kind() {
    let config = parse_ok(
        r#"
[defaults]
interval = "30s"
jitter = "10s"

[[org]]
name = "a"
client_id = "A"
client_secret_env = "ACME_SECRET"
cron = "0 0 * * * *"

[[org]]
name = "b"
client_id = "B"
client_secret_env = "ACME_SECRET"
"#,
    );
    assert!(matches!(config.orgs[0].schedule, Schedule::Cron(_)));
    assert_eq!(
        config.orgs[1].schedule,
        Schedule::Interval(Duration::from_secs(30))
    );

    let config = parse_ok(
        r#"
[defaults]
cron = "0 0 * * * *"

[[org]]
name = "a"
client_id = "A"
client_secret_env = "ACME_SECRET"
interval = "15s"
"#,
    );
    assert_eq!(
        config.orgs[0].schedule,
        Schedule::Interval(Duration::from_secs(15))
    );
}

#[test]
fn jitter_is_not_compared_with_a_cron_schedule() {
    let config = parse_ok(&org_with("cron = \"0 * * * * *\"\njitter = \"5m\""));
    assert_eq!(config.orgs[0].jitter, Duration::from_secs(300));
}

#[test]
fn orgs_sharing_a_token_with_equal_settings_are_fine() {
    let config = parse_ok(&format!(
        "{MINIMAL}\n[[org]]\nname = \"acme2\"\nclient_id = \"ABC123\"\n\
         client_secret_env = \"ACME_SECRET\"\napi = \"v1\"\n"
    ));
    assert_eq!(config.orgs.len(), 2);
}

#[test]
fn same_settings_tells_changed_orgs_apart() {
    let a = parse_ok(MINIMAL);
    let b = parse_ok(MINIMAL);
    assert!(a.orgs[0].same_settings(&b.orgs[0]));
    let other_secret = parse_ok(&MINIMAL.replace("ACME_SECRET", "OTHER_SECRET"));
    assert!(!a.orgs[0].same_settings(&other_secret.orgs[0]));
    let other_interval = parse_ok(&org_with("interval = \"61s\""));
    assert!(!a.orgs[0].same_settings(&other_interval.orgs[0]));
    let other_labels = parse_ok(&org_with("labels = { team = \"x\" }"));
    assert!(!a.orgs[0].same_settings(&other_labels.orgs[0]));
    // A new value from the same source (a rotated secret file) keeps the org running.
    let mut rotated = a.orgs[0].clone();
    rotated.client_secret = SecretString::from("rotated");
    assert!(!a.orgs[0].same_except_labels(&rotated));
    assert!(a.orgs[0].same_except_secret_and_labels(&rotated));
    assert!(a.orgs[0].same_except_secret_and_labels(&other_labels.orgs[0]));
    assert!(!a.orgs[0].same_except_secret_and_labels(&other_secret.orgs[0]));
    assert!(!a.orgs[0].same_except_secret_and_labels(&other_interval.orgs[0]));
}

#[test]
fn the_example_file_is_valid() {
    // The variables its header sets for `check` (tests/agent/first_hour.rs runs that command).
    let env = |name: &str| match name {
        "ACME_OBF_SECRET" => Some("acmeSecret".to_owned()),
        "CANCRED_OBF_SECRET" => Some("demoSecret".to_owned()),
        _ => None,
    };
    let text = include_str!("../../../config/obf-exporter.example.toml");
    let config = parse(text, "example.toml", &env)
        .unwrap_or_else(|e| panic!("the example is invalid:\n{e}"));
    assert_eq!(config.listen, Some(DEFAULT_LISTEN));
    assert_eq!(config.latency_histograms, LatencyHistograms::Org);
    assert_eq!(config.orgs.len(), 2);
    assert_eq!(config.orgs[0].client_secret.expose_secret(), "acmeSecret");
    assert_eq!(config.orgs[1].host, "https://factory.cancred.ca");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    // The example's [defaults] must spell out the built-in defaults it documents.
    let without_defaults = parse_ok(&format!("{MINIMAL}\n"));
    let documented = &config.orgs[0];
    let builtin = &without_defaults.orgs[0];
    assert_eq!(documented.host, builtin.host);
    assert_eq!(documented.schedule, builtin.schedule);
    assert_eq!(documented.token_max_age, builtin.token_max_age);
    assert_eq!(
        documented.subscription_check_interval,
        builtin.subscription_check_interval
    );
    assert_eq!(
        documented.credential_check_interval,
        builtin.credential_check_interval
    );
}

#[test]
fn load_reads_the_file_and_names_it_in_problems() {
    let dir = Scratch::new();
    let secret = dir.file("secret", "fromFile\n");
    let path = dir.file(
        "obf.toml",
        &format!("[[org]]\nname = \"a\"\nclient_id = \"A\"\nclient_secret_file = \"{secret}\"\n"),
    );
    let config = load(Path::new(&path)).expect("valid file");
    assert_eq!(config.orgs[0].client_secret.expose_secret(), "fromFile");

    let bad = dir.file("bad.toml", "[[org]]\nname = \"a\"\n");
    let err = load(Path::new(&bad)).expect_err("no client_id");
    assert!(
        err.to_string()
            .starts_with(&format!("{bad}: org[0] (\"a\").client_id: missing")),
        "{err}"
    );

    let missing = load(&dir.0.join("nope.toml")).expect_err("missing file");
    assert!(
        missing.to_string().contains("cannot read config file"),
        "{missing}"
    );
}
