//! The `gateway.toml` file as written: serde structs that mirror it section by section.
//!
//! Every struct is read key by key (see `read`) and rejects unknown keys. Durations, sizes and
//! dates are parsed while deserializing (so a bad value is reported at its own key);
//! cross-references, ranges and file contents are checked later by `validate`. Secrets are
//! never accepted inline.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::model::LogFormat;
use super::read::{FromTable, Table};
use super::units::{parse_duration, parse_rfc3339, parse_size};

pub use super::secret::SecretRef;

// Each struct is read key by key (`read::Table`): a required key is `Option` (None when it is
// missing or wrong, both reported), a key with a default takes it in `from_table`, the one place
// defaults live. Adding a key: a field here, one line in its `from_table`, its check in
// `validate`.

fn secs(n: u64) -> DurationValue {
    DurationValue(Duration::from_secs(n))
}
fn kib(n: u64) -> SizeValue {
    SizeValue(n * 1024)
}

#[derive(Debug)]
pub struct RawServer {
    pub worker_threads: Option<u64>,
    pub drain_timeout: DurationValue,
    pub log: RawLog,
}

impl FromTable for RawServer {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawServer {
            worker_threads: t.get("worker_threads"),
            drain_timeout: t.or("drain_timeout", secs(30)),
            log: t.section("log"),
        }
    }
}

#[derive(Debug)]
pub struct RawLog {
    pub format: RawLogFormat,
    pub level: String,
    pub access_log: bool,
}

impl FromTable for RawLog {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawLog {
            format: t.or("format", RawLogFormat::Text),
            level: t.or("level", "info".to_owned()),
            access_log: t.or("access_log", true),
        }
    }
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    Text,
    Json,
}

impl From<RawLogFormat> for LogFormat {
    fn from(f: RawLogFormat) -> Self {
        match f {
            RawLogFormat::Text => LogFormat::Text,
            RawLogFormat::Json => LogFormat::Json,
        }
    }
}

#[derive(Debug)]
pub struct RawListener {
    pub name: Option<String>,
    pub addr: Option<String>,
    pub allow_plain_non_loopback: bool,
    /// Accept `X-FxA-Refresh-Token` from callers (default: only on a loopback address).
    pub accept_refresh_token: Option<bool>,
    /// Pass header names with an underscore other than the gateway's own (default: dropped).
    pub allow_underscore_headers: bool,
    pub tls: Option<RawTls>,
}

impl FromTable for RawListener {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawListener {
            name: t.required("name"),
            addr: t.required("addr"),
            allow_plain_non_loopback: t.or("allow_plain_non_loopback", false),
            accept_refresh_token: t.get("accept_refresh_token"),
            allow_underscore_headers: t.or("allow_underscore_headers", false),
            tls: t.table("tls"),
        }
    }
}

#[derive(Debug)]
pub struct RawTls {
    pub certificates: Vec<Option<RawCertificate>>,
}

impl FromTable for RawTls {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawTls {
            certificates: t.tables("certificates"),
        }
    }
}

#[derive(Debug)]
pub struct RawCertificate {
    pub cert: Option<String>,
    pub key: Option<SecretRef>,
    pub server_names: Vec<String>,
}

impl FromTable for RawCertificate {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawCertificate {
            cert: t.required("cert"),
            key: t.required("key"),
            server_names: t.or("server_names", Vec::new()),
        }
    }
}

#[derive(Debug)]
pub struct RawAdmin {
    pub addr: Option<String>,
    /// Bearer token for `POST /__reload__` from a non-loopback peer (default: loopback only).
    pub reload_token: Option<SecretRef>,
}

impl FromTable for RawAdmin {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawAdmin {
            addr: t.required("addr"),
            reload_token: t.get("reload_token"),
        }
    }
}

/// `[reload]`: picking up changed files without a signal.
#[derive(Debug)]
pub struct RawReload {
    /// Watch the config file and every file it names (default true).
    pub watch: bool,
    /// How often the files are looked at (default 5 s).
    pub watch_interval: DurationValue,
}

impl FromTable for RawReload {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawReload {
            watch: t.or("watch", true),
            watch_interval: t.or("watch_interval", secs(5)),
        }
    }
}

/// `[resolver]`: names pinned to addresses, and whether other names may use the system resolver.
#[derive(Debug)]
pub struct RawResolver {
    pub hosts: std::collections::BTreeMap<String, Vec<String>>,
    pub system: bool,
}

