//! One test per kind of rejected file: each checks the problem names the key path.

use super::*;

#[test]
fn unknown_keys_are_reported_with_their_paths() {
    let problems = assert_problem(
        "[[org]]\nnmae = \"acme\"\nclient_id = \"A\"\nclient_secret_env = \"ACME_SECRET\"\n",
        &["t.toml: org[0].nmae: unknown key"],
    );
    // The missing name is reported too: every problem, not just the first.
    assert!(
        problems.iter().any(|p| p.contains("org[0].name: missing")),
        "{problems:?}"
    );
    assert_problem(
        &org_with("intervall = \"5s\""),
        &["t.toml: org[0] (\"acme\").intervall: unknown key"],
    );
    assert_problem(
        &format!("[defaults]\nfoo = \"x\"\n{MINIMAL}"),
        &["defaults.foo: unknown key"],
    );
    assert_problem(
        &format!("[exporter]\nport = \"1\"\n{MINIMAL}"),
        &["exporter.port: unknown key"],
    );
    assert_problem(
        &format!("top = 1\n{MINIMAL}"),
        &["t.toml: top: unknown key"],
    );
}

#[test]
fn every_problem_in_a_file_is_reported() {
    let text = r#"
[exporter]
listen = "nowhere"
[defaults]
timeout = "0s"
[[org]]
name = "a"
client_id = "A"
client_secret_env = "ACME_SECRET"
bogus = "1"
[[org]]
name = "b"
client_id = "B"
client_secret_env = "ACME_SECRET"
interval = "5"
"#;
    let problems = problems(text);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    for fragment in [
        "exporter.listen",
        "defaults.timeout",
        "org[0] (\"a\").bogus",
        "org[1] (\"b\").interval: invalid duration \"5\": time unit needed",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(fragment)),
            "{fragment}: {problems:#?}"
        );
    }
}

#[test]
fn a_toml_syntax_error_gives_line_and_column() {
    let problems = problems("[[org]]\nname = \"acme\"\nclient_id = ABC\n");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("t.toml: line 3, column 13: TOML syntax error"),
        "{problems:?}"
    );
}

#[test]
fn wrong_value_types_are_reported() {
    assert_problem(
        &org_with("timeout = 10"),
        &["org[0] (\"acme\").timeout: expected a string, found integer"],
    );
    assert_problem(
        "[org]\nname = \"a\"\n",
        &["t.toml: org: expected an array of tables", "[[org]]"],
    );
    // A mistyped name is reported once, not again as missing.
    let problems = assert_problem(
        "[[org]]\nname = 5\nclient_id = \"A\"\nclient_secret_env = \"ACME_SECRET\"\n",
        &["org[0].name: expected a string"],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
}

#[test]
fn no_org_at_all_is_an_error() {
    assert_problem(
        "[defaults]\ninterval = \"1m\"\n",
        &["t.toml: no [[org]] configured"],
    );
    assert_problem("", &["no [[org]] configured"]);
}

#[test]
fn name_and_client_id_are_required() {
    assert_problem(
        "[[org]]\nclient_id = \"A\"\nclient_secret_env = \"ACME_SECRET\"\n",
        &["org[0].name: missing"],
    );
    assert_problem(
        "[[org]]\nname = \"acme\"\nclient_secret_env = \"ACME_SECRET\"\n",
        &["org[0] (\"acme\").client_id: missing"],
    );
}

#[test]
fn org_names_must_be_unique() {
    let text = format!("{MINIMAL}\n[[org]]\nname = \"acme\"\nclient_id = \"B\"\nclient_secret_env = \"ACME_SECRET\"\n");
    assert_problem(
        &text,
        &[
            "org[1] (\"acme\").name: duplicate org name \"acme\"",
            "org[0]",
        ],
    );
}

#[test]
fn org_names_must_use_the_allowed_characters() {
    let text = MINIMAL.replace("name = \"acme\"", "name = \"ac me\"");
    assert_problem(&text, &["org[0].name: invalid org name \"ac me\""]);
    assert_problem(
        &MINIMAL.replace("name = \"acme\"", "name = \"\""),
        &["org[0].name: invalid org name"],
    );
}

#[test]
fn client_ids_must_be_word_characters() {
    let text = MINIMAL.replace("ABC123", "ABC-123");
    assert_problem(
        &text,
        &[
            "org[0] (\"acme\").client_id: invalid client_id \"ABC-123\"",
            "^[A-Za-z0-9_]+$",
        ],
    );
}

#[test]
fn interval_and_cron_in_one_table_are_refused() {
    let both = "interval = \"1m\"\ncron = \"0 * * * * *\"";
    assert_problem(
        &org_with(both),
        &["org[0] (\"acme\"): both `interval` and `cron`"],
    );
    assert_problem(
        &format!("[defaults]\n{both}\n{MINIMAL}"),
        &["t.toml: defaults: both `interval` and `cron`"],
    );
}

#[test]
fn interval_and_cron_together_still_have_their_values_checked() {
    // The conflict used to hide the other problems of the table (issue 17).
    let problems = problems(&org_with("interval = \"5\"\ncron = \"*/5 * * * *\""));
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for fragment in [
        "org[0] (\"acme\"): both `interval` and `cron`",
        "org[0] (\"acme\").interval: invalid duration \"5\"",
        "org[0] (\"acme\").cron: invalid cron expression \"*/5 * * * *\": has 5 fields",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(fragment)),
            "no problem contains {fragment:?}: {problems:#?}"
        );
    }
}

