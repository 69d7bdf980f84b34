//! The unknown-key and value-type walk over the parsed TOML, run before serde sees it.
//!
//! serde's `deny_unknown_fields` stops at the first stranger; this walk reports every unknown
//! or mistyped key with its full path and removes it, so the rest of the file can still be
//! deserialised and validated in the same run. It knows shapes only, not meanings.

use toml::{Table, Value};

use super::report::{join, org_label, Problems};

/// One key the file may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub kind: Kind,
}

/// The shape of a key's value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A string.
    Str,
    /// An inline table of strings (`labels`, `basic_auth_users`).
    StrMap,
    /// A table with the given keys.
    Table(&'static [Field]),
    /// An array of tables (`[[org]]`), each with the given keys.
    TableArray(&'static [Field]),
    /// Not a key: the given keys are accepted in this table too (serde's `flatten`; the
    /// overridable settings in `[[org]]`). The field's name is only a label.
    Flatten(&'static [Field]),
}

/// The keys a table accepts, with [`Kind::Flatten`] groups expanded in place.
pub(crate) fn keys(fields: &'static [Field]) -> Vec<&'static Field> {
    let mut keys = Vec::new();
    for field in fields {
        match field.kind {
            Kind::Flatten(inner) => keys.extend(self::keys(inner)),
            _ => keys.push(field),
        }
    }
    keys
}

/// Reports every unknown or mistyped key in `table` (the whole file) and removes it.
pub(crate) fn check(table: &mut Table, fields: &'static [Field], problems: &mut Problems) {
    check_table(table, fields, "", problems);
}

fn check_table(table: &mut Table, fields: &'static [Field], parent: &str, problems: &mut Problems) {
    let fields = keys(fields);
    let names: Vec<String> = table.keys().cloned().collect();
    for key in names {
        let path = join(parent, &key);
        let Some(field) = fields.iter().copied().find(|f| f.name == key) else {
            problems.at(&path, unknown_key_message(&key, &fields));
            table.remove(&key);
            continue;
        };
        let keep = match table.get_mut(&key) {
            Some(value) => check_value(value, field, &path, problems),
            None => true,
        };
        if !keep {
            table.remove(&key);
        }
    }
}

/// Checks one value against its field; `false` means the value is unusable and must go.
fn check_value(value: &mut Value, field: &Field, path: &str, problems: &mut Problems) -> bool {
    match (field.kind, value) {
        (Kind::Str, Value::String(_)) => true,
        (Kind::StrMap, Value::Table(map)) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if let Some(v) = map.get(&key).filter(|v| !v.is_str()) {
                    problems.at(
                        &join(path, &key),
                        format!("expected a string, found {}", v.type_str()),
                    );
                    map.remove(&key);
                }
            }
            true
        }
        (Kind::Table(fields), Value::Table(table)) => {
            check_table(table, fields, path, problems);
            true
        }
        (Kind::TableArray(fields), Value::Array(items)) if items.iter().all(Value::is_table) => {
            for (index, item) in items.iter_mut().enumerate() {
                if let Value::Table(table) = item {
                    let name = table.get("name").and_then(Value::as_str);
                    let label = org_label(index, name);
                    check_table(table, fields, &label, problems);
                }
            }
            true
        }
        (Kind::TableArray(_), other) => {
            let hint = if other.is_table() {
                format!("; write [[{0}]] instead of [{0}]", field.name)
            } else {
                String::new()
            };
            problems.at(
                path,
                format!(
                    "expected an array of tables ([[{}]]), found {}{hint}",
                    field.name,
                    other.type_str()
                ),
            );
            false
        }
        (kind, other) => {
            let expected = match kind {
                Kind::Str => "a string",
                Kind::StrMap => "a table of strings",
                // `keys` expands a Flatten group before its fields are matched to values.
                Kind::Table(_) | Kind::TableArray(_) | Kind::Flatten(_) => "a table",
            };
            problems.at(
                path,
                format!("expected {expected}, found {}", other.type_str()),
            );
            false
        }
    }
}

fn unknown_key_message(key: &str, fields: &[&Field]) -> String {
    let closest = fields
        .iter()
        .map(|f| (edit_distance(key, f.name), f.name))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d);
    match closest {
        Some((_, name)) => format!("unknown key (did you mean `{name}`?)"),
        None => {
            let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
            format!("unknown key (known keys here: {})", names.join(", "))
        }
    }
}

/// Levenshtein distance; keys are short, so the quadratic table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("nmae", "name"), 2);
        assert_eq!(edit_distance("interval", "interval"), 0);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
