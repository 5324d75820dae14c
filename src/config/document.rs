//! The spanned TOML document: syntax check, per-section deserialization into the raw structs,
//! and key path → line lookup for messages.
//!
//! Each top-level section and each `[[array]]` element is deserialized separately, so one
//! broken upstream does not hide the problems of the next route.

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::Problems;
use super::raw::{
    RawAdmin, RawAmoCredential, RawAmoIssuer, RawAmoVerify, RawBackoff, RawBearer, RawLimits,
    RawListener, RawRefresh, RawRoute, RawServer, RawUpstream,
};

/// The sections of a file after deserialization; `None` entries failed (and were reported).
#[derive(Debug, Default)]
pub struct RawDocument {
    pub server: Option<RawServer>,
    pub listeners: Vec<Option<RawListener>>,
    pub admin: Option<RawAdmin>,
    pub upstreams: Vec<Option<RawUpstream>>,
    /// The `name` of every `[[upstreams]]` element, read from the document even when the
    /// element itself is broken, so routes naming it are not reported a second time.
    pub upstream_names: Vec<Option<String>>,
    pub routes: Vec<Option<RawRoute>>,
    pub limits: Option<RawLimits>,
    pub trusted_proxies: Vec<String>,
    pub amo_credentials: Vec<Option<RawAmoCredential>>,
    pub amo_issuers: Vec<Option<RawAmoIssuer>>,
    pub amo_verify: Option<RawAmoVerify>,
    pub backoff: Option<RawBackoff>,
    pub bearer: Option<RawBearer>,
    pub refresh: Option<RawRefresh>,
}

const SECTIONS: &str = "server, listeners, admin, upstreams, routes, limits, trusted_proxies, \
                        amo_credentials, amo_issuers, amo_verify, backoff, bearer, refresh";

pub struct Document<'i> {
    table: Spanned<DeTable<'i>>,
}

impl<'i> Document<'i> {
    /// Parses the TOML syntax; a syntax error is reported with its position.
    pub fn parse(src: &'i str, problems: &mut Problems) -> Option<Self> {
        match DeTable::parse(src) {
            Ok(table) => Some(Document { table }),
            Err(e) => {
                let message = format!("TOML syntax error: {}", e.message().trim_end());
                problems.at_offset("", e.span().map(|s| s.start), message);
                None
            }
        }
    }

    pub fn deserialize(&self, p: &mut Problems) -> RawDocument {
        let mut raw = RawDocument::default();
        for (key, value) in self.table.get_ref().iter() {
            let name = key.get_ref().as_ref();
            match name {
                "server" => raw.server = de(value, name, p),
                "admin" => raw.admin = de(value, name, p),
                "limits" => raw.limits = de(value, name, p),
                "trusted_proxies" => {
                    raw.trusted_proxies = de(value, name, p).unwrap_or_default();
                }
                "listeners" => raw.listeners = de_each(value, name, p),
                "routes" => raw.routes = de_each(value, name, p),
                "amo_credentials" => raw.amo_credentials = de_each(value, name, p),
                "amo_issuers" => raw.amo_issuers = de_each(value, name, p),
                "amo_verify" => raw.amo_verify = de(value, name, p),
                "backoff" => raw.backoff = de(value, name, p),
                "bearer" => raw.bearer = de(value, name, p),
                "refresh" => raw.refresh = de(value, name, p),
                "upstreams" => {
                    raw.upstreams = de_each(value, name, p);
                    raw.upstream_names = elements(value)
                        .iter()
                        .map(|e| {
                            let name = e.get_ref().get("name")?;
                            name.get_ref().as_str().map(str::to_owned)
                        })
                        .collect();
                }
                _ => p.at_offset(
                    name,
                    Some(key.span().start),
                    format!("unknown section or key; expected one of {SECTIONS}"),
                ),
            }
        }
        raw
    }

