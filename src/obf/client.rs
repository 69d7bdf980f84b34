//! The OBF HTTP client: token request, ping and client info, and the mapping of every failure to
//! one [`Reason`].
//!
//! It knows the wire (paths, auth modes, status codes, body limits) and nothing about caching,
//! schedules or metrics. Redirects are never followed; bodies are read up to [`MAX_BODY`].

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{ApiVersion, AuthMode, CaFile};
use crate::obf::reason::Reason;
use crate::obf::token::{IssuedToken, TokenFailure};

/// Larger response bodies are refused as `invalid_response`.
pub const MAX_BODY: usize = 64 * 1024;

pub const USER_AGENT: &str = concat!("obf-exporter/", env!("CARGO_PKG_VERSION"));

/// A failed call. `detail` is safe to log: it never holds a secret, a token or a response body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallFailure {
    pub reason: Reason,
    /// HTTP status, when an answer came.
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub detail: String,
}

impl CallFailure {
    fn new(reason: Reason, status: Option<u16>, detail: impl Into<String>) -> Self {
        CallFailure {
            reason,
            status,
            retry_after: None,
            detail: detail.into(),
        }
    }
}

impl From<CallFailure> for TokenFailure {
    fn from(failure: CallFailure) -> Self {
        TokenFailure {
            reason: failure.reason,
            retry_after: failure.retry_after,
            detail: failure.detail,
        }
    }
}

/// Where and how one org talks to OBF: its ping URL, parsed once when the org is built (not
/// formatted and parsed, IDNA included, at every probe), its `client_id` and its timeout. The
/// token and client-record URLs, used far less often, are made from the ping URL when needed
/// rather than kept: at 10,000 orgs each kept URL costs about 1.5 MB.
#[derive(Clone, Debug)]
pub struct Endpoint {
    client_id: Box<str>,
    api: ApiVersion,
    timeout: Duration,
    ping_url: Url,
}

impl Endpoint {
    /// `host` is `scheme://host[:port][/prefix]` as the config normalised it; `client_id` goes in
    /// as one percent-encoded path segment.
    pub fn new(
        host: &str,
        client_id: &str,
        api: ApiVersion,
        timeout: Duration,
    ) -> Result<Self, BuildError> {
        let mut ping_url = Url::parse(host)
            .ok()
            .filter(|url| !url.cannot_be_a_base())
            .ok_or_else(|| BuildError(format!("host {host:?} is not a base URL")))?;
        if let Ok(mut path) = ping_url.path_segments_mut() {
            path.pop_if_empty();
            match api {
                ApiVersion::V2 => path.extend(["v2", "client", client_id, "ping"]),
                ApiVersion::V1 => path.extend(["v1", "ping", client_id]),
            };
        }
        Ok(Endpoint {
            client_id: client_id.into(),
            api,
            timeout,
            ping_url,
        })
    }

    /// `host/prefix` followed by `segments`: the ping URL without the API's ping path.
    fn at(&self, segments: &[&str]) -> Url {
        let ping_path = match self.api {
            ApiVersion::V2 => 4,
            ApiVersion::V1 => 3,
        };
        let mut url = self.ping_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            for _ in 0..ping_path {
                path.pop();
            }
            path.extend(segments);
        }
        url
    }

    fn token_url(&self) -> Url {
        self.at(&["v2", "client", "oauth2", "token"])
    }

    fn client_url(&self) -> Url {
        self.at(&["v2", "client", &self.client_id])
    }
}

/// What a 2xx ping answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PingOk {
    pub status: u16,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct BuildError(String);

/// An HTTP client with one connection pool, reused across runs.
#[derive(Clone)]
pub struct ObfClient {
    http: reqwest::Client,
}

