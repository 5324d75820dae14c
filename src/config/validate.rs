//! Validation: raw sections → the typed [`Config`], collecting every problem as a
//! (key path, message) pair instead of stopping at the first.
//!
//! This is where files named in the config (certificates, CA bundles, secret files) are read;
//! nothing here prints a secret's value.

mod amo;
mod backoff;
mod bearer;
mod jwt;
mod listeners;
mod redis;
mod refresh;
mod routes;
mod upstreams;

use std::path::Path;
use std::time::Duration;

use super::Problems;
use super::document::RawDocument;
use super::model::{
    AdminConfig, AuthPolicy, Config, IpNet, Limits, LogSettings, ReloadSettings, ServerSettings,
};
use super::net::parse_listen_addr;
use super::raw::{DurationValue, RawAdmin, RawLimits, RawReload, RawServer, SizeValue};
use super::secret::EnvLookup;

/// What validation needs from the outside world.
pub struct Context<'a> {
    pub source: &'a Path,
    /// Directory relative file paths are resolved against.
    pub base_dir: &'a Path,
    pub env: EnvLookup<'a>,
}

/// hyper refuses a smaller HTTP/1 read buffer.
const MIN_HEADER_BYTES: u64 = 8 * 1024;

pub fn validate(raw: RawDocument, ctx: &Context<'_>, p: &mut Problems) -> Option<Config> {
    let upstream_names = raw.upstream_names();
    let server = server(raw.server, p);
    let limits = limits(raw.limits, p);
    if raw.listeners.is_empty() {
        p.at("listeners", "at least one [[listeners]] is required");
    }
    let listeners = listeners::validate(&raw.listeners, ctx, p);
    let admin = raw.admin.and_then(|a| admin(a, ctx, p));
    let reload = reload(&raw.reload, p);
    if let Some(admin) = &admin {
        let clash = listeners.iter().flatten().any(|l| l.addr == admin.addr);
        if clash && admin.addr.port() != 0 {
            p.at(
                "admin.addr",
                format!("{} is also a listener's address", admin.addr),
            );
        }
    }
    let upstreams = upstreams::validate(&raw.upstreams, ctx, p);
    let resolver = upstreams::resolver(&raw.resolver, p);
    let listener_names: Vec<Option<String>> = raw
        .listeners
        .iter()
        .map(|l| l.as_ref().and_then(|l| l.name.clone()))
        .collect();
    let amo_credentials = amo::credentials(&raw.amo_credentials, &listener_names, ctx, p);
    let amo_issuers = amo::issuers(&raw.amo_issuers, ctx, p);
    let amo_verify = amo::verify_settings(&raw.amo_verify, p);
    let backoff = backoff::settings(&raw.backoff, p);
    let auth_names = routes::AuthNames {
        credentials: raw
            .amo_credentials
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.name.clone()))
            .collect(),
        issuers: raw
            .amo_issuers
            .iter()
            .map(|c| c.as_ref().and_then(|c| c.api_key.clone()))
            .collect(),
    };
    let routes = routes::validate(&raw.routes, &upstream_names, &auth_names, p);
    let needs_bearer = routes
        .iter()
        .flatten()
        .any(|r| matches!(r.auth, AuthPolicy::Bearer(_)));
    let bearer = bearer::settings(raw.bearer.as_ref(), &upstream_names, needs_bearer, p);
    let needs_refresh = routes.iter().flatten().any(|r| r.refresh.is_some());
    let refresh = refresh::settings(
        raw.refresh.as_ref(),
        raw.bearer
            .as_ref()
            .and_then(|b| b.oauth_upstream.as_deref()),
        &upstream_names,
        needs_refresh,
        ctx,
        p,
    );
    let jwt = jwt::settings(
        &raw.jwt,
        raw.bearer
            .as_ref()
            .and_then(|b| b.oauth_upstream.as_deref()),
        &upstream_names,
        p,
    );
    let needs_events = routes
        .iter()
        .flatten()
        .any(|r| matches!(r.auth, AuthPolicy::SecurityEvents));
    let security_events = jwt::security_events(
        raw.security_events.as_ref(),
        needs_events,
        jwt.oauth_upstream,
        p,
    );
    let redis = raw.redis.as_ref().and_then(|r| redis::settings(r, ctx, p));
    let trusted_proxies: Vec<IpNet> = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            s.parse()
                .map_err(|e| p.at(format!("trusted_proxies[{i}]"), e))
                .ok()
        })
        .collect();
    if !p.is_empty() {
        return None;
    }
    Some(Config {
        source: ctx.source.to_path_buf(),
        server,
        listeners: listeners.into_iter().flatten().collect(),
        admin,
        upstreams: upstreams.into_iter().flatten().collect(),
        resolver,
        routes: routes.into_iter().flatten().collect(),
        limits,
        trusted_proxies,
        amo_credentials: amo_credentials.into_iter().flatten().collect(),
        amo_issuers: amo_issuers.into_iter().flatten().collect(),
        amo_verify,
        backoff,
        bearer,
        refresh,
        reload,
        jwt,
        security_events,
        redis,
    })
}