impl FromTable for RawResolver {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawResolver {
            hosts: t.or("hosts", Default::default()),
            system: t.or("system", true),
        }
    }
}

#[derive(Debug)]
pub struct RawUpstream {
    pub name: Option<String>,
    pub url: Option<String>,
    pub ca_file: Option<String>,
    pub ca_only: bool,
    pub connect_timeout: DurationValue,
    pub response_timeout: DurationValue,
    pub max_connections: u64,
    pub pool_idle_timeout: DurationValue,
    pub http2: bool,
    /// Upstream-wide cap on requests from all callers together (503 errno 201 above it).
    pub rate_limit: Option<RawQuota>,
}

impl FromTable for RawUpstream {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawUpstream {
            name: t.required("name"),
            url: t.required("url"),
            ca_file: t.get("ca_file"),
            ca_only: t.or("ca_only", false),
            connect_timeout: t.or("connect_timeout", secs(5)),
            response_timeout: t.or("response_timeout", secs(30)),
            max_connections: t.or("max_connections", 256),
            pool_idle_timeout: t.or("pool_idle_timeout", secs(90)),
            http2: t.or("http2", true),
            rate_limit: t.table("rate_limit"),
        }
    }
}

/// `{ requests = 100, window = "1m" }`, plus the key and header options on routes.
#[derive(Debug)]
pub struct RawQuota {
    pub requests: Option<u64>,
    pub window: Option<DurationValue>,
    /// Routes only: `"peer"` (default), `"identity"`, or `"header:<Name>"`.
    pub key: Option<String>,
    /// Routes only: send `RateLimit-Policy` / `RateLimit` headers (default false).
    pub headers: Option<bool>,
}

impl FromTable for RawQuota {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawQuota {
            requests: t.required("requests"),
            window: t.required("window"),
            key: t.get("key"),
            headers: t.get("headers"),
        }
    }
}

/// `[backoff]`: how upstream back-off windows behave.
#[derive(Debug)]
pub struct RawBackoff {
    pub max_window: DurationValue,
    pub default_503_window: Option<DurationValue>,
    pub honour_backoff_header: bool,
    pub ramp_period: DurationValue,
    pub ramp_steps: u64,
    pub ramp_start_percent: u64,
    pub ramp_base_rate: u64,
    pub max_scoped_windows: u64,
}

impl FromTable for RawBackoff {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawBackoff {
            max_window: t.or("max_window", secs(300)),
            default_503_window: t.get("default_503_window"),
            honour_backoff_header: t.or("honour_backoff_header", false),
            ramp_period: t.or("ramp_period", secs(20)),
            ramp_steps: t.or("ramp_steps", 4),
            ramp_start_percent: t.or("ramp_start_percent", 25),
            ramp_base_rate: t.or("ramp_base_rate", 100),
            max_scoped_windows: t.or("max_scoped_windows", 10_000),
        }
    }
}

#[derive(Debug)]
pub struct RawRoute {
    pub name: Option<String>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub upstream: Option<String>,
    pub strip_prefix: bool,
    pub methods: Option<Vec<String>>,
    pub versions: Vec<String>,
    pub deprecated_versions: Vec<Option<RawDeprecatedVersion>>,
    pub rewrite_errors: bool,
    pub auth: RawAuth,
    /// Per-caller quota on this route.
    pub quota: Option<RawQuota>,
    /// `"auto"` (default: a 429 closes the caller's identity) or `"upstream"` (any back-off
    /// answer closes the whole upstream).
    pub backoff_scope: Option<String>,
    /// Transparent refresh with the caller's `X-FxA-Refresh-Token` (needs `[refresh]`).
    pub refresh: bool,
    /// Scope asked for on refresh (may only narrow the refresh token's scope).
    pub refresh_scope: Option<String>,
}

impl FromTable for RawRoute {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawRoute {
            name: t.required("name"),
            host: t.get("host"),
            path_prefix: t.required("path_prefix"),
            upstream: t.required("upstream"),
            strip_prefix: t.or("strip_prefix", true),
            methods: t.get("methods"),
            versions: t.or("versions", Vec::new()),
            deprecated_versions: t.tables("deprecated_versions"),
            rewrite_errors: t.or("rewrite_errors", true),
            auth: RawAuth::read(t),
            quota: t.table("quota"),
            backoff_scope: t.get("backoff_scope"),
            refresh: t.or("refresh", false),
            refresh_scope: t.get("refresh_scope"),
        }
    }
}

