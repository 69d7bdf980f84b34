//! The unknown-key walk (`schema.rs`) against the real `SCHEMA` and serde structs (`raw.rs`):
//! here, beside both, so that neither module's tests import the other (`raw` builds on `schema`).

use toml::{Table, Value};

use super::super::raw::{RawFile, SCHEMA};
use super::super::report::Problems;
use super::super::schema::{check, Field, Kind};

fn walk(text: &str) -> (Table, Vec<String>) {
    let mut table: Table = text.parse().expect("valid TOML");
    let mut problems = Problems::new("t.toml");
    check(&mut table, &SCHEMA, &mut problems);
    (table, problems.into_vec())
}

/// Builds a document holding every key of the schema, so serde and the walk are checked
/// to agree on the full key set.
fn full_document(fields: &[Field]) -> Table {
    let mut table = Table::new();
    for field in fields {
        let value = match field.kind {
            Kind::Str => Value::String("x".into()),
            Kind::StrMap => Value::Table(Table::new()),
            Kind::Table(inner) => Value::Table(full_document(inner)),
            Kind::TableArray(inner) => Value::Array(vec![Value::Table(full_document(inner))]),
        };
        table.insert(field.name.to_owned(), value);
    }
    table
}

#[test]
fn schema_and_serde_structs_know_the_same_keys() {
    let table = full_document(&SCHEMA);
    let mut walked = table.clone();
    let mut problems = Problems::new("t.toml");
    check(&mut walked, &SCHEMA, &mut problems);
    assert!(problems.is_empty(), "{:?}", problems.into_vec());
    let raw: RawFile = table.try_into().expect("serde accepts every schema key");
    assert_eq!(raw.org.len(), 1);
}

#[test]
fn every_unknown_key_is_reported_with_its_path_and_removed() {
    let (table, problems) = walk(
        "bogus = 1\n[exporter]\nlistn = \"x\"\n[exporter.web]\nfoo = \"y\"\n\
         [[org]]\nname = \"acme\"\nnmae = \"x\"\n[[org]]\nintervall = \"5s\"\n",
    );
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(problems
        .iter()
        .any(|p| p.contains("t.toml: bogus: unknown key")));
    assert!(problems
        .iter()
        .any(|p| p.contains("exporter.listn: unknown key")));
    assert!(problems
        .iter()
        .any(|p| p.contains("exporter.web.foo: unknown key")));
    assert!(problems
        .iter()
        .any(|p| p.contains("org[0] (\"acme\").nmae: unknown key (did you mean `name`?)")));
    assert!(problems
        .iter()
        .any(|p| p.contains("org[1].intervall: unknown key (did you mean `interval`?)")));
    let raw: RawFile = table.try_into().expect("cleaned table deserialises");
    assert_eq!(raw.org.len(), 2);
}

#[test]
fn wrong_types_are_reported_and_removed() {
    let (table, problems) = walk(
        "[defaults]\ninterval = 5\n[[org]]\nname = \"a\"\nlabels = { team = 1, ok = \"y\" }\n",
    );
    assert!(problems
        .iter()
        .any(|p| p.contains("defaults.interval: expected a string, found integer")));
    assert!(problems
        .iter()
        .any(|p| p.contains("org[0] (\"a\").labels.team: expected a string, found integer")));
    let raw: RawFile = table.try_into().expect("cleaned table deserialises");
    assert!(raw.defaults.is_some_and(|d| d.interval.is_none()));
}

#[test]
fn a_single_org_table_gets_a_hint() {
    let (_, problems) = walk("[org]\nname = \"a\"\n");
    assert!(
        problems[0].contains("org: expected an array of tables") && problems[0].contains("[[org]]"),
        "{problems:?}"
    );
}
