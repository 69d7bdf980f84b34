//! What `config::load` and `config::parse` return when a file is not usable: a typed
//! [`ConfigError`] (unreadable, not TOML, or invalid keys with every [`Problem`] found), worded
//! one problem per line (`obf.toml: org[1] ("acme").interval: ...`).
//!
//! No variant has an error `source`: each one's text already holds its cause, and a source
//! would print it a second time in an `{:#}` chain.

use std::fmt;

use super::file::FileError;

/// One thing wrong in a config file: a key path (`org[1] ("acme").interval`), or none when it
/// is about the file as a whole, and what is wrong. Never holds a secret: the validation steps
/// decide what is safe to quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Option<String>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{path}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Why a config file was not accepted. Its `Display` is every line of [`ConfigError::lines`],
/// joined by newlines.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, not a regular file, over the size cap).
    #[error("{origin}: {}", .error.describe("config file"))]
    Unreadable { origin: String, error: FileError },
    /// Not TOML. Only the position and the parser's message: the parser's full text quotes the
    /// source line, which may hold an inline secret.
    #[error("{origin}: line {line}, column {column}: TOML syntax error: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// TOML whose keys or values are wrong: every problem found, in the order found.
    #[error("{}", lines(.origin, .problems).join("\n"))]
    Invalid {
        origin: String,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// One line per problem, each starting with the file's name: what `check` prints and what
    /// `run` logs.
    pub fn lines(&self) -> Vec<String> {
        match self {
            Self::Invalid { origin, problems } => lines(origin, problems),
            single => vec![single.to_string()],
        }
    }
}

fn lines(origin: &str, problems: &[Problem]) -> Vec<String> {
    problems.iter().map(|p| format!("{origin}: {p}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_one_line_prefixed_with_the_file() {
        let error = ConfigError::Invalid {
            origin: "obf.toml".into(),
            problems: vec![
                Problem {
                    path: Some("org[0].name".into()),
                    message: "missing".into(),
                },
                Problem {
                    path: None,
                    message: "no [[org]] configured".into(),
                },
            ],
        };
        assert_eq!(
            error.lines(),
            [
                "obf.toml: org[0].name: missing",
                "obf.toml: no [[org]] configured"
            ]
        );
        assert_eq!(error.to_string(), error.lines().join("\n"));
        let syntax = ConfigError::Syntax {
            origin: "obf.toml".into(),
            line: 2,
            column: 5,
            message: "expected `=`".into(),
        };
        assert_eq!(
            syntax.lines(),
            ["obf.toml: line 2, column 5: TOML syntax error: expected `=`"]
        );
    }
}