#[derive(Debug)]
pub struct RawDeprecatedVersion {
    pub version: Option<String>,
    pub deprecation: Option<DateValue>,
    pub sunset: Option<DateValue>,
}

impl FromTable for RawDeprecatedVersion {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawDeprecatedVersion {
            version: t.required("version"),
            deprecation: t.required("deprecation"),
            sunset: t.get("sunset"),
        }
    }
}

/// `auth = "none"` or `auth = { policy = "...", ...options }`. Options belong to one policy
/// each; validation refuses an option the chosen policy does not take.
#[derive(Debug)]
pub struct RawAuth {
    /// `None`: the policy could not be read (reported).
    pub policy: Option<String>,
    /// `amo-jwt`: the credential used when the caller does not select one.
    pub credential: Option<String>,
    /// `amo-jwt`: callers may select a credential with `X-FxA-Amo-Credential`.
    pub header_selection: Option<bool>,
    /// `amo-jwt-verify`: API keys (issuers) accepted on this route; default all.
    pub issuers: Option<Vec<String>>,
    /// `bearer`: FxA endpoint table to apply (`"profile"`, `"tokenserver"`, `"oauth"`).
    pub preset: Option<String>,
    /// `bearer`: scopes of which the token must hold one (empty: any valid token).
    pub scopes: Option<Vec<String>>,
    /// `bearer`: per-endpoint requirements, longest path first.
    pub endpoints: Option<Vec<Option<RawEndpoint>>>,
    /// `bearer`: send `X-FxA-Uid`, `X-FxA-Client-Id`, `X-FxA-Scope` upstream.
    pub identity_headers: Option<bool>,
}

impl RawAuth {
    /// A route's `auth` key: a policy name, a table, or absent (`"none"`).
    fn read(t: &mut Table<'_, '_>) -> RawAuth {
        if t.is_table("auth") {
            return t.table("auth").unwrap_or_else(|| RawAuth::named(None));
        }
        match t.get::<String>("auth") {
            Some(policy) => RawAuth::named(Some(policy)),
            // Wrong (reported): which policy was meant is unknown.
            None if t.is_present("auth") => RawAuth::named(None),
            None => RawAuth::named(Some("none".to_owned())),
        }
    }

    fn named(policy: Option<String>) -> RawAuth {
        RawAuth {
            policy,
            credential: None,
            header_selection: None,
            issuers: None,
            preset: None,
            scopes: None,
            endpoints: None,
            identity_headers: None,
        }
    }
}

impl FromTable for RawAuth {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawAuth {
            policy: t.required("policy"),
            credential: t.get("credential"),
            header_selection: t.get("header_selection"),
            issuers: t.get("issuers"),
            preset: t.get("preset"),
            scopes: t.get("scopes"),
            endpoints: t.tables_if_present("endpoints"),
            identity_headers: t.get("identity_headers"),
        }
    }
}

/// One row of a bearer route's endpoint table.
#[derive(Debug)]
pub struct RawEndpoint {
    /// Path after the route prefix (`/v1/email`); matches it and anything below it.
    pub path: Option<String>,
    pub methods: Option<Vec<String>>,
    /// One of these scopes is needed; `[]` = any valid token.
    pub scopes: Vec<String>,
    /// No token needed.
    pub public: bool,
}

impl FromTable for RawEndpoint {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawEndpoint {
            path: t.required("path"),
            methods: t.get("methods"),
            scopes: t.or("scopes", Vec::new()),
            public: t.or("public", false),
        }
    }
}

/// `[bearer]`: the OAuth server bearer routes introspect tokens at, and the cache.
#[derive(Debug)]
pub struct RawBearer {
    pub oauth_upstream: Option<String>,
    pub cache_max_ttl: DurationValue,
    pub negative_ttl: DurationValue,
    pub cache_size: u64,
    pub breaker: DurationValue,
}

impl FromTable for RawBearer {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawBearer {
            oauth_upstream: t.required("oauth_upstream"),
            cache_max_ttl: t.or("cache_max_ttl", secs(300)),
            negative_ttl: t.or("negative_ttl", secs(5)),
            cache_size: t.or("cache_size", 100_000),
            breaker: t.or("breaker", secs(1)),
        }
    }
}

