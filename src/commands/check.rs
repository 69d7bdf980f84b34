//! `check`: validates a config file and that every secret it names is readable, printing one
//! line per problem (or `ok` with the org count). It starts nothing.

use std::path::Path;

use crate::config;

/// `check`: prints every problem, one line each. Returns whether the config is valid.
///
/// Synchronous (there is no runtime): it cannot hang anyway, since every file is opened
/// without blocking, must be a regular file and is read up to a cap (`config::file`).
pub fn check(path: &Path) -> bool {
    match config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                println!("warning: {warning}");
            }
            println!(
                "{}: ok ({})",
                path.display(),
                count(config.orgs.len(), "org")
            );
            true
        }
        Err(error) => {
            for problem in error.lines() {
                println!("{problem}");
            }
            false
        }
    }
}

/// `n` and `noun`, pluralised with an `s` ("1 org", "2 orgs").
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_counts_are_singular_or_plural() {
        assert_eq!(count(0, "org"), "0 orgs");
        assert_eq!(count(1, "org"), "1 org");
        assert_eq!(count(2, "org"), "2 orgs");
    }
}