    /// 1-based line of the key at `path` (`routes[2].upstream`), or of its nearest existing
    /// ancestor when the key itself is absent (a missing required key).
    pub fn line_of(&self, path: &str, src: &str) -> Option<usize> {
        let mut offset = None;
        let mut table = Some(self.table.get_ref());
        let mut value: Option<&Spanned<DeValue<'i>>> = None;
        for segment in split_path(path) {
            let next = match segment {
                Segment::Key(k) => table.and_then(|t| t.get_key_value(k)).map(|(key, v)| {
                    offset = Some(key.span().start);
                    v
                }),
                Segment::Index(i) => value.and_then(|v| v.get_ref().get(i)).inspect(|v| {
                    offset = Some(v.span().start);
                }),
            };
            let Some(next) = next else { break };
            value = Some(next);
            table = next.get_ref().as_table();
        }
        offset.map(|o| line_of_offset(src, o))
    }
}

/// 1-based line number of a byte offset.
pub fn line_of_offset(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Deserializes one section or element, reporting every bad key in it: after each failure the
/// offending key is removed from a copy and deserialization is retried, so a type error in
/// one key does not hide an unknown key further down. Returns `None` after any failure.
fn de<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    p: &mut Problems,
) -> Option<T> {
    let mut value = value.clone();
    let mut removed: Vec<String> = Vec::new();
    // Each retry removes one key, so this terminates; the bound is a belt and braces.
    for _ in 0..256 {
        let deserializer = ValueDeserializer::from(value.clone());
        let e = match serde_path_to_error::deserialize::<_, T>(deserializer) {
            Ok(v) if removed.is_empty() => return Some(v),
            Ok(_) => return None,
            Err(e) => e,
        };
        let inner = e.path().to_string();
        let err = e.into_inner();
        let message = err.message().trim_end();
        if let Some(field) = missing_field(message) {
            // A key we removed ourselves is not "missing": its real problem is reported.
            if removed.iter().any(|r| r.rsplit('.').next() == Some(field)) {
                return None;
            }
        }
        p.at_offset(join(path, &inner), err.span().map(|s| s.start), message);
        let removable = removable_key(&inner);
        if removable.is_empty() || !remove_at(&mut value, &removable) {
            return None;
        }
        removed.push(removable);
    }
    None
}

fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split_once('`')
        .map(|(f, _)| f)
}

/// The key to drop after an error at `path`: the path up to its last key (an error inside an
/// array drops the whole array, so later indices do not shift).
fn removable_key(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let end = path.rfind('.').map_or(0, |i| i + 1);
    match path[end..].find('[') {
        Some(bracket) => path[..end + bracket].to_owned(),
        None => path.to_owned(),
    }
}

/// Removes the key at `path` from a (nested) table; false if there was nothing to remove.
fn remove_at(value: &mut Spanned<DeValue<'_>>, path: &str) -> bool {
    let segments = split_path(path);
    let Some((Segment::Key(last), parents)) = segments.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let next = match (segment, current.get_mut()) {
            (Segment::Key(k), DeValue::Table(t)) => t.get_mut(*k),
            (Segment::Index(i), DeValue::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return false };
        current = next;
    }
    match current.get_mut() {
        DeValue::Table(t) => t.remove(*last).is_some(),
        _ => false,
    }
}

fn de_each<T: DeserializeOwned>(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    p: &mut Problems,
) -> Vec<Option<T>> {
    if !matches!(value.get_ref(), DeValue::Array(_)) {
        p.at_offset(
            path,
            Some(value.span().start),
            format!("expected an array of tables, written [[{path}]]"),
        );
        // Not empty: "at least one is required" would be a second report of this problem.
        return vec![None];
    }
    elements(value)
        .iter()
        .enumerate()
        .map(|(i, e)| de(e, &format!("{path}[{i}]"), p))
        .collect()
}

fn elements<'a, 'i>(value: &'a Spanned<DeValue<'i>>) -> &'a [Spanned<DeValue<'i>>] {
    match value.get_ref() {
        DeValue::Array(a) => a,
        _ => &[],
    }
}

fn join(prefix: &str, rest: &str) -> String {
    match (prefix.is_empty(), rest.is_empty() || rest == ".") {
        (_, true) => prefix.to_owned(),
        (true, false) => rest.to_owned(),
        (false, false) if rest.starts_with('[') => format!("{prefix}{rest}"),
        (false, false) => format!("{prefix}.{rest}"),
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `a.b[2].c` → `a`, `b`, `[2]`, `c`.
fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|s| !s.is_empty()) {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key));
        }
        while let Some((index, tail)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Segment::Index(i));
            }
            rest = tail.trim_start_matches('[');
        }
    }
    out
}