/// `[refresh]`: the OAuth client the gateway refreshes access tokens as.
#[derive(Debug)]
pub struct RawRefresh {
    /// Default: `[bearer] oauth_upstream`.
    pub oauth_upstream: Option<String>,
    pub token_path: String,
    pub client_id: Option<String>,
    /// Omitted for a public (PKCE) client, which sends no secret.
    pub client_secret: Option<SecretRef>,
    pub max_replay_body: SizeValue,
    pub grace: DurationValue,
    pub skew: DurationValue,
    pub cache_size: u64,
}

impl FromTable for RawRefresh {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawRefresh {
            oauth_upstream: t.get("oauth_upstream"),
            token_path: t.or("token_path", "/v1/token".to_owned()),
            client_id: t.required("client_id"),
            client_secret: t.get("client_secret"),
            max_replay_body: t.or("max_replay_body", kib(64)),
            grace: t.or("grace", secs(60)),
            skew: t.or("skew", secs(30)),
            cache_size: t.or("cache_size", 100_000),
        }
    }
}

/// `[[amo_credentials]]`: an AMO API key the gateway signs with (`amo-jwt` routes).
#[derive(Debug)]
pub struct RawAmoCredential {
    pub name: Option<String>,
    /// The JWT `iss`: AMO's "JWT issuer" (e.g. `user:12345:67`). Not a secret.
    pub api_key: Option<String>,
    pub secret: Option<SecretRef>,
    pub lifetime: DurationValue,
    /// Seconds added to the clock when minting (negative for a fast local clock).
    pub clock_offset_seconds: i64,
    /// Listeners whose callers may select this credential by header.
    pub selectable_from_listeners: Vec<String>,
    /// Peer networks whose callers may select this credential by header.
    pub selectable_from_peers: Vec<String>,
}

impl FromTable for RawAmoCredential {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawAmoCredential {
            name: t.required("name"),
            api_key: t.required("api_key"),
            secret: t.required("secret"),
            lifetime: t.or("lifetime", secs(60)),
            clock_offset_seconds: t.or("clock_offset_seconds", 0),
            selectable_from_listeners: t.or("selectable_from_listeners", Vec::new()),
            selectable_from_peers: t.or("selectable_from_peers", Vec::new()),
        }
    }
}

/// `[[amo_issuers]]`: an API key whose JWTs `amo-jwt-verify` routes accept.
#[derive(Debug)]
pub struct RawAmoIssuer {
    pub api_key: Option<String>,
    pub secret: Option<SecretRef>,
    /// Refuse tokens without `jti` (default). `false` accepts them: replays possible until `exp`.
    pub require_jti: bool,
}

impl FromTable for RawAmoIssuer {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawAmoIssuer {
            api_key: t.required("api_key"),
            secret: t.required("secret"),
            require_jti: t.or("require_jti", true),
        }
    }
}

/// `[amo_verify]`: settings shared by every `amo-jwt-verify` route.
#[derive(Debug)]
pub struct RawAmoVerify {
    pub leeway: DurationValue,
    pub replay_cache_size: u64,
}

impl FromTable for RawAmoVerify {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawAmoVerify {
            leeway: t.or("leeway", secs(5)),
            replay_cache_size: t.or("replay_cache_size", 100_000),
        }
    }
}

/// `[redis]`: state shared by every replica (issue 17). Absent: everything stays in-process.
#[derive(Debug)]
pub struct RawRedis {
    /// `redis://host[:port][/db]` (loopback only) or `rediss://host[:port][/db]`.
    pub url: Option<String>,
    /// An ACL user name (not a secret); the password comes from `password`.
    pub username: Option<String>,
    pub password: Option<SecretRef>,
    /// PEM CA bundle for `rediss://` (default: the system's roots).
    pub ca_file: Option<String>,
    pub key_prefix: String,
    pub connect_timeout: DurationValue,
    pub command_timeout: DurationValue,
    /// How often a replica that lost Redis tries again (and pings while it has it).
    pub health_interval: DurationValue,
    pub hashing_key: Option<SecretRef>,
    pub encryption_key: Option<SecretRef>,
    pub on_redis_down: RawOnRedisDown,
}

