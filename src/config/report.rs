//! How config problems are worded: the collector every validation step writes into, and the
//! key-path spelling (`org[1] ("acme").interval`) shared by all of them.
//!
//! Nothing here may format a value it is not given; callers decide what is safe to show
//! (never a secret).

use std::collections::BTreeSet;
use std::fmt::Display;

use super::error::{ConfigError, Problem};
use super::OrgName;

/// Collects every problem found in one file.
pub(crate) struct Problems {
    origin: String,
    list: Vec<Problem>,
    /// Key paths already reported, so a key dropped for having the wrong type is not reported
    /// again as missing.
    reported: BTreeSet<String>,
}

impl Problems {
    pub(crate) fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_owned(),
            list: Vec::new(),
            reported: BTreeSet::new(),
        }
    }

    /// A problem with the key at `path`.
    pub(crate) fn at(&mut self, path: &str, message: impl Display) {
        self.list.push(Problem {
            path: Some(path.to_owned()),
            message: message.to_string(),
        });
        self.reported.insert(path.to_owned());
    }

    /// A problem with the file as a whole.
    pub(crate) fn file(&mut self, message: impl Display) {
        self.list.push(Problem {
            path: None,
            message: message.to_string(),
        });
    }

    /// Whether a problem was already reported at `path` (e.g. a key dropped for its type).
    pub(crate) fn reported(&self, path: &str) -> bool {
        self.reported.contains(path)
    }

    /// Reports `path` as missing unless it was already reported (e.g. for a wrong type).
    pub(crate) fn missing(&mut self, path: &str, message: impl Display) {
        if !self.reported(path) {
            self.at(path, message);
        }
    }

    /// A warning line, worded like a problem.
    pub(crate) fn warning(&self, path: &str, message: impl Display) -> String {
        format!("{}: {}: {}", self.origin, path, message)
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Every problem found, as the error `parse` returns.
    pub(crate) fn into_error(self) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin,
            problems: self.list,
        }
    }

    /// The problems' lines, as `check` prints them.
    #[cfg(test)]
    pub(crate) fn into_vec(self) -> Vec<String> {
        self.into_error().lines()
    }
}

/// `parent.key`, quoting `key` the way TOML would when it is not a bare key.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if parent.is_empty() {
        key
    } else {
        format!("{parent}.{key}")
    }
}

/// `org[N]`, or `org[N] ("name")` when the org has a valid name to help find it.
pub(crate) fn org_label(index: usize, name: Option<&str>) -> String {
    match name.and_then(|n| OrgName::parse(n).ok()) {
        Some(name) => format!("org[{index}] (\"{name}\")"),
        None => format!("org[{index}]"),
    }
}

/// 1-based line and column of a byte offset, for TOML syntax errors.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        assert_eq!(join("org[0].labels", "team"), "org[0].labels.team");
        assert_eq!(join("org[0].labels", "a b"), "org[0].labels.\"a b\"");
        assert_eq!(join("", "exporter"), "exporter");
    }

    #[test]
    fn org_label_mentions_only_valid_names() {
        assert_eq!(org_label(1, Some("acme")), "org[1] (\"acme\")");
        assert_eq!(org_label(1, Some("a b")), "org[1]");
        assert_eq!(org_label(0, None), "org[0]");
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
