//! The unknown-key walk (`schema.rs`) against the real `SCHEMA` and serde structs (`raw.rs`):
//! here, beside both, so that neither module's tests import the other (`raw` builds on `schema`).

use toml::{Table, Value};

use super::super::raw::{RawExporter, RawFile, RawOrg, RawSettings, RawWeb, SCHEMA};
use super::super::report::Problems;
use super::super::schema::{check, keys, Field, Kind};

fn walk(text: &str) -> (Table, Vec<String>) {
    let mut table: Table = text.parse().expect("valid TOML");
    let mut problems = Problems::new("t.toml");
    check(&mut table, &SCHEMA, &mut problems);
    (table, problems.into_vec())
}

/// Builds a document holding every key of the schema, so serde and the walk are checked
/// to agree on the full key set.
fn full_document(fields: &'static [Field]) -> Table {
    let mut table = Table::new();
    for field in keys(fields) {
        let value = match field.kind {
            Kind::Str => Value::String("x".into()),
            Kind::StrMap => Value::Table(Table::new()),
            Kind::Table(inner) => Value::Table(full_document(inner)),
            Kind::TableArray(inner) => Value::Array(vec![Value::Table(full_document(inner))]),
            Kind::Flatten(_) => unreachable!("keys() expands flattened groups"),
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

/// The names serde lists in its "unknown field" error for a `deny_unknown_fields` struct: every
/// key the struct takes (serde's own list, so it cannot be out of date).
fn serde_keys<T: serde::de::DeserializeOwned>() -> Vec<String> {
    let mut probe = Table::new();
    probe.insert("\u{1}not a key".into(), Value::String("x".into()));
    let Err(error) = probe.try_into::<T>() else {
        panic!("a struct with deny_unknown_fields accepted an unknown key");
    };
    let message = error.message().to_owned();
    let (_, expected) = message
        .split_once("expected")
        .unwrap_or_else(|| panic!("no key list in {message:?}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

fn schema_keys(fields: &'static [Field]) -> Vec<String> {
    let mut names: Vec<String> = keys(fields).iter().map(|f| f.name.to_owned()).collect();
    names.sort();
    names
}

fn table(fields: &'static [Field], name: &str) -> &'static [Field] {
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
fn every_key_serde_takes_is_in_the_schema() {
    // The other direction is `schema_and_serde_structs_know_the_same_keys`. `[[org]]` is not
    // listed: serde's error for a struct with a flattened part names no keys; its own keys are
    // few, and its overridable ones are declared once for both (`overridable_keys!`).
    let exporter = table(&SCHEMA, "exporter");
    let cases: [(&str, Vec<String>, &'static [Field]); 4] = [
        ("(file)", serde_keys::<RawFile>(), &SCHEMA),
        ("exporter", serde_keys::<RawExporter>(), exporter),
        (
            "exporter.web",
            serde_keys::<RawWeb>(),
            table(exporter, "web"),
        ),
        (
            "defaults",
            serde_keys::<RawSettings>(),
            table(&SCHEMA, "defaults"),
        ),
    ];
    for (name, mut serde, schema) in cases {
        serde.sort();
        assert_eq!(serde, schema_keys(schema), "{name}");
    }
}

#[test]
fn serde_still_rejects_unknown_org_keys_next_to_the_flattened_settings() {
    let org: Table = "name = \"a\"\ninterval = \"5s\"\n".parse().expect("TOML");
    let raw: RawOrg = org.try_into().expect("own and overridable keys");
    assert_eq!(raw.name.as_deref(), Some("a"));
    assert_eq!(raw.settings.interval.as_deref(), Some("5s"));
    let org: Table = "name = \"a\"\nbogus = \"x\"\n".parse().expect("TOML");
    let error = org.try_into::<RawOrg>().err().expect("unknown key");
    assert!(error.message().contains("bogus"), "{error}");
}