#[test]
fn zero_durations_are_refused_where_they_make_no_sense() {
    for key in ["interval", "timeout", "token_min_interval", "token_max_age"] {
        assert_problem(
            &org_with(&format!("{key} = \"0s\"")),
            &[&format!(
                "org[0] (\"acme\").{key}: must be greater than zero"
            )],
        );
        assert_problem(
            &format!("[defaults]\n{key} = \"0s\"\n{MINIMAL}"),
            &[&format!("defaults.{key}: must be greater than zero")],
        );
    }
}

#[test]
fn invalid_durations_use_the_humantime_message() {
    assert_problem(
        &org_with("jitter = \"5\""),
        &["org[0] (\"acme\").jitter: invalid duration \"5\": time unit needed"],
    );
    assert_problem(
        &org_with("token_max_age = \"1 fortnight\""),
        &[
            "org[0] (\"acme\").token_max_age: invalid duration",
            "unknown time unit",
        ],
    );
}

#[test]
fn invalid_cron_expressions_are_refused() {
    assert_problem(
        &org_with("cron = \"0 61 * * * *\""),
        &["org[0] (\"acme\").cron: invalid cron expression"],
    );
    assert_problem(
        &org_with("cron = \"*/5 * * * *\""),
        &["org[0] (\"acme\").cron:", "6 fields, seconds first"],
    );
}

#[test]
fn jitter_must_be_less_than_interval() {
    assert_problem(&org_with("interval = \"30s\"\njitter = \"30s\""), &["org[0] (\"acme\"): jitter (30s, from org[0] (\"acme\").jitter) must be less than interval (30s, from org[0] (\"acme\").interval)"]);
    // Against the built-in interval, reported once at [defaults] rather than per org.
    let text = format!("[defaults]\njitter = \"2m\"\n{MINIMAL}\n[[org]]\nname = \"b\"\nclient_id = \"B\"\nclient_secret_env = \"ACME_SECRET\"\n");
    let problems = assert_problem(&text, &["t.toml: defaults: jitter (2m, from defaults.jitter) must be less than interval (1m, built-in default)"]);
    assert_eq!(problems.len(), 1, "{problems:?}");
    // An org's own interval is checked against the inherited jitter.
    let text = format!(
        "[defaults]\njitter = \"20s\"\n{}",
        org_with("interval = \"10s\"")
    );
    assert_problem(
        &text,
        &["org[0] (\"acme\"): jitter (20s, from defaults.jitter) must be less than interval"],
    );
}

#[test]
fn token_refresh_margin_must_be_less_than_token_max_age() {
    assert_problem(&org_with("token_refresh_margin = \"1h\""), &["org[0] (\"acme\"): token_refresh_margin (1h, from org[0] (\"acme\").token_refresh_margin) must be less than token_max_age (1h, built-in default)"]);
    assert_problem(
        &format!("[defaults]\ntoken_max_age = \"30s\"\n{MINIMAL}"),
        &[
            "defaults: token_refresh_margin",
            "must be less than token_max_age (30s, from defaults.token_max_age)",
        ],
    );
}

