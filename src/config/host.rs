//! The OBF base URL: checked to be a plain http(s) URL and normalised
//! (`scheme://host[:port][/prefix]`) so that two spellings of one host share a token. Parsing
//! and normalisation are the `url` crate's (the one reqwest sends with); the checks here only
//! make it stricter than a browser's forgiving parser, as a config file should be.

use url::{Host, Url};

/// Validates an http(s) base URL and normalises it to `scheme://host[:port][/prefix]`, as the
/// `url` crate does (lower-case scheme and host, IDNA host names in their `xn--` form, IPv4 and
/// IPv6 addresses in canonical form, the scheme's default port dropped, the path's `.`/`..`
/// resolved and anything outside ASCII percent-encoded), then without a trailing slash, so
/// equal hosts compare equal.
pub(crate) fn normalize_host(text: &str) -> Result<String, String> {
    let shown = without_user_info(text);
    let bad = |why: &str| Err(format!("invalid host {shown:?}: {why}"));
    // The `url` crate forgives what a config file should not: it drops tabs and newlines
    // anywhere, accepts `https:x` and `https:\\x`, takes `https:///x` as host `x`, and ignores
    // an empty user info (`https://@x`) or port (`https://x:`).
    let lower = text.to_ascii_lowercase();
    let Some(rest) = ["https://", "http://"]
        .iter()
        .find(|prefix| lower.starts_with(*prefix))
        .and_then(|prefix| text.get(prefix.len()..))
    else {
        return bad("must start with http:// or https://");
    };
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        return bad("no host name");
    }
    if authority.contains('@') {
        return bad("must not contain user info (credentials belong in client_secret_*)");
    }
    // `url` reads an empty port as none.
    if authority.ends_with(':') {
        return bad("port must be a number from 1 to 65535");
    }
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::InvalidPort) => return bad("port must be a number from 1 to 65535"),
        Err(url::ParseError::InvalidIpv6Address) => return bad("invalid IPv6 address"),
        Err(e) => return bad(&e.to_string()),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return bad("must not have a query or fragment");
    }
    if url.port() == Some(0) {
        return bad("port must be a number from 1 to 65535");
    }
    let host = match url.host() {
        // A DNS name only: the `url` crate allows `!$&'()*+,;=` and more in a host name.
        Some(Host::Domain(name))
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')) =>
        {
            name.to_owned()
        }
        Some(Host::Domain(_)) => return bad("host name has characters a host name cannot have"),
        Some(Host::Ipv4(addr)) => addr.to_string(),
        Some(Host::Ipv6(addr)) => format!("[{addr}]"),
        None => return bad("no host name"),
    };
    // `port()` is `None` for the scheme's default port, so one server is one token cache.
    let port = url.port().map(|n| format!(":{n}")).unwrap_or_default();
    let path = url.path().trim_end_matches('/');
    Ok(format!("{}://{host}{port}{path}", url.scheme()))
}

/// The URL as written, but for any user info (`user:password@`), which may hold a pasted secret and
/// so never reaches a message.
fn without_user_info(text: &str) -> String {
    let start = text.find("://").map_or(0, |at| at + 3);
    let rest = &text[start..];
    let authority = rest
        .find(['/', '\\', '?', '#'])
        .map_or(rest, |end| &rest[..end]);
    match authority.rfind('@') {
        Some(at) => format!("{}(user info not shown){}", &text[..start], &rest[at..]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_info_in_a_refused_host_is_never_echoed() {
        for text in [
            "https://ABC123:s3cr3tValue@openbadgefactory.com",
            "https://ABC123:s3cr3tValue@openbadgefactory.com/x y",
            "ABC123:s3cr3tValue@openbadgefactory.com",
            "https://ABC123:s3cr3tValue@@host/",
        ] {
            let error = normalize_host(text).expect_err(text);
            assert!(!error.contains("s3cr3tValue"), "{error}");
            assert!(error.contains("(user info not shown)"), "{error}");
        }
        assert_eq!(
            without_user_info("http://a@b/c@d"),
            "http://(user info not shown)@b/c@d"
        );
    }

    #[test]
    fn hosts_are_normalised() {
        let cases = [
            (
                "https://openbadgefactory.com:443/",
                "https://openbadgefactory.com",
            ),
            ("http://127.0.0.1:80", "http://127.0.0.1"),
            ("http://127.0.0.1:443", "http://127.0.0.1:443"),
            (
                "https://openbadgefactory.com",
                "https://openbadgefactory.com",
            ),
            (
                "https://openbadgefactory.com/",
                "https://openbadgefactory.com",
            ),
            ("HTTPS://Factory.CanCred.ca//", "https://factory.cancred.ca"),
            ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
            ("http://[::1]:9/obf/api/", "http://[::1]:9/obf/api"),
            ("https://proxy.example/obf", "https://proxy.example/obf"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_hosts_are_refused() {
        for bad in [
            "openbadgefactory.com",
            "ftp://x",
            "https://",
            "https:///path",
            "https://x?y=1",
            "https://x#frag",
            "https://user:pw@x",
            "https://x:0",
            "https://x:99999",
            "https://x:port",
            "https://a b",
            "http://[nope]:1",
            "http://[::1]x",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
    }

    /// Where the `url` crate normalises what the hand-written code kept as written: two
    /// spellings of one server now share a token, and the result is what reqwest sends anyway.
    #[test]
    fn the_url_crate_normalises_more_spellings_to_one() {
        let cases = [
            // IDNA: Unicode host names in their ASCII (`xn--`) form, case folded.
            ("https://Bücher.EXAMPLE", "https://xn--bcher-kva.example"),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
            // Percent-encoded host names are decoded; paths are percent-encoded.
            ("https://exa%6Dple.com/", "https://example.com"),
            ("https://x.example/ä/", "https://x.example/%C3%A4"),
            ("https://x.example/a%2Fb", "https://x.example/a%2Fb"),
            // Dot segments resolved; trailing slashes of a prefix dropped.
            ("https://x.example/a/./b/../c//", "https://x.example/a/c"),
            // Addresses in canonical form; default ports in either spelling dropped.
            ("http://127.1:8080", "http://127.0.0.1:8080"),
            ("http://[0:0::1]:9/", "http://[::1]:9"),
            ("http://[::FFFF:7F00:1]", "http://[::ffff:127.0.0.1]"),
            ("HTTP://X.Example:080/", "http://x.example"),
            ("https://x.example:0443", "https://x.example"),
            ("http://x.example:443", "http://x.example:443"),
            ("https://x.example:80", "https://x.example:80"),
            // As before: underscores, and a port with no default.
            (
                "https://my_host.example:65535",
                "https://my_host.example:65535",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_host(input).as_deref(), Ok(want), "{input}");
        }
    }

    /// What the `url` crate forgives (as browsers do) and a config file should not.
    #[test]
    fn what_the_url_crate_forgives_is_still_refused() {
        for bad in [
            "https:x.example",
            "https:/x.example",
            "https:\\\\x.example",
            "https://\\x.example",
            "https://x.exa\tmple",
            "https://x.exa\nmple",
            " https://x.example",
            "https://x.example/a b",
            "https://@x.example",
            "https://:pw@x.example",
            "https://x.example?",
            "https://x.example#",
            "https://x.example:",
            "https://x!.example",
            "https://x$.example",
            "https://x.example:-1",
            "https://x.example:65536",
            "https://[::1",
            "https://[1.2.3]",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad}");
        }
    }
}