fn admin(raw: RawAdmin, ctx: &Context<'_>, p: &mut Problems) -> Option<AdminConfig> {
    // Read whatever the address: a bad token file is reported in the same run.
    let reload_token = raw.reload_token.and_then(|t| {
        t.resolve_with(ctx.base_dir, ctx.env)
            .and_then(|s| {
                let token68 = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(b);
                match s.expose() {
                    t if t.len() < 16 => Err("a reload token must be at least 16 bytes long"),
                    t if !t.iter().all(token68) => {
                        Err("a reload token may only hold A-Z a-z 0-9 - . _ ~ + / = \
                         (e.g. `openssl rand -hex 32`)")
                    }
                    _ => Ok(s),
                }
                .map_err(str::to_owned)
            })
            .map_err(|e| p.at("admin.reload_token", e))
            .ok()
    });
    match parse_listen_addr(&raw.addr?) {
        Ok(addr) => Some(AdminConfig { addr, reload_token }),
        Err(e) => {
            p.at("admin.addr", e);
            None
        }
    }
}

/// The watcher looks often enough that a change is applied within a minute, and not so
/// often that it reads the files all the time.
const WATCH_INTERVAL: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(30);

fn reload(raw: &RawReload, p: &mut Problems) -> ReloadSettings {
    if !WATCH_INTERVAL.contains(&raw.watch_interval.0) {
        p.at(
            "reload.watch_interval",
            r#"must be between "100ms" and "30s" (a change is to be applied within a minute)"#,
        );
    }
    ReloadSettings {
        watch: raw.watch,
        watch_interval: raw.watch_interval.0,
    }
}

fn server(raw: RawServer, p: &mut Problems) -> ServerSettings {
    let worker_threads = raw.worker_threads.and_then(|n| match usize::try_from(n) {
        Ok(n) if (1..=1024).contains(&n) => Some(n),
        _ => {
            p.at(
                "server.worker_threads",
                "must be between 1 and 1024 (omit it for one per core)",
            );
            None
        }
    });
    let level = raw.log.level.trim().to_owned();
    if level.is_empty() {
        p.at("server.log.level", r#"must not be empty (e.g. "info")"#);
    } else if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        p.at(
            "server.log.level",
            format!("invalid log filter {level:?}: {e}"),
        );
    }
    ServerSettings {
        worker_threads,
        // Zero is meaningful: exit without waiting for in-flight requests.
        drain_timeout: raw.drain_timeout.0,
        log: LogSettings {
            format: raw.log.format.into(),
            level,
            access_log: raw.log.access_log,
        },
    }
}

/// `[limits] max_connections_per_peer` when unset (never above `max_connections`).
const DEFAULT_MAX_CONNECTIONS_PER_PEER: u64 = 1_000;

