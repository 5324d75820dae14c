//! The spanned TOML document: syntax check, reading it into the raw structs (key by key, see
//! `read`), and key path → line lookup for messages.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Problems;
use super::raw::{
    RawAdmin, RawAmoCredential, RawAmoIssuer, RawAmoVerify, RawBackoff, RawBearer, RawLimits,
    RawListener, RawRedis, RawRefresh, RawReload, RawResolver, RawRoute, RawServer, RawUpstream,
};
use super::raw_jwt::{RawJwt, RawSecurityEvents};
use super::read::{self, FromTable, Table};

/// The sections of a file as read. Sections absent from the file read as their defaults;
/// `None` elements of an array were not tables (reported).
#[derive(Debug)]
pub struct RawDocument {
    pub server: RawServer,
    pub listeners: Vec<Option<RawListener>>,
    pub admin: Option<RawAdmin>,
    pub upstreams: Vec<Option<RawUpstream>>,
    pub resolver: RawResolver,
    pub routes: Vec<Option<RawRoute>>,
    pub limits: RawLimits,
    pub trusted_proxies: Vec<String>,
    pub amo_credentials: Vec<Option<RawAmoCredential>>,
    pub amo_issuers: Vec<Option<RawAmoIssuer>>,
    pub amo_verify: RawAmoVerify,
    pub backoff: RawBackoff,
    pub bearer: Option<RawBearer>,
    pub refresh: Option<RawRefresh>,
    pub reload: RawReload,
    pub jwt: RawJwt,
    pub security_events: Option<RawSecurityEvents>,
    pub redis: Option<RawRedis>,
}

impl FromTable for RawDocument {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawDocument {
            server: t.section("server"),
            listeners: t.tables("listeners"),
            admin: t.table("admin"),
            upstreams: t.tables("upstreams"),
            resolver: t.section("resolver"),
            routes: t.tables("routes"),
            limits: t.section("limits"),
            trusted_proxies: t.or("trusted_proxies", Vec::new()),
            amo_credentials: t.tables("amo_credentials"),
            amo_issuers: t.tables("amo_issuers"),
            amo_verify: t.section("amo_verify"),
            backoff: t.section("backoff"),
            bearer: t.table("bearer"),
            refresh: t.table("refresh"),
            reload: t.section("reload"),
            jwt: t.section("jwt"),
            security_events: t.table("security_events"),
            redis: t.table("redis"),
        }
    }
}

impl RawDocument {
    /// The `name` of every `[[upstreams]]` element; `None` where it could not be read, so
    /// references to it are not reported a second time.
    pub fn upstream_names(&self) -> Vec<Option<String>> {
        self.upstreams
            .iter()
            .map(|u| u.as_ref().and_then(|u| u.name.clone()))
            .collect()
    }
}

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

    /// Reads every section, reporting each problem and carrying on past it.
    pub fn read(&self, p: &mut Problems) -> RawDocument {
        read::read(String::new(), Some(self.table.get_ref()), p)
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