impl ObfClient {
    /// `ca_file` adds a trust root to the system's (from the bytes read with the config: no file
    /// is read here). `connect_timeout` bounds TCP + TLS setup. `max_idle_per_host`: idle
    /// connections kept per host, the caller's cap on requests in flight (more would never be
    /// reused).
    pub fn new(
        ca_file: Option<&CaFile>,
        connect_timeout: Duration,
        max_idle_per_host: usize,
    ) -> Result<Self, BuildError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(connect_timeout)
            // Servers close idle keep-alive connections (hyper after 30 s, nginx 75 s, load
            // balancers 60 s); reusing one just as it closes fails the request. Drop ours first.
            .pool_idle_timeout(Duration::from_secs(20))
            .pool_max_idle_per_host(max_idle_per_host)
            // reqwest's default retries HTTP/2 refusals, which this HTTP/1 client never gets,
            // yet clones every request (headers and all) in case it must; with no retries
            // allowed it clones nothing.
            .retry(reqwest::retry::never().max_retries_per_request(0));
        if let Some(ca) = ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&ca.pem)
                .map_err(|e| BuildError(format!("ca_file {}: {e}", ca.path.display())))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder.build().map_err(|e| BuildError(e.to_string()))?;
        Ok(ObfClient { http })
    }

    /// `POST /v2/client/oauth2/token` with the client-credentials grant.
    pub async fn request_token(
        &self,
        endpoint: &Endpoint,
        secret: &SecretString,
        auth: AuthMode,
    ) -> Result<IssuedToken, CallFailure> {
        let request = self
            .http
            .post(endpoint.token_url())
            .timeout(endpoint.timeout);
        let request = match auth {
            AuthMode::Basic => request
                .basic_auth(&*endpoint.client_id, Some(secret.expose_secret()))
                .form(&[("grant_type", "client_credentials")]),
            AuthMode::Body => request.form(&[
                ("grant_type", "client_credentials"),
                ("client_id", &*endpoint.client_id),
                ("client_secret", secret.expose_secret()),
            ]),
        };
        let response = request.send().await.map_err(classify_transport)?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        if status.is_success() {
            return parse_token(&read_body(response).await?, status.as_u16());
        }
        // An error is classified by its status; its body only matters for 400 invalid_client,
        // so an unreadable or oversized one (a proxy's HTML page) is simply ignored.
        let body = read_body(response).await.unwrap_or_default();
        let mut failure = CallFailure::new(
            token_status_reason(status, &body),
            Some(status.as_u16()),
            format!("token endpoint answered HTTP {}", status.as_u16()),
        );
        failure.retry_after = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS);
        Err(failure)
    }

    /// The ping: `GET /v2/client/{id}/ping` or, for `api = "v1"`, `GET /v1/ping/{id}`.
    pub async fn ping(
        &self,
        endpoint: &Endpoint,
        token: &SecretString,
    ) -> Result<PingOk, CallFailure> {
        let (status, _body) = self
            .get_with_token(&endpoint.ping_url, endpoint.timeout, token)
            .await?;
        Ok(PingOk { status })
    }

    /// `GET /v2/client/{id}`: the organisation record; returns `paid_until` (unix seconds).
    pub async fn subscription_end(
        &self,
        endpoint: &Endpoint,
        token: &SecretString,
    ) -> Result<i64, CallFailure> {
        let (status, body) = self
            .get_with_token(&endpoint.client_url(), endpoint.timeout, token)
            .await?;
        #[derive(Deserialize)]
        struct ClientRecord {
            paid_until: Option<serde_json::Value>,
        }
        let record: ClientRecord = serde_json::from_slice(&body).map_err(|_| {
            CallFailure::new(
                Reason::InvalidResponse,
                Some(status),
                "client record is not JSON",
            )
        })?;
        record
            .paid_until
            .as_ref()
            .and_then(paid_until_seconds)
            .ok_or_else(|| {
                CallFailure::new(
                    Reason::InvalidResponse,
                    Some(status),
                    "client record has no numeric paid_until",
                )
            })
    }

    async fn get_with_token(
        &self,
        url: &Url,
        timeout: Duration,
        token: &SecretString,
    ) -> Result<(u16, Vec<u8>), CallFailure> {
        let response = self
            .http
            .get(url.clone())
            .timeout(timeout)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(classify_transport)?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers(), SystemTime::now());
        if status.is_success() {
            return Ok((status.as_u16(), read_body(response).await?));
        }
        let mut failure = CallFailure::new(
            Reason::for_resource_status(status.as_u16()),
            Some(status.as_u16()),
            format!("HTTP {}", status.as_u16()),
        );
        failure.retry_after = retry_after.filter(|_| status == StatusCode::TOO_MANY_REQUESTS);
        Err(failure)
    }
}

