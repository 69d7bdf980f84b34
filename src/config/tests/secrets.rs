//! Client secrets: exactly one source, read and trimmed, and never shown in messages or Debug.

use super::*;

const HEAD: &str = "[[org]]\nname = \"acme\"\nclient_id = \"ABC123\"\n";

#[test]
fn exactly_one_secret_source_is_required() {
    assert_problem(
        HEAD,
        &[
            "org[0] (\"acme\"): no client secret",
            "client_secret_file, client_secret_env or client_secret",
        ],
    );
    let two = format!("{HEAD}client_secret_env = \"ACME_SECRET\"\nclient_secret = \"x\"\n");
    assert_problem(
        &two,
        &[
            "org[0] (\"acme\"): more than one client secret source is set (client_secret_env, client_secret)",
            "exactly one",
        ],
    );
}

#[test]
fn secret_files_are_read_and_one_trailing_newline_trimmed() {
    let dir = Scratch::new();
    for (contents, want) in [
        ("abc\n", "abc"),
        ("abc\r\n", "abc"),
        ("abc", "abc"),
        ("abc\n\n", "abc\n"),
    ] {
        let path = dir.file("secret", contents);
        let config = parse_ok(&format!("{HEAD}client_secret_file = \"{path}\"\n"));
        assert_eq!(
            config.orgs[0].client_secret.expose_secret(),
            want,
            "{contents:?}"
        );
        assert_eq!(
            config.orgs[0].secret_source,
            SecretSource::File(path.into())
        );
    }
    // Whitespace left after trimming is probably a mistake: warned about, never shown.
    let path = dir.file("secret2", "abc\n\n");
    let config = parse_ok(&format!("{HEAD}client_secret_file = \"{path}\"\n"));
    assert!(
        config.warnings.iter().any(|w| w.contains(
            "org[0] (\"acme\").client_secret_file: the client secret contains whitespace"
        )),
        "{:?}",
        config.warnings
    );
}

#[test]
fn an_unreadable_secret_file_names_the_file_and_the_os_error() {
    let dir = Scratch::new();
    let missing = dir.path("no-such-secret");
    assert_problem(
        &format!("{HEAD}client_secret_file = \"{missing}\"\n"),
        &[
            "org[0] (\"acme\").client_secret_file: cannot read secret file",
            &missing,
            "os error",
        ],
    );
}

#[test]
fn a_relative_secret_path_error_names_the_working_directory() {
    let cwd = std::env::current_dir().expect("working directory");
    assert_problem(
        &format!("{HEAD}client_secret_file = \"secrets/no-such-secret\"\n"),
        &[
            "cannot read secret file \"secrets/no-such-secret\"",
            &format!("(relative to the working directory {})", cwd.display()),
            "os error",
        ],
    );
    // An absolute path needs no such note.
    let dir = Scratch::new();
    let missing = dir.path("no-such-secret");
    let absolute = problems(&format!("{HEAD}client_secret_file = \"{missing}\"\n"));
    assert!(
        !absolute.iter().any(|p| p.contains("working directory")),
        "{absolute:?}"
    );
}

#[test]
fn an_empty_secret_is_refused() {
    let dir = Scratch::new();
    let empty = dir.file("empty", "\n");
    assert_problem(
        &format!("{HEAD}client_secret_file = \"{empty}\"\n"),
        &[
            "org[0] (\"acme\").client_secret_file: secret file",
            "is empty",
        ],
    );
    assert_problem(
        &format!("{HEAD}client_secret = \"\"\n"),
        &["org[0] (\"acme\").client_secret: empty client secret"],
    );
}

#[test]
fn secret_env_vars_must_be_set_and_non_empty() {
    assert_problem(
        &format!("{HEAD}client_secret_env = \"NOT_SET_ANYWHERE\"\n"),
        &["org[0] (\"acme\").client_secret_env: environment variable NOT_SET_ANYWHERE is not set"],
    );
    assert_problem(
        &format!("{HEAD}client_secret_env = \"EMPTY\"\n"),
        &["org[0] (\"acme\").client_secret_env: environment variable EMPTY is empty"],
    );
}

#[test]
fn an_inline_secret_works_with_a_warning() {
    let config = parse_ok(&format!("{HEAD}client_secret = \"{SECRET}\"\n"));
    assert_eq!(config.orgs[0].client_secret.expose_secret(), SECRET);
    assert_eq!(config.orgs[0].secret_source, SecretSource::Inline);
    assert_eq!(
        config.warnings,
        ["t.toml: org[0] (\"acme\"): client_secret is inline in the config file; prefer client_secret_file or client_secret_env"]
    );
}

#[test]
fn secrets_never_appear_in_problems_warnings_or_debug() {
    let dir = Scratch::new();
    let file = dir.file("secret", &format!("{SECRET}\n"));
    // Valid configs: Debug of the whole config, and the warnings.
    for text in [
        format!("{HEAD}client_secret = \"{SECRET}\"\n"),
        format!("{HEAD}client_secret_file = \"{file}\"\n"),
        format!("{HEAD}client_secret_env = \"ACME_SECRET\"\n"),
    ] {
        let config = parse_ok(&text);
        let shown = format!(
            "{config:?}\n{}\n{:?}",
            config.warnings.join("\n"),
            config.orgs[0]
        );
        assert!(!shown.contains(SECRET), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
    // Invalid configs with the secret in play: every message.
    let broken = [
        // Syntax error on the very line holding the secret.
        format!("{HEAD}client_secret = \"{SECRET}\nlabels = 1\n"),
        format!("{HEAD}client_secret = \"{SECRET}\" x\n"),
        // Two sources, one of them the secret inline.
        format!("{HEAD}client_secret = \"{SECRET}\"\nclient_secret_env = \"ACME_SECRET\"\n"),
        // Shared token with a different secret.
        format!(
            "{HEAD}client_secret = \"{SECRET}\"\n[[org]]\nname = \"b\"\nclient_id = \"ABC123\"\n\
             client_secret = \"{SECRET}x\"\n"
        ),
        // The secret pasted where a secret path or env name goes.
        format!("{HEAD}client_secret_env = \"{SECRET}\"\n")
            .replace("s3cr3tValue_42\"", "s3cr3tValue_42\"\ninterval = 5"),
        // A mistyped inline secret.
        format!("{HEAD}client_secret = 12345678\n"),
    ];
    for text in broken {
        let err = parse(&text, "t.toml", &env).expect_err("broken config");
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains(SECRET), "secret leaked:\n{shown}");
        assert!(!shown.contains("12345678"), "secret leaked:\n{shown}");
    }
}