#[test]
fn unknown_api_and_auth_values_list_the_allowed_ones() {
    assert_problem(
        &org_with("api = \"v3\""),
        &["org[0] (\"acme\").api: unknown value \"v3\" (allowed: \"v1\", \"v2\")"],
    );
    assert_problem(
        &org_with("auth = \"header\""),
        &["org[0] (\"acme\").auth: unknown value \"header\" (allowed: \"basic\", \"body\")"],
    );
}

#[test]
fn latency_histograms_is_org_or_host() {
    assert_problem(
        &format!("[exporter]\nlatency_histograms = \"hosts\"\n{MINIMAL}"),
        &["t.toml: exporter.latency_histograms: unknown value \"hosts\" (allowed: \"org\", \"host\")"],
    );
    assert_problem(
        &format!("[exporter]\nlatency_histograms = true\n{MINIMAL}"),
        &["exporter.latency_histograms: expected a string, found boolean"],
    );
    assert_eq!(
        parse_ok(&format!("{MINIMAL}\n")).latency_histograms,
        LatencyHistograms::Org
    );
    assert_eq!(
        parse_ok(&format!(
            "[exporter]\nlatency_histograms = \"org\"\n{MINIMAL}"
        ))
        .latency_histograms,
        LatencyHistograms::Org
    );
}

#[test]
fn hosts_must_be_http_urls() {
    assert_problem(
        &org_with("host = \"openbadgefactory.com\""),
        &[
            "org[0] (\"acme\").host: invalid host",
            "http:// or https://",
        ],
    );
    assert_problem(
        &org_with("host = \"https://x.example/?a=1\""),
        &["org[0] (\"acme\").host:", "query"],
    );
    assert_problem(
        &format!("[defaults]\nhost = \"https://\"\n{MINIMAL}"),
        &["defaults.host: invalid host", "no host name"],
    );
}

#[test]
fn an_unreadable_ca_file_is_refused() {
    let dir = Scratch::new();
    let missing = dir.path("missing-ca.pem");
    assert_problem(
        &org_with(&format!("ca_file = \"{missing}\"")),
        &["org[0] (\"acme\").ca_file: cannot read", &missing],
    );
}

#[test]
fn listen_must_be_a_socket_address() {
    assert_problem(
        &format!("[exporter]\nlisten = \"localhost\"\n{MINIMAL}"),
        &["t.toml: exporter.listen: invalid socket address \"localhost\""],
    );
    assert_eq!(
        parse_ok(&format!("[exporter]\nlisten = \"[::]:9852\"\n{MINIMAL}")).listen,
        "[::]:9852".parse().ok()
    );
}

#[test]
fn label_names_must_be_valid_and_not_reserved() {
    assert_problem(
        &org_with("labels = { \"a-b\" = \"x\" }"),
        &["org[0] (\"acme\").labels.a-b: invalid label name"],
    );
    assert_problem(
        &org_with("labels = { \"a b\" = \"x\" }"),
        &["org[0] (\"acme\").labels.\"a b\": invalid label name"],
    );
    assert_problem(
        &org_with("labels = { __x = \"x\" }"),
        &["org[0] (\"acme\").labels.__x: invalid label name"],
    );
    for reserved in ["org", "client_id", "host", "api"] {
        assert_problem(
            &org_with(&format!("labels = {{ {reserved} = \"x\" }}")),
            &[&format!(
                "org[0] (\"acme\").labels.{reserved}: reserved label name"
            )],
        );
    }
    assert_problem(
        &org_with("labels = { team = 1 }"),
        &["org[0] (\"acme\").labels.team: expected a string, found integer"],
    );
}

#[test]
fn orgs_sharing_a_token_must_agree_on_its_settings() {
    let text = format!(
        "{MINIMAL}\n[[org]]\nname = \"acme2\"\nclient_id = \"ABC123\"\nclient_secret_env = \"OTHER_SECRET\"\n\
         auth = \"body\"\ntoken_max_age = \"2h\"\nhost = \"https://OpenBadgeFactory.com/\"\n"
    );
    assert_problem(
        &text,
        &[
            "org[1] (\"acme2\"): shares host \"https://openbadgefactory.com\" and client_id \"ABC123\"",
            "with org[0] (\"acme\")",
            "differs from it in: client secret, auth, token_max_age",
        ],
    );
}

