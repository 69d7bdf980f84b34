//! The simulator's own minimal decoding of what arrives on the wire: form bodies, HTTP Basic and
//! Bearer credentials, plus the timestamps it writes into Spring-style error bodies.
//!
//! Hand-written on purpose and never shared with the exporter's OBF client: a shared decoder would let
//! one misunderstanding of the wire format pass every test.

use std::time::{SystemTime, UNIX_EPOCH};

/// Decodes an `application/x-www-form-urlencoded` body into (name, value) pairs in order.
/// Pairs whose percent-encoding is broken are dropped, as a lenient server would.
pub(super) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((form_decode(name)?, form_decode(value)?))
        })
        .collect()
}

/// The first value of `name` in a decoded form.
pub(super) fn form_value<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Form decoding: `+` is a space, `%XX` is a byte; the bytes must be UTF-8.
fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = hex_value(*bytes.get(i + 1)?)?;
                let lo = hex_value(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits an `Authorization` value into its scheme (case-insensitive match) and credentials.
fn credentials_for<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim().split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// `Basic base64(id:secret)` → (id, secret). RFC 6749 §2.3.1 form-encodes both parts before
/// base64, so they are form-decoded afterwards (a no-op for OBF's `^\w+$` ids and secrets).
pub(super) fn basic_credentials(header: &str) -> Option<(String, String)> {
    let decoded = base64_decode(credentials_for(header, "Basic")?)?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let id = form_decode(id).unwrap_or_else(|| id.to_owned());
    let secret = form_decode(secret).unwrap_or_else(|| secret.to_owned());
    Some((id, secret))
}

/// `Bearer <token>` → token.
pub(super) fn bearer_token(header: &str) -> Option<&str> {
    credentials_for(header, "Bearer").filter(|t| !t.is_empty())
}

/// Standard-alphabet base64 with optional padding; `None` on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // Truncation is the point: take the next complete byte off the accumulator.
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Seconds since the unix epoch on the wall clock (0 if the clock is before 1970).
pub(super) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Spring's timestamp format, e.g. `2024-03-01T12:34:56.789+00:00`.
pub(super) fn spring_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn form_bodies_decode_plus_and_percent() {
        let form =
            parse_form(b"grant_type=client_credentials&client_id=a+b&client_secret=%41%2f&flag");
        assert_eq!(form_value(&form, "grant_type"), Some("client_credentials"));
        assert_eq!(form_value(&form, "client_id"), Some("a b"));
        assert_eq!(form_value(&form, "client_secret"), Some("A/"));
        assert_eq!(form_value(&form, "flag"), Some(""));
        assert_eq!(form_value(&form, "missing"), None);
    }

    #[test]
    fn broken_percent_encoding_drops_the_pair() {
        let form = parse_form(b"a=%4&b=%zz&c=1");
        assert_eq!(form, vec![("c".to_owned(), "1".to_owned())]);
    }

    #[test]
    fn basic_credentials_decode_with_and_without_padding() {
        // "abc:def" and "ab:c" (which needs padding).
        assert_eq!(
            basic_credentials("Basic YWJjOmRlZg=="),
            Some(("abc".into(), "def".into()))
        );
        assert_eq!(
            basic_credentials("basic YWI6Yw"),
            Some(("ab".into(), "c".into()))
        );
        assert_eq!(basic_credentials("Bearer YWJjOmRlZg=="), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
        // No colon: not credentials.
        assert_eq!(basic_credentials("Basic YWJj"), None);
    }

    #[test]
    fn bearer_tokens_need_the_scheme_and_a_value() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Basic abc"), None);
    }

    #[test]
    fn timestamps_look_like_spring() {
        let t = UNIX_EPOCH + Duration::from_millis(1_709_296_496_789);
        assert_eq!(spring_timestamp(t), "2024-03-01T12:34:56.789+00:00");
        assert_eq!(
            spring_timestamp(UNIX_EPOCH),
            "1970-01-01T00:00:00.000+00:00"
        );
    }
}
