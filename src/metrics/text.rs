//! Writing the Prometheus text format by hand: label escaping, fixed strings, numbers and lines.

/// Request latencies: 10 ms to 10 s, Prometheus' default buckets without 5 ms (no round trip to a
/// remote API is that short). Anything slower than the default 10 s timeout (possible with a
/// longer `timeout`) lands in `+Inf`: quantiles then read 10 s, which alerts already treat as slow.
/// Each bucket is a series per org and ~60 bytes per org in every scrape, so there are no more.
pub const LATENCY_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Escapes a label value as the text format requires (`\`, `"` and newline).
pub fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// A fixed string of at most 32 bytes, padded so that appending it is one fixed-size copy, which
/// the compiler inlines, instead of a call to `memcpy`: a 10,000-org scrape appends over a million
/// of these.
pub struct Short {
    padded: [u8; 32],
    len: usize,
}

impl Short {
    pub const fn new(text: &str) -> Short {
        let bytes = text.as_bytes();
        assert!(bytes.len() <= 32, "a Short holds at most 32 bytes");
        let mut padded = [0u8; 32];
        let mut i = 0;
        while i < bytes.len() {
            padded[i] = bytes[i];
            i += 1;
        }
        Short {
            padded,
            len: bytes.len(),
        }
    }
}

/// Appends `text`: all 32 bytes, then the padding cut off again.
pub fn push_short(out: &mut Vec<u8>, text: &Short) {
    let len = out.len();
    out.extend_from_slice(&text.padded);
    out.truncate(len + text.len);
}

/// Appends an integer without going through `fmt` (the hot path of a large scrape); like
/// [`push_short`], as one fixed-size copy.
pub fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let count = value.checked_ilog10().unwrap_or(0) as usize + 1;
    for digit in digits[..count].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    let len = out.len();
    out.extend_from_slice(&digits);
    out.truncate(len + count);
}

/// Appends one sample line: `start`, `labels`, `end`, the value, a newline. `start` is the metric
/// name with `{`, `end` any fixed labels after `labels` with `} `: both are joined at compile time,
/// because a large scrape is mostly these copies, and fewer of them is faster.
pub fn push_line_u64(out: &mut Vec<u8>, start: &str, labels: &str, end: &Short, value: u64) {
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(labels.as_bytes());
    push_short(out, end);
    push_u64(out, value);
    out.push(b'\n');
}

/// [`push_line_u64`] for a fixed-point value: `units` in 10^-`DECIMALS` (see [`push_fixed`]).
pub fn push_line_fixed<const DECIMALS: u32>(
    out: &mut Vec<u8>,
    start: &str,
    labels: &str,
    end: &Short,
    units: i64,
) {
    out.extend_from_slice(start.as_bytes());
    out.extend_from_slice(labels.as_bytes());
    push_short(out, end);
    push_fixed::<DECIMALS>(out, units);
    out.push(b'\n');
}

/// Appends `units / 10^DECIMALS` in decimal, with no trailing zeros after the point: `2`, `1.5`,
/// `0.001`, `-0.25`. Exact, unlike printing the float it stands for.
pub fn push_fixed<const DECIMALS: u32>(out: &mut Vec<u8>, units: i64) {
    let scale = 10u64.pow(DECIMALS);
    if units < 0 {
        out.push(b'-');
    }
    let units = units.unsigned_abs();
    push_u64(out, units / scale);
    let mut fraction = units % scale;
    if fraction == 0 {
        return;
    }
    // The fraction with its leading zeros: scale + fraction has them after a leading 1.
    let mut digits = DECIMALS as usize;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let mut padded = [0u8; 20];
    let mut value = scale / 10u64.pow(DECIMALS - digits as u32) + fraction;
    for digit in padded[..=digits].iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    padded[0] = b'.';
    let len = out.len();
    out.extend_from_slice(&padded);
    out.truncate(len + digits + 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label_value(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label_value("line\nbreak"), "line\\nbreak");
        assert_eq!(escape_label_value("plain-org_1.x"), "plain-org_1.x");
    }

    #[test]
    fn fixed_point_values_are_written_exactly_without_trailing_zeros() {
        let mut out = Vec::new();
        for thousandths in [
            0,
            1000,
            1500,
            1,
            10,
            -250,
            200_000,
            1_795_839_551_412,
            1_795_839_551_000,
            1_795_839_551_020,
            i64::MAX,
            i64::MIN + 1,
        ] {
            push_fixed::<3>(&mut out, thousandths);
            out.push(b' ');
        }
        for micros in [-1, 60_303_000, 208_770, 1_000_001, 999_999, 100_000] {
            push_fixed::<6>(&mut out, micros);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 1 1.5 0.001 0.01 -0.25 200 1795839551.412 1795839551 1795839551.02 \
             9223372036854775.807 -9223372036854775.807 \
             -0.000001 60.303 0.20877 1.000001 0.999999 0.1 "
        );
    }

    #[test]
    fn short_strings_are_appended_without_their_padding() {
        let mut out = b"x".to_vec();
        for text in [
            "",
            "} ",
            ",le=\"0.005\"} ",
            "0123456789abcdefghijklmnopqrstuv",
        ] {
            push_short(&mut out, &Short::new(text));
            out.push(b'|');
        }
        assert_eq!(
            out,
            b"x|} |,le=\"0.005\"} |0123456789abcdefghijklmnopqrstuv|"
        );
    }

    #[test]
    fn integers_are_written_in_decimal() {
        let mut out = Vec::new();
        for value in [0, 7, 9, 10, 99, 100, 1234567890, u64::MAX] {
            push_u64(&mut out, value);
            out.push(b' ');
        }
        assert_eq!(out, b"0 7 9 10 99 100 1234567890 18446744073709551615 ");
    }
}
