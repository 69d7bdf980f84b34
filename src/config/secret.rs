//! Where an org's client secret comes from (file, environment variable or inline) and reading
//! it. Messages name the source and the OS error, never a byte of the secret, nor a file name
//! or variable name that could be one.

use std::path::Path;

use secrecy::SecretString;

use super::file;
use super::raw::RawOrg;
use super::report::{join, Problems};
use super::SecretSource;

const KEYS: [&str; 3] = ["client_secret_file", "client_secret_env", "client_secret"];

/// Reads the one configured secret of the org at `ctx`. `None` after reporting a problem.
pub(crate) fn resolve(
    raw: &RawOrg,
    ctx: &str,
    env: &dyn Fn(&str) -> Option<String>,
    p: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<(SecretString, SecretSource)> {
    let given = [
        raw.client_secret_file.is_some(),
        raw.client_secret_env.is_some(),
        raw.client_secret.is_some(),
    ];
    let set: Vec<&str> = KEYS
        .iter()
        .zip(given)
        .filter_map(|(key, on)| on.then_some(*key))
        .collect();
    match set.as_slice() {
        [] => {
            // A secret key dropped for having the wrong type was reported already.
            if !KEYS.iter().any(|k| p.reported(&join(ctx, k))) {
                p.at(
                    ctx,
                    "no client secret: set exactly one of client_secret_file, \
                     client_secret_env or client_secret",
                );
            }
            return None;
        }
        [_] => {}
        several => {
            p.at(
                ctx,
                format!(
                    "more than one client secret source is set ({}); set exactly one",
                    several.join(", ")
                ),
            );
            return None;
        }
    }

    let (key, secret, source) = if let Some(path) = &raw.client_secret_file {
        let key = join(ctx, "client_secret_file");
        if path.is_empty() {
            p.at(&key, "empty path");
            return None;
        }
        let secret = match read_file(Path::new(path)) {
            Ok(secret) => secret,
            Err(problem) => {
                p.at(&key, problem);
                return None;
            }
        };
        (key, secret, SecretSource::File(path.into()))
    } else if let Some(name) = &raw.client_secret_env {
        let key = join(ctx, "client_secret_env");
        if name.is_empty() {
            p.at(&key, "empty environment variable name");
            return None;
        }
        match env(name) {
            None => {
                p.at(
                    &key,
                    format!("environment variable {} is not set", shown_var(name)),
                );
                return None;
            }
            Some(value) if value.is_empty() => {
                p.at(
                    &key,
                    format!("environment variable {} is empty", shown_var(name)),
                );
                return None;
            }
            Some(value) => (key, value, SecretSource::Env(name.clone())),
        }
    } else if let Some(value) = &raw.client_secret {
        let key = join(ctx, "client_secret");
        if value.is_empty() {
            p.at(&key, "empty client secret");
            return None;
        }
        warnings.push(p.warning(
            ctx,
            "client_secret is inline in the config file; prefer client_secret_file or \
             client_secret_env",
        ));
        (key, value.clone(), SecretSource::Inline)
    } else {
        // Unreachable: exactly one source was found above. Report rather than panic.
        p.at(ctx, "no client secret");
        return None;
    };

    // OBF secrets are `\w+`; stray whitespace (a second newline, a pasted space) would make
    // every token request fail with a bare 403, so say so now. Warning only: the server is
    // the judge of what a valid secret is.
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        warnings.push(p.warning(
            &key,
            "the client secret contains whitespace or control characters (after trimming one \
             trailing newline); OBF secrets are normally letters, digits and _ only",
        ));
    }
    Some((SecretString::from(secret), source))
}

/// Reads a secret file through the bounded reader and trims one trailing newline. The error is
/// one line safe to show (the path only if it looks like one). Blocking: the running agent calls
/// it off the async workers.
pub(crate) fn read_file(path: &Path) -> Result<String, String> {
    let what = format!(
        "secret file {}{}",
        shown_path(&path.to_string_lossy()),
        file::relative_note(path)
    );
    let text = file::read_to_string(path, file::SECRET_CAP).map_err(|e| e.describe(&what))?;
    let trimmed = trim_one_newline(&text);
    if trimmed.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(trimmed.to_owned())
}

/// The variable's name if it looks like one (`UPPER_CASE`). Anything else may be the secret
/// itself pasted into the wrong key, so it is not echoed.
fn shown_var(name: &str) -> String {
    let conventional = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if conventional {
        name.to_owned()
    } else {
        "(name not shown: it is not UPPER_CASE and might be a pasted secret)".to_owned()
    }
}

/// The path, quoted, if it looks like one (has a `/` or starts with `.`, and no whitespace or
/// control characters). Anything else may be the secret itself pasted into the wrong key, so it
/// is not echoed.
pub(crate) fn shown_path(path: &str) -> String {
    let looks_like_path = (path.contains('/') || path.starts_with('.'))
        && !path.chars().any(|c| c.is_whitespace() || c.is_control());
    if looks_like_path {
        format!("{path:?}")
    } else {
        "(path not shown: it does not look like a path and might be a pasted secret)".to_owned()
    }
}

/// Drops one trailing `\n` or `\r\n`, as editors and `echo` leave one.
fn trim_one_newline(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_trailing_newline_is_trimmed() {
        assert_eq!(trim_one_newline("abc\n"), "abc");
        assert_eq!(trim_one_newline("abc\r\n"), "abc");
        assert_eq!(trim_one_newline("abc\n\n"), "abc\n");
        assert_eq!(trim_one_newline("abc"), "abc");
        assert_eq!(trim_one_newline(" abc "), " abc ");
    }

    #[test]
    fn only_values_that_look_like_paths_are_echoed() {
        assert_eq!(shown_path("/run/secrets/acme"), "\"/run/secrets/acme\"");
        assert_eq!(shown_path("./acme.secret"), "\"./acme.secret\"");
        assert!(shown_path("aB3xYz9q").contains("not shown"));
        assert!(shown_path("acme.secret").contains("not shown"));
        assert!(shown_path("/with space/x").contains("not shown"));
    }

    #[test]
    fn only_conventional_variable_names_are_echoed() {
        assert_eq!(shown_var("ACME_OBF_SECRET"), "ACME_OBF_SECRET");
        assert!(shown_var("aB3xYz9").contains("not shown"));
        assert!(shown_var("9ABC").contains("not shown"));
    }
}
