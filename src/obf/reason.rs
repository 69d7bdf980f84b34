//! The closed set of failure reasons: the `reason` label of every failure counter, in one place.

use std::fmt;

/// Why a token request, ping or subscription check failed.
///
/// This is the contract's closed set: dashboards and alert rules match on these strings, so a new
/// variant is a contract change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    Dns,
    Connect,
    Tls,
    Timeout,
    /// HTTP 429.
    RateLimited,
    /// The token endpoint refused the credentials (400 invalid_client, 401, 403).
    Rejected,
    /// Ping answered 401.
    Unauthorized,
    /// Ping answered 403, also after one fresh token.
    Forbidden,
    NotFound,
    /// Any other 4xx.
    ClientError,
    ServerError,
    /// A 3xx: redirects are never followed.
    Redirect,
    /// Unparseable or oversized body, or no access_token.
    InvalidResponse,
    /// The ping was not sent: no usable token.
    NoToken,
}

impl Reason {
    pub const ALL: [Reason; 14] = [
        Reason::Dns,
        Reason::Connect,
        Reason::Tls,
        Reason::Timeout,
        Reason::RateLimited,
        Reason::Rejected,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::ClientError,
        Reason::ServerError,
        Reason::Redirect,
        Reason::InvalidResponse,
        Reason::NoToken,
    ];

    /// The label value used in metrics, logs and the status page.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Dns => "dns",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::RateLimited => "rate_limited",
            Reason::Rejected => "rejected",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::ClientError => "client_error",
            Reason::ServerError => "server_error",
            Reason::Redirect => "redirect",
            Reason::InvalidResponse => "invalid_response",
            Reason::NoToken => "no_token",
        }
    }

    /// The reason for a non-2xx answer from a resource endpoint (ping, client info).
    pub fn for_resource_status(status: u16) -> Reason {
        match status {
            300..=399 => Reason::Redirect,
            401 => Reason::Unauthorized,
            403 => Reason::Forbidden,
            404 => Reason::NotFound,
            429 => Reason::RateLimited,
            400..=499 => Reason::ClientError,
            _ => Reason::ServerError,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Reason::ALL {
            let label = reason.as_str();
            assert!(seen.insert(label), "duplicate label {label}");
            assert!(label.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
        assert_eq!(seen.len(), 14);
    }

    #[test]
    fn resource_statuses_map_to_reasons() {
        assert_eq!(Reason::for_resource_status(302), Reason::Redirect);
        assert_eq!(Reason::for_resource_status(401), Reason::Unauthorized);
        assert_eq!(Reason::for_resource_status(403), Reason::Forbidden);
        assert_eq!(Reason::for_resource_status(404), Reason::NotFound);
        assert_eq!(Reason::for_resource_status(418), Reason::ClientError);
        assert_eq!(Reason::for_resource_status(429), Reason::RateLimited);
        assert_eq!(Reason::for_resource_status(503), Reason::ServerError);
    }
}
