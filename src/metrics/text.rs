//! Writing the Prometheus text format by hand: label escaping, numbers, and one family at a time.

use std::fmt::Write;

/// Request latencies: 5 ms to 30 s (the longest sensible timeout).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

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

/// Appends an integer without going through `fmt` (the hot path of a large scrape).
pub fn push_u64(out: &mut String, mut value: u64) {
    if value < 10 {
        // Most bucket counts and gauges: one byte, no copy.
        out.push(char::from(b'0' + value as u8));
        return;
    }
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    // ASCII digits are valid UTF-8.
    out.push_str(std::str::from_utf8(&digits[start..]).unwrap_or("0"));
}

/// Appends one sample line: `start`, `labels`, `end`, the value, a newline. `start` is the metric
/// name with `{`, `end` any fixed labels after `labels` with `} `: both are joined at compile time,
/// because a large scrape is mostly these copies, and fewer of them is faster.
pub fn push_line_u64(out: &mut String, start: &str, labels: &str, end: &str, value: u64) {
    out.push_str(start);
    out.push_str(labels);
    out.push_str(end);
    push_u64(out, value);
    out.push('\n');
}

/// [`push_line_u64`] for a fixed-point value: `units` in 10^-`decimals`, signed.
pub fn push_line_fixed(
    out: &mut String,
    start: &str,
    labels: &str,
    end: &str,
    units: impl Into<i128>,
    decimals: u32,
) {
    out.push_str(start);
    out.push_str(labels);
    out.push_str(end);
    push_fixed(out, units.into(), decimals);
    out.push('\n');
}

/// Appends `units / 10^decimals` in decimal, with no trailing zeros after the point: `2`, `1.5`,
/// `0.001`, `-0.25`. Exact, unlike printing the float it stands for.
pub fn push_fixed(out: &mut String, units: i128, decimals: u32) {
    if units < 0 {
        out.push('-');
    }
    let units = units.unsigned_abs();
    let scale = 10u128.pow(decimals);
    push_u64(out, u64::try_from(units / scale).unwrap_or(u64::MAX));
    let mut fraction = (units % scale) as u64;
    if fraction == 0 {
        return;
    }
    let mut digits = decimals;
    while fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    out.push('.');
    let mut shown = 1;
    let mut rest = fraction / 10;
    while rest > 0 {
        shown += 1;
        rest /= 10;
    }
    for _ in shown..digits {
        out.push('0');
    }
    push_u64(out, fraction);
}

/// Collects the text format, optionally handing it on in chunks so that a 20 MB scrape never sits
/// in memory whole. A family with no samples is left out.
pub struct TextSink<'f> {
    pub buf: String,
    chunk: usize,
    flush: Option<&'f mut dyn FnMut(String) -> bool>,
    family_start: usize,
    family_has_samples: bool,
    /// The receiver went away (client disconnected): stop producing.
    pub closed: bool,
}

impl<'f> TextSink<'f> {
    /// Everything in one string.
    pub fn collect() -> Self {
        TextSink {
            buf: String::new(),
            chunk: usize::MAX,
            flush: None,
            family_start: 0,
            family_has_samples: false,
            closed: false,
        }
    }

    /// Hands on chunks of about `chunk` bytes; `flush` returns false when nobody listens any more.
    pub fn streaming(chunk: usize, flush: &'f mut dyn FnMut(String) -> bool) -> Self {
        TextSink {
            buf: String::with_capacity(chunk + 4096),
            chunk,
            flush: Some(flush),
            family_start: 0,
            family_has_samples: false,
            closed: false,
        }
    }

    /// Writes `# HELP` and `# TYPE`, then lets `samples` write; a family without samples is left
    /// out. `samples` calls [`TextSink::written`] after each org's lines.
    pub fn family(&mut self, name: &str, help: &str, kind: &str, samples: impl FnOnce(&mut Self)) {
        self.family_start = self.buf.len();
        self.family_has_samples = false;
        let _ = writeln!(self.buf, "# HELP {name} {help}\n# TYPE {name} {kind}");
        let header_end = self.buf.len();
        samples(self);
        if !self.family_has_samples && self.buf.len() == header_end {
            self.buf.truncate(self.family_start);
        }
    }