impl FromTable for RawRedis {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawRedis {
            url: t.required("url"),
            username: t.get("username"),
            password: t.get("password"),
            ca_file: t.get("ca_file"),
            key_prefix: t.or("key_prefix", "fxa-gateway:".to_owned()),
            connect_timeout: t.or("connect_timeout", DurationValue(Duration::from_millis(500))),
            command_timeout: t.or("command_timeout", DurationValue(Duration::from_millis(100))),
            health_interval: t.or("health_interval", secs(1)),
            hashing_key: t.required("hashing_key"),
            encryption_key: t.required("encryption_key"),
            on_redis_down: t.section("on_redis_down"),
        }
    }
}

/// `[redis.on_redis_down]`: per kind of shared state, `"local"` or `"refuse"`.
#[derive(Debug)]
pub struct RawOnRedisDown {
    pub backoff: String,
    pub quotas: String,
    pub refresh: String,
    pub amo_replay: String,
}

impl FromTable for RawOnRedisDown {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawOnRedisDown {
            backoff: t.or("backoff", "local".to_owned()),
            quotas: t.or("quotas", "local".to_owned()),
            refresh: t.or("refresh", "local".to_owned()),
            amo_replay: t.or("amo_replay", "refuse".to_owned()),
        }
    }
}

#[derive(Debug)]
pub struct RawLimits {
    pub max_header_bytes: SizeValue,
    pub max_headers: u64,
    pub max_body_bytes: SizeValue,
    pub header_read_timeout: DurationValue,
    pub body_read_timeout: DurationValue,
    pub send_timeout: DurationValue,
    pub max_unsent_bytes: SizeValue,
    pub idle_timeout: DurationValue,
    pub tls_handshake_timeout: DurationValue,
    pub max_connections: u64,
    /// Unset: the default, capped at `max_connections`.
    pub max_connections_per_peer: Option<u64>,
    pub h2_max_concurrent_streams: u64,
    pub h2_max_header_list_size: SizeValue,
    pub max_error_body_bytes: SizeValue,
}

impl FromTable for RawLimits {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawLimits {
            max_header_bytes: t.or("max_header_bytes", kib(16)),
            max_headers: t.or("max_headers", 100),
            max_body_bytes: t.or("max_body_bytes", kib(1024)),
            header_read_timeout: t.or("header_read_timeout", secs(10)),
            body_read_timeout: t.or("body_read_timeout", secs(30)),
            send_timeout: t.or("send_timeout", secs(60)),
            max_unsent_bytes: t.or("max_unsent_bytes", kib(16)),
            idle_timeout: t.or("idle_timeout", secs(60)),
            tls_handshake_timeout: t.or("tls_handshake_timeout", secs(10)),
            max_connections: t.or("max_connections", 10_000),
            max_connections_per_peer: t.get("max_connections_per_peer"),
            h2_max_concurrent_streams: t.or("h2_max_concurrent_streams", 100),
            h2_max_header_list_size: t.or("h2_max_header_list_size", kib(16)),
            max_error_body_bytes: t.or("max_error_body_bytes", kib(64)),
        }
    }
}

/// A duration written with a unit (`"30s"`); a bare number is refused because its unit would
/// be a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a duration string such as "30s""#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    r#"a duration needs a unit: write "{v}s" or "{v}ms", not {v}"#
                )))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationValue, E> {
                Err(E::custom(format!(
                    r#"a duration needs a unit: write "{v}s" or "{v}ms", not {v}"#
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes: `"64KiB"`, `"1MB"`, or a bare integer meaning bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeValue(pub u64);

impl<'de> Deserialize<'de> for SizeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SizeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a size such as "64KiB" or a number of bytes"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SizeValue, E> {
                parse_size(v).map(SizeValue).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<SizeValue, E> {
                u64::try_from(v)
                    .map(SizeValue)
                    .map_err(|_| E::custom(format!("negative size {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SizeValue, E> {
                Ok(SizeValue(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// An RFC 3339 date or date-time, quoted (`"2021-02-01"`) or as a TOML date literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateValue(pub SystemTime);

impl<'de> Deserialize<'de> for DateValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A TOML date literal arrives as a `toml::value::Datetime`; its Display is RFC 3339.
        let text = match toml::Value::deserialize(d)? {
            toml::Value::String(s) => s,
            toml::Value::Datetime(dt) => dt.to_string(),
            other => {
                return Err(de::Error::custom(format!(
                    r#"expected a date such as "2021-02-01", found {}"#,
                    other.type_str()
                )));
            }
        };
        parse_rfc3339(&text)
            .map(DateValue)
            .map_err(de::Error::custom)
    }
}
