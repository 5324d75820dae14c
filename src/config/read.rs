//! Reading a TOML table key by key into the raw structs.
//!
//! Every key is deserialized on its own, so a wrong value is reported and the table's other
//! keys (and every other table) are still read and checked: `methods = "GET"` does not hide the
//! same route's unknown upstream. A key that failed reads as absent (`None`) or as its default;
//! the file is refused anyway, because the failure was recorded. Keys nobody asked for are
//! reported as unknown once the table has been read.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::Problems;

/// A raw struct read from one TOML table (a section or an `[[array]]` element).
pub(super) trait FromTable: Sized {
    fn from_table(t: &mut Table<'_, '_>) -> Self;
}

/// One table being read. `None` table: the section is absent and reads as empty (defaults).
pub(super) struct Table<'a, 'i> {
    path: String,
    table: Option<&'a DeTable<'i>>,
    /// The keys asked for so far; the others are unknown.
    known: Vec<&'static str>,
    p: &'a mut Problems,
}

/// Reads `table` (at key path `path`) as a `T`, then reports its unknown keys.
pub(super) fn read<T: FromTable>(path: String, table: Option<&DeTable<'_>>, p: &mut Problems) -> T {
    let mut t = Table {
        path,
        table,
        known: Vec::new(),
        p,
    };
    let value = T::from_table(&mut t);
    t.report_unknown_keys();
    value
}

impl<'a, 'i> Table<'a, 'i> {
    /// The value of `key`; `None` when absent or wrong (reported).
    pub fn get<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        let value = self.value(key)?;
        match serde_path_to_error::deserialize::<_, T>(ValueDeserializer::from(value.clone())) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = join(&self.key(key), &e.path().to_string());
                let err = e.into_inner();
                let offset = err.span().map_or(value.span().start, |s| s.start);
                self.p
                    .at_offset(path, Some(offset), err.message().trim_end());
                None
            }
        }
    }

    /// The value of `key`, or `default` when absent or wrong (reported).
    pub fn or<T: DeserializeOwned>(&mut self, key: &'static str, default: T) -> T {
        self.get(key).unwrap_or(default)
    }

    /// A key that must be present; `None` when missing or wrong (both reported).
    pub fn required<T: DeserializeOwned>(&mut self, key: &'static str) -> Option<T> {
        if self.value(key).is_none() {
            self.p
                .at(self.path.clone(), format!("missing field `{key}`"));
        }
        self.get(key)
    }

    /// An optional sub-table; `None` when absent or not a table (reported).
    pub fn table<T: FromTable>(&mut self, key: &'static str) -> Option<T> {
        let value = self.value(key)?;
        let table = self.expect_table(key, value)?;
        Some(read(self.key(key), Some(table), self.p))
    }

    /// A sub-table whose keys all have defaults: read as empty when absent or not a table.
    pub fn section<T: FromTable>(&mut self, key: &'static str) -> T {
        let table = self.value(key).and_then(|v| self.expect_table(key, v));
        read(self.key(key), table, self.p)
    }

    /// An array of tables (`[[key]]`); an element that is not a table is reported and reads
    /// as `None`, so the indices in key paths stay those of the file.
    pub fn tables<T: FromTable>(&mut self, key: &'static str) -> Vec<Option<T>> {
        self.tables_if_present(key).unwrap_or_default()
    }

    /// [`Table::tables`], `None` when the key is absent.
    pub fn tables_if_present<T: FromTable>(&mut self, key: &'static str) -> Option<Vec<Option<T>>> {
        let value = self.value(key)?;
        let path = self.key(key);
        let DeValue::Array(elements) = value.get_ref() else {
            self.p.at_offset(
                &path,
                Some(value.span().start),
                format!("expected an array of tables, written [[{}]]", header(&path)),
            );
            // Not empty: "at least one is required" would be a second report of this problem.
            return Some(vec![None]);
        };
        let elements = elements
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let path = format!("{path}[{i}]");
                match e.get_ref() {
                    DeValue::Table(t) => Some(read(path, Some(t), self.p)),
                    other => {
                        self.p.at_offset(
                            path,
                            Some(e.span().start),
                            format!("invalid type: {}, expected a table", other.type_str()),
                        );
                        None
                    }
                }
            })
            .collect();
        Some(elements)
    }

    /// Whether `key` is in the table at all.
    pub fn is_present(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.get(key).is_some())
    }

    /// Whether `key` holds a table (for keys that take a string or a table).
    pub fn is_table(&self, key: &str) -> bool {
        self.table
            .and_then(|t| t.get(key))
            .is_some_and(|v| v.get_ref().as_table().is_some())
    }

    fn value(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.table?.get(key)
    }

    fn expect_table(
        &mut self,
        key: &str,
        value: &'a Spanned<DeValue<'i>>,
    ) -> Option<&'a DeTable<'i>> {
        let table = value.get_ref().as_table();
        if table.is_none() {
            let found = value.get_ref().type_str();
            self.p.at_offset(
                self.key(key),
                Some(value.span().start),
                format!("invalid type: {found}, expected a table"),
            );
        }
        table
    }

    fn key(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn report_unknown_keys(&mut self) {
        let Some(table) = self.table else { return };
        for (key, _) in table.iter() {
            let name = key.get_ref().as_ref();
            if self.known.contains(&name) {
                continue;
            }
            let message = unknown_key(name, &self.known);
            self.p
                .at_offset(self.key(name), Some(key.span().start), message);
        }
    }
}

/// serde's wording for an unknown key, with the keys this table takes.
fn unknown_key(name: &str, known: &[&str]) -> String {
    let quoted: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    match quoted.as_slice() {
        [] => format!("unknown field `{name}`, there are no fields"),
        [one] => format!("unknown field `{name}`, expected {one}"),
        _ => format!(
            "unknown field `{name}`, expected one of {}",
            quoted.join(", ")
        ),
    }
}

/// `prefix.rest`, or `prefix[0]` when `rest` is an index path.
fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty() || rest == ".") {
        (_, true) => prefix.to_owned(),
        (true, false) => rest.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

/// The `[[...]]` header of an array at a key path: `listeners[0].tls.certificates` →
/// `listeners.tls.certificates`.
fn header(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => in_index = true,
            ']' => in_index = false,
            c if !in_index => out.push(c),
            _ => {}
        }
    }
    out
}