    /// Marks what was written since `before` (a `buf.len()`) and flushes a full chunk. Flushing
    /// only after a sample keeps an empty family's header removable.
    pub fn written(&mut self, before: usize) {
        if self.buf.len() > before {
            self.family_has_samples = true;
        }
        if self.family_has_samples && self.buf.len() >= self.chunk {
            self.flush_now();
        }
    }

    fn flush_now(&mut self) {
        if let Some(flush) = self.flush.as_mut() {
            let full = std::mem::replace(&mut self.buf, String::with_capacity(self.chunk + 4096));
            if !flush(full) {
                self.closed = true;
            }
            self.family_start = 0;
        }
    }

    /// The remaining text (all of it when collecting), flushed when streaming.
    pub fn finish(mut self) -> String {
        if self.flush.is_some() {
            if !self.buf.is_empty() {
                self.flush_now();
            }
            String::new()
        } else {
            std::mem::take(&mut self.buf)
        }
    }
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
        let mut out = String::new();
        for (units, decimals) in [
            (0, 3),
            (1000, 3),
            (1500, 3),
            (1, 3),
            (10, 3),
            (-250, 3),
            (-1, 6),
            (200_000, 3),
            (1_795_839_551_412, 3),
            (1_795_839_551_000, 3),
            (60_303_000, 6),
            (208_770, 6),
            (1_000_001, 6),
            (i128::from(u64::MAX) * 1000, 3),
        ] {
            push_fixed(&mut out, units, decimals);
            out.push(' ');
        }
        assert_eq!(
            out,
            "0 1 1.5 0.001 0.01 -0.25 -0.000001 200 1795839551.412 1795839551 60.303 0.20877 \
             1.000001 18446744073709551615 "
        );
    }

    #[test]
    fn integers_are_written_in_decimal() {
        let mut out = String::new();
        for value in [0, 7, 10, 1234567890, u64::MAX] {
            push_u64(&mut out, value);
            out.push(' ');
        }
        assert_eq!(out, "0 7 10 1234567890 18446744073709551615 ");
    }

    #[test]
    fn an_empty_family_is_left_out() {
        let mut sink = TextSink::collect();
        sink.buf.push_str("before\n");
        sink.family("x", "help", "gauge", |_| {});
        assert_eq!(sink.buf, "before\n");
        sink.family("y", "help", "gauge", |sink| {
            let before = sink.buf.len();
            sink.buf.push_str("y 1\n");
            sink.written(before);
        });
        assert_eq!(
            sink.finish(),
            "before\n# HELP y help\n# TYPE y gauge\ny 1\n"
        );
    }

    #[test]
    fn streaming_hands_on_chunks_that_join_to_the_whole() {
        let mut chunks = Vec::new();
        let mut flush = |chunk: String| {
            chunks.push(chunk);
            true
        };
        let mut sink = TextSink::streaming(16, &mut flush);
        for family in ["a", "b"] {
            sink.family(family, "h", "gauge", |sink| {
                for i in 0..5 {
                    let before = sink.buf.len();
                    sink.buf.push_str(&format!("{family}{{i=\"{i}\"}} 1\n"));
                    sink.written(before);
                }
            });
            sink.family("empty", "h", "gauge", |sink| {
                let before = sink.buf.len();
                sink.written(before);
            });
        }
        assert_eq!(sink.finish(), "");
        let joined = chunks.concat();
        assert!(chunks.len() > 2);
        assert!(!joined.contains("empty"));
        assert_eq!(joined.matches("# TYPE a gauge").count(), 1);
        assert_eq!(joined.lines().count(), 14);
    }
}
