//! The OBF base URL: checked to be a plain http(s) URL and normalised
//! (`scheme://host[:port][/prefix]`, lower-case scheme and host, no trailing slash) so that
//! two spellings of one host share a token. No URL crate: the accepted shape is small.

/// Validates an http(s) base URL and normalises it to `scheme://host[:port][/prefix]`: scheme
/// and host lower-cased, no trailing slash, so equal hosts compare equal.
pub(crate) fn normalize_host(text: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("invalid host {text:?}: {why}"));
    let lower = text.to_ascii_lowercase();
    let (scheme, rest) = if lower.starts_with("https://") {
        ("https", text.get("https://".len()..).unwrap_or_default())
    } else if lower.starts_with("http://") {
        ("http", text.get("http://".len()..).unwrap_or_default())
    } else {
        return bad("must start with http:// or https://");
    };
    if rest.contains(['?', '#']) {
        return bad("must not have a query or fragment");
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("must not contain whitespace");
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return bad("must not contain user info (credentials belong in client_secret_*)");
    }
    let (hostname, port) = if let Some(v6) = authority.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, tail)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                let port = match tail {
                    "" => None,
                    _ => match tail.strip_prefix(':') {
                        Some(port) => Some(port),
                        None => return bad("unexpected text after the IPv6 address"),
                    },
                };
                (authority.get(..addr.len() + 2).unwrap_or_default(), port)
            }
            _ => return bad("invalid IPv6 address"),
        }
    } else {
        match authority.split_once(':') {
            Some((h, port)) => (h, Some(port)),
            None => (authority, None),
        }
    };
    if hostname.is_empty() {
        return bad("no host name");
    }
    if !hostname.starts_with('[')
        && !hostname
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        return bad("host name has characters a host name cannot have");
    }
    let port = match port {
        None => String::new(),
        Some(port) => match port.parse::<u16>() {
            // The scheme's default port is dropped, so one server is one token cache.
            Ok(443) if scheme == "https" => String::new(),
            Ok(80) if scheme == "http" => String::new(),
            Ok(n) if n > 0 => format!(":{n}"),
            _ => return bad("port must be a number from 1 to 65535"),
        },
    };
    let path = path.trim_end_matches('/');
    Ok(format!(
        "{scheme}://{}{port}{path}",
        hostname.to_lowercase()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