fn limits(raw: RawLimits, p: &mut Problems) -> Limits {
    let k = |key: &str| format!("limits.{key}");
    if raw.max_header_bytes.0 != 0 && raw.max_header_bytes.0 < MIN_HEADER_BYTES {
        p.at(
            k("max_header_bytes"),
            r#"must be at least "8KiB" (hyper's minimum)"#,
        );
    }
    let max_connections = count(raw.max_connections, u64::MAX, &k("max_connections"), p) as usize;
    Limits {
        max_header_bytes: size_usize(raw.max_header_bytes, &k("max_header_bytes"), p),
        max_headers: count(raw.max_headers, u64::MAX, &k("max_headers"), p) as usize,
        max_body_bytes: nonzero_size(raw.max_body_bytes, &k("max_body_bytes"), p),
        header_read_timeout: nonzero(raw.header_read_timeout, &k("header_read_timeout"), p),
        body_read_timeout: nonzero(raw.body_read_timeout, &k("body_read_timeout"), p),
        send_timeout: nonzero(raw.send_timeout, &k("send_timeout"), p),
        max_unsent_bytes: {
            let (key, n) = (k("max_unsent_bytes"), raw.max_unsent_bytes.0);
            if !(MIN_UNSENT_BYTES..=MAX_UNSENT_BYTES).contains(&n) {
                p.at(key, r#"must be from "4KiB" to "64MiB""#);
            }
            n.clamp(MIN_UNSENT_BYTES, MAX_UNSENT_BYTES) as u32
        },
        idle_timeout: nonzero(raw.idle_timeout, &k("idle_timeout"), p),
        tls_handshake_timeout: nonzero(raw.tls_handshake_timeout, &k("tls_handshake_timeout"), p),
        max_connections,
        max_connections_per_peer: match raw.max_connections_per_peer {
            None => DEFAULT_MAX_CONNECTIONS_PER_PEER.min(max_connections as u64) as usize,
            Some(n) if n > max_connections as u64 => {
                p.at(
                    k("max_connections_per_peer"),
                    format!("must not be above limits.max_connections ({max_connections})"),
                );
                max_connections
            }
            Some(n) => count(n, u64::MAX, &k("max_connections_per_peer"), p) as usize,
        },
        h2_max_concurrent_streams: count(
            raw.h2_max_concurrent_streams,
            u32::MAX.into(),
            &k("h2_max_concurrent_streams"),
            p,
        ) as u32,
        h2_max_header_list_size: {
            let key = k("h2_max_header_list_size");
            count(
                nonzero_size(raw.h2_max_header_list_size, &key, p),
                u32::MAX.into(),
                &key,
                p,
            ) as u32
        },
        max_error_body_bytes: size_usize(raw.max_error_body_bytes, &k("max_error_body_bytes"), p),
    }
}

/// Bounds of `limits.max_unsent_bytes`: below a few KiB every write of a response would wait
/// for the client; above tens of MiB the limit no longer bounds anything the kernel allows.
const MIN_UNSENT_BYTES: u64 = 4 * 1024;
const MAX_UNSENT_BYTES: u64 = 64 * 1024 * 1024;

/// A duration that must not be zero.
pub(super) fn nonzero(v: DurationValue, key: &str, p: &mut Problems) -> Duration {
    if v.0.is_zero() {
        p.at(key, "must be greater than zero");
    }
    v.0
}

fn nonzero_size(v: SizeValue, key: &str, p: &mut Problems) -> u64 {
    if v.0 == 0 {
        p.at(key, "must be greater than zero");
    }
    v.0
}

fn size_usize(v: SizeValue, key: &str, p: &mut Problems) -> usize {
    match usize::try_from(nonzero_size(v, key, p)) {
        Ok(n) => n,
        Err(_) => {
            p.at(key, "is too large for this platform");
            0
        }
    }
}

/// A count in `1..=max`; out-of-range values are reported and returned clamped (the config is
/// rejected anyway), so callers can cast without surprises.
pub(super) fn count(v: u64, max: u64, key: &str, p: &mut Problems) -> u64 {
    let max = max.min(usize::MAX as u64);
    if v == 0 {
        p.at(key, "must be at least 1");
    } else if v > max {
        p.at(key, format!("must be at most {max}"));
    }
    v.clamp(1, max)
}

/// A name used in logs, metric labels and cross-references: `[A-Za-z0-9_.-]`, 1–64 chars.
/// Names of one kind of element (listeners, upstreams, ...): each valid, none twice.
pub(super) struct UniqueNames<'a> {
    kind: &'static str,
    seen: std::collections::HashSet<&'a str>,
}

impl<'a> UniqueNames<'a> {
    pub(super) fn new(kind: &'static str) -> Self {
        UniqueNames {
            kind,
            seen: std::collections::HashSet::new(),
        }
    }

    /// Checks `name` (at `key`) for shape and for a duplicate.
    pub(super) fn check(&mut self, name: &'a str, key: &str, p: &mut Problems) {
        check_name(name, key, p);
        if !self.seen.insert(name) {
            p.at(key, format!("duplicate {} name {name:?}", self.kind));
        }
    }
}

fn check_name(name: &str, key: &str, p: &mut Problems) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !ok {
        p.at(
            key,
            format!("{name:?} is not a valid name (use 1-64 of A-Z a-z 0-9 _ - .)"),
        );
    }
}

/// A DNS host name as matched against `Host` or SNI: lower-case labels of `[a-z0-9-]`,
/// optionally a leading `*.` when `wildcard` is allowed. Returns the normalised name.
pub(super) fn dns_name(name: &str, wildcard: bool) -> Result<String, String> {
    let lower = name.trim_end_matches('.').to_ascii_lowercase();
    let labels = match lower.strip_prefix("*.") {
        Some(rest) if wildcard => rest,
        _ => lower.as_str(),
    };
    let valid = !labels.is_empty()
        && labels.len() <= 253
        && labels.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(lower)
    } else if name.contains(':') {
        Err(format!("{name:?} must be a host name without a port"))
    } else {
        Err(format!("{name:?} is not a valid host name"))
    }
}