/// The token endpoint's refusals: 401/403 and OAuth2's `invalid_client` mean the credentials.
fn token_status_reason(status: StatusCode, body: &[u8]) -> Reason {
    match status.as_u16() {
        401 | 403 => Reason::Rejected,
        400 => {
            #[derive(Deserialize)]
            struct OAuthError {
                error: String,
            }
            match serde_json::from_slice::<OAuthError>(body) {
                Ok(e) if e.error == "invalid_client" || e.error == "unauthorized_client" => {
                    Reason::Rejected
                }
                _ => Reason::ClientError,
            }
        }
        other => Reason::for_resource_status(other),
    }
}

fn parse_token(body: &[u8], status: u16) -> Result<IssuedToken, CallFailure> {
    #[derive(Deserialize)]
    struct TokenResponse {
        access_token: Option<String>,
        expires_in: Option<serde_json::Value>,
    }
    let parsed: TokenResponse = serde_json::from_slice(body).map_err(|_| {
        CallFailure::new(
            Reason::InvalidResponse,
            Some(status),
            "token response is not JSON",
        )
    })?;
    let access_token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CallFailure::new(
                Reason::InvalidResponse,
                Some(status),
                "token response has no access_token",
            )
        })?;
    // Some servers send numbers as strings; anything unusable counts as "unknown lifetime".
    let expires_in = parsed.expires_in.as_ref().and_then(|v| match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    Ok(IssuedToken {
        access_token: SecretString::from(access_token),
        expires_in: expires_in.filter(|s| *s > 0).map(Duration::from_secs),
    })
}