#[test]
fn web_tls_files_come_in_pairs_and_must_be_readable() {
    let dir = Scratch::new();
    let cert = dir.file("tls.crt", "cert");
    assert_problem(
        &format!("[exporter.web]\ntls_cert_file = \"{cert}\"\n{MINIMAL}"),
        &["exporter.web.tls_key_file: missing", "set together"],
    );
    assert_problem(
        &format!("[exporter.web]\ntls_key_file = \"{cert}\"\n{MINIMAL}"),
        &["exporter.web.tls_cert_file: missing"],
    );
    let missing = dir.path("nope.key");
    assert_problem(
        &format!(
            "[exporter.web]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{missing}\"\n{MINIMAL}"
        ),
        &["exporter.web.tls_key_file: cannot read", &missing],
    );
    // Readable but not what `run` can serve: found by `check` too.
    assert_problem(
        &format!(
            "[exporter.web]\ntls_cert_file = \"{cert}\"\ntls_key_file = \"{cert}\"\n{MINIMAL}"
        ),
        &["exporter.web.tls_cert_file:", "no PEM certificate"],
    );
    let cert1 = dir.file(
        "cert1.pem",
        include_str!("../../../tests/fixtures/tls/cert1.pem"),
    );
    let key2 = dir.file(
        "key2.pem",
        include_str!("../../../tests/fixtures/tls/key2.pem"),
    );
    assert_problem(
        &format!(
            "[exporter.web]\ntls_cert_file = \"{cert1}\"\ntls_key_file = \"{key2}\"\n{MINIMAL}"
        ),
        &["exporter.web.tls_cert_file:"],
    );
}

#[test]
fn web_users_need_bcrypt_hashes() {
    let problems = assert_problem(
        &format!(
            "[exporter.web]\nbasic_auth_users = {{ prometheus = \"plainPassword1\" }}\n{MINIMAL}"
        ),
        &["exporter.web.basic_auth_users.prometheus: not a bcrypt hash"],
    );
    assert!(
        !problems.join("\n").contains("plainPassword1"),
        "{problems:?}"
    );
    let hash = "$2b$12$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy";
    let config = parse_ok(&format!(
        "[exporter.web]\nbasic_auth_users = {{ prometheus = \"{hash}\" }}\n{MINIMAL}"
    ));
    assert_eq!(config.web.map(|w| w.basic_auth_users.len()), Some(1));
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("basic auth without TLS")),
        "{:?}",
        config.warnings
    );
}

#[test]
fn credential_check_interval_must_not_be_shorter_than_token_min_interval() {
    assert_problem(
        &org_with("credential_check_interval = \"5s\""),
        &["org[0] (\"acme\"): credential_check_interval (5s, from org[0] (\"acme\").credential_check_interval) must be at least token_min_interval (10s, built-in default), or \"0s\" to turn the check off"],
    );
    // Against a minimum interval raised in [defaults], reported once there.
    let problems = assert_problem(
        &format!("[defaults]\ntoken_min_interval = \"2h\"\n{MINIMAL}"),
        &["t.toml: defaults: credential_check_interval (1h, built-in default) must be at least token_min_interval (2h, from defaults.token_min_interval)"],
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_problem(
        &org_with("credential_check_interval = \"an hour\""),
        &["org[0] (\"acme\").credential_check_interval: invalid duration"],
    );
    assert_problem(
        &format!("[defaults]\ncredential_check_interval = \"1s\"\n{MINIMAL}"),
        &["defaults: credential_check_interval (1s, from defaults.credential_check_interval) must be at least token_min_interval"],
    );
}

#[test]
fn orgs_sharing_a_token_must_agree_on_the_credential_check() {
    let text = format!(
        "{MINIMAL}\n[[org]]\nname = \"acme2\"\nclient_id = \"ABC123\"\nclient_secret_env = \"ACME_SECRET\"\n\
         credential_check_interval = \"2h\"\n"
    );
    assert_problem(
        &text,
        &[
            "org[1] (\"acme2\"): shares host",
            "differs from it in: credential_check_interval",
        ],
    );
}
