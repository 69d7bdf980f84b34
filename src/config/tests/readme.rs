//! README's configuration reference against the schema: every key the file accepts has a row
//! in its table, and every row names a key the file accepts, so the reference cannot fall
//! behind a new key (or outlive a removed one).

use std::collections::BTreeSet;

use super::super::raw::SCHEMA;
use super::super::schema::{keys, Field, Kind};

/// The first column's key of every row of the table under the heading that starts with
/// `heading`, with the row's text.
fn rows<'a>(readme: &'a str, heading: &str) -> Vec<(&'a str, &'a str)> {
    let mut lines = readme.lines().skip_while(|l| !l.starts_with(heading));
    assert!(lines.next().is_some(), "README has no heading {heading:?}");
    let table = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2); // the header and the `| --- |` line
    let rows: Vec<(&str, &str)> = table
        .map(|row| {
            let key = row.split('`').nth(1).unwrap_or_else(|| panic!("{row}"));
            (key, row)
        })
        .collect();
    assert!(!rows.is_empty(), "no table under {heading:?}");
    rows
}

fn names(fields: &'static [Field]) -> BTreeSet<&'static str> {
    keys(fields)
        .iter()
        .filter(|f| !matches!(f.kind, Kind::Table(_)))
        .map(|f| f.name)
        .collect()
}

fn inner(fields: &'static [Field], name: &str) -> &'static [Field] {
    match keys(fields)
        .into_iter()
        .find(|f| f.name == name)
        .map(|f| f.kind)
    {
        Some(Kind::Table(inner) | Kind::TableArray(inner)) => inner,
        other => panic!("{name}: not a table in the schema: {other:?}"),
    }
}

#[test]
fn readme_documents_every_config_key_and_no_other() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let exporter = inner(&SCHEMA, "exporter");
    let org = inner(&SCHEMA, "org");
    // `[[org]]`'s table lists its own keys; the overridable ones are in `[defaults]`' table.
    let org_own: BTreeSet<&str> = org
        .iter()
        .filter(|f| !matches!(f.kind, Kind::Flatten(_)))
        .map(|f| f.name)
        .collect();
    let tables = [
        ("### `[exporter]`", names(exporter)),
        ("### `[defaults]`", names(inner(&SCHEMA, "defaults"))),
        ("### `[[org]]`", org_own),
    ];
    for (heading, schema) in tables {
        let rows = rows(&readme, heading);
        let documented: BTreeSet<&str> = rows
            .iter()
            .map(|(key, _)| *key)
            .filter(|key| !key.starts_with('['))
            .collect();
        assert_eq!(documented, schema, "README {heading} table vs the schema");
    }

    // `[exporter.web]` has one row naming each of its keys.
    let exporter_rows = rows(&readme, "### `[exporter]`");
    let (_, web_row) = exporter_rows
        .iter()
        .find(|(key, _)| *key == "[exporter.web]")
        .expect("README has an `[exporter.web]` row");
    for key in names(inner(exporter, "web")) {
        assert!(
            web_row.contains(&format!("`{key}`")),
            "README's [exporter.web] row does not name `{key}`"
        );
    }
}