fn paid_until_seconds(value: &serde_json::Value) -> Option<i64> {
    match value {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Reads at most [`MAX_BODY`] bytes; a longer body is `invalid_response`.
async fn read_body(mut response: Response) -> Result<Vec<u8>, CallFailure> {
    let status = response.status().as_u16();
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(CallFailure::new(
            Reason::InvalidResponse,
            Some(status),
            "response body over 64 KiB",
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        let mut failure = classify_transport(e);
        failure.status = Some(status);
        failure
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(CallFailure::new(
                Reason::InvalidResponse,
                Some(status),
                "response body over 64 KiB",
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3).
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Maps a transport error to its reason. reqwest does not type TLS failures, so the error chain's
/// messages are read for them (covered by tests against a plain-HTTP port).
fn classify_transport(error: reqwest::Error) -> CallFailure {
    // Without the URL: a host or client_id containing "tls" must not make a refused connection TLS.
    let error = error.without_url();
    let chain = error_chain(&error);
    let lower = chain.to_lowercase();
    let reason = if error.is_timeout() || lower.contains("timed out") {
        Reason::Timeout
    } else if error.is_dns() || lower.contains("dns error") {
        Reason::Dns
    } else if lower.contains("tls")
        || lower.contains("certificate")
        || lower.contains("handshake")
        || lower.contains("corrupt message")
    {
        Reason::Tls
    } else if error.is_connect() {
        Reason::Connect
    } else if error.is_redirect() {
        Reason::Redirect
    } else if error.is_decode() || error.is_body() {
        Reason::InvalidResponse
    } else {
        // A connection that broke mid-request (reset, closed early) is a connection problem.
        Reason::Connect
    };
    // The messages carry no secrets (reqwest never prints headers or bodies); the URL is left out
    // to keep a detail line short.
    CallFailure::new(reason, None, chain.trim_end_matches(": ").to_string())
}

/// The messages of the error and its sources, joined by ": ".
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        text.push_str(&e.to_string());
        text.push_str(": ");
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[tokio::test]
    async fn the_url_is_not_read_as_part_of_a_transport_error() {
        // A refused connection to a ping URL full of TLS words is still `connect`.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ObfClient::new(None, Duration::from_secs(2), 4).unwrap();
        let host = format!("http://127.0.0.1:{port}");
        let endpoint = Endpoint::new(
            &host,
            "TLS_certificate_handshake",
            ApiVersion::V2,
            Duration::from_secs(2),
        )
        .unwrap();
        let token = SecretString::from("t");
        let failure = client.ping(&endpoint, &token).await.unwrap_err();
        assert_eq!(failure.reason, Reason::Connect, "{}", failure.detail);
        assert!(
            !failure.detail.contains("TLS_certificate"),
            "{}",
            failure.detail
        );
    }

    #[test]
    fn endpoint_urls_follow_the_api_version_and_keep_the_host_prefix() {
        let timeout = Duration::from_secs(1);
        let v2 = Endpoint::new("https://obf.example", "ABC_1", ApiVersion::V2, timeout).unwrap();
        assert_eq!(
            v2.token_url().as_str(),
            "https://obf.example/v2/client/oauth2/token"
        );
        assert_eq!(
            v2.ping_url.as_str(),
            "https://obf.example/v2/client/ABC_1/ping"
        );
        assert_eq!(
            v2.client_url().as_str(),
            "https://obf.example/v2/client/ABC_1"
        );
        let v1 = Endpoint::new("http://127.0.0.1:8080/obf", "x", ApiVersion::V1, timeout).unwrap();
        assert_eq!(v1.ping_url.as_str(), "http://127.0.0.1:8080/obf/v1/ping/x");
        assert_eq!(
            v1.token_url().as_str(),
            "http://127.0.0.1:8080/obf/v2/client/oauth2/token"
        );
        let v1_root = Endpoint::new("http://h", "x", ApiVersion::V1, timeout).unwrap();
        assert_eq!(v1_root.client_url().as_str(), "http://h/v2/client/x");
        let refused = Endpoint::new("mailto:a@b", "x", ApiVersion::V2, timeout).unwrap_err();
        assert!(refused.to_string().contains("not a base URL"), "{refused}");
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(30))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(45));
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(45))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers, now), None);
    }

    #[test]
    fn token_endpoint_refusals_are_rejections() {
        let invalid_client = br#"{"error":"invalid_client"}"#;
        assert_eq!(
            token_status_reason(StatusCode::BAD_REQUEST, invalid_client),
            Reason::Rejected
        );
        assert_eq!(
            token_status_reason(
                StatusCode::BAD_REQUEST,
                br#"{"error":"unsupported_grant_type"}"#
            ),
            Reason::ClientError
        );
        assert_eq!(
            token_status_reason(StatusCode::UNAUTHORIZED, b""),
            Reason::Rejected
        );
        assert_eq!(
            token_status_reason(StatusCode::FORBIDDEN, b""),
            Reason::Rejected
        );
        assert_eq!(
            token_status_reason(StatusCode::TOO_MANY_REQUESTS, b""),
            Reason::RateLimited
        );
        assert_eq!(
            token_status_reason(StatusCode::BAD_GATEWAY, b""),
            Reason::ServerError
        );
        assert_eq!(
            token_status_reason(StatusCode::FOUND, b""),
            Reason::Redirect
        );
    }

    #[test]
    fn token_bodies_are_parsed_strictly() {
        let ok = parse_token(
            br#"{"access_token":"abc","token_type":"bearer","expires_in":18000}"#,
            200,
        )
        .unwrap();
        assert_eq!(ok.expires_in, Some(Duration::from_secs(18000)));
        let no_expiry = parse_token(br#"{"access_token":"abc"}"#, 200).unwrap();
        assert_eq!(no_expiry.expires_in, None);
        let missing = parse_token(br#"{"token_type":"bearer"}"#, 200)
            .err()
            .unwrap();
        assert_eq!(missing.reason, Reason::InvalidResponse);
        let malformed = parse_token(br#"{"access_token": "#, 200).err().unwrap();
        assert_eq!(malformed.reason, Reason::InvalidResponse);
    }

    #[test]
    fn paid_until_takes_numbers_and_numeric_strings() {
        assert_eq!(
            paid_until_seconds(&serde_json::json!(1_900_000_000)),
            Some(1_900_000_000)
        );
        assert_eq!(
            paid_until_seconds(&serde_json::json!("1900000000")),
            Some(1_900_000_000)
        );
        assert_eq!(paid_until_seconds(&serde_json::json!(null)), None);
    }
}
