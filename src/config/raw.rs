//! The `gateway.toml` file as written: serde structs that mirror it section by section.
//!
//! Every struct rejects unknown keys. Durations, sizes and dates are parsed while
//! deserializing (so a bad value is reported at its own key); cross-references, ranges and
//! file contents are checked later by `validate`. Secrets are never accepted inline.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::model::LogFormat;
use super::units::{parse_duration, parse_rfc3339, parse_size};

pub use super::secret::SecretRef;

// Defaults live in one place so the docs in gateway.toml and the code cannot drift apart
// silently: the tests load an empty-ish file and compare.
const fn secs(n: u64) -> DurationValue {
    DurationValue(Duration::from_secs(n))
}
const fn kib(n: u64) -> SizeValue {
    SizeValue(n * 1024)
}
const fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub worker_threads: Option<u64>,
    #[serde(default = "RawServer::drain_timeout")]
    pub drain_timeout: DurationValue,
    #[serde(default)]
    pub log: RawLog,
}

impl RawServer {
    fn drain_timeout() -> DurationValue {
        secs(30)
    }
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            worker_threads: None,
            drain_timeout: RawServer::drain_timeout(),
            log: RawLog::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    #[serde(default = "RawLog::format")]
    pub format: RawLogFormat,
    #[serde(default = "RawLog::level")]
    pub level: String,
    #[serde(default = "yes")]
    pub access_log: bool,
}

impl RawLog {
    fn format() -> RawLogFormat {
        RawLogFormat::Text
    }
    fn level() -> String {
        "info".to_owned()
    }
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: RawLog::format(),
            level: RawLog::level(),
            access_log: true,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub name: String,
    pub addr: String,
    #[serde(default)]
    pub allow_plain_non_loopback: bool,
    /// Accept `X-FxA-Refresh-Token` from callers (default: only on a loopback address).
    pub accept_refresh_token: Option<bool>,
    /// Pass header names with an underscore other than the gateway's own (default: dropped).
    #[serde(default)]
    pub allow_underscore_headers: bool,
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificates: Vec<RawCertificate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: SecretRef,
    #[serde(default)]
    pub server_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub addr: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    pub url: String,
    pub ca_file: Option<String>,
    #[serde(default)]
    pub ca_only: bool,
    #[serde(default = "RawUpstream::connect_timeout")]
    pub connect_timeout: DurationValue,
    #[serde(default = "RawUpstream::response_timeout")]
    pub response_timeout: DurationValue,
    #[serde(default = "RawUpstream::max_connections")]
    pub max_connections: u64,
    #[serde(default = "RawUpstream::pool_idle_timeout")]
    pub pool_idle_timeout: DurationValue,
    #[serde(default = "yes")]
    pub http2: bool,
    /// Upstream-wide cap on requests from all callers together (503 errno 201 above it).
    pub rate_limit: Option<RawQuota>,
}

/// `{ requests = 100, window = "1m" }`, plus the key and header options on routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    pub requests: u64,
    pub window: DurationValue,
    /// Routes only: `"peer"` (default), `"identity"`, or `"header:<Name>"`.
    pub key: Option<String>,
    /// Routes only: send `RateLimit-Policy` / `RateLimit` headers (default false).
    pub headers: Option<bool>,
}

/// `[backoff]`: how upstream back-off windows behave.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    #[serde(default = "RawBackoff::max_window")]
    pub max_window: DurationValue,
    pub default_503_window: Option<DurationValue>,
    #[serde(default)]
    pub honour_backoff_header: bool,
    #[serde(default = "RawBackoff::ramp_period")]
    pub ramp_period: DurationValue,
    #[serde(default = "RawBackoff::ramp_steps")]
    pub ramp_steps: u64,
    #[serde(default = "RawBackoff::ramp_start_percent")]
    pub ramp_start_percent: u64,
    #[serde(default = "RawBackoff::ramp_base_rate")]
    pub ramp_base_rate: u64,
    #[serde(default = "RawBackoff::max_scoped_windows")]
    pub max_scoped_windows: u64,
}

impl RawBackoff {
    fn max_window() -> DurationValue {
        secs(300)
    }
    fn ramp_period() -> DurationValue {
        secs(20)
    }
    fn ramp_steps() -> u64 {
        4
    }
    fn ramp_start_percent() -> u64 {
        25
    }
    fn ramp_base_rate() -> u64 {
        100
    }
    fn max_scoped_windows() -> u64 {
        10_000
    }
}

impl Default for RawBackoff {
    fn default() -> Self {
        RawBackoff {
            max_window: RawBackoff::max_window(),
            default_503_window: None,
            honour_backoff_header: false,
            ramp_period: RawBackoff::ramp_period(),
            ramp_steps: RawBackoff::ramp_steps(),
            ramp_start_percent: RawBackoff::ramp_start_percent(),
            ramp_base_rate: RawBackoff::ramp_base_rate(),
            max_scoped_windows: RawBackoff::max_scoped_windows(),
        }
    }
}

impl RawUpstream {
    fn connect_timeout() -> DurationValue {
        secs(5)
    }
    fn response_timeout() -> DurationValue {
        secs(30)
    }
    fn max_connections() -> u64 {
        256
    }
    fn pool_idle_timeout() -> DurationValue {
        secs(90)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    pub host: Option<String>,
    pub path_prefix: String,
    pub upstream: String,
    #[serde(default = "yes")]
    pub strip_prefix: bool,
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub deprecated_versions: Vec<RawDeprecatedVersion>,
    #[serde(default = "yes")]
    pub rewrite_errors: bool,
    #[serde(default)]
    pub auth: RawAuth,
    /// Per-caller quota on this route.
    pub quota: Option<RawQuota>,
    /// `"auto"` (default: a 429 closes the caller's identity) or `"upstream"` (any back-off
    /// answer closes the whole upstream).
    pub backoff_scope: Option<String>,
    /// Transparent refresh with the caller's `X-FxA-Refresh-Token` (needs `[refresh]`).
    #[serde(default)]
    pub refresh: bool,
    /// Scope asked for on refresh (may only narrow the refresh token's scope).
    pub refresh_scope: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeprecatedVersion {
    pub version: String,
    pub deprecation: DateValue,
    pub sunset: Option<DateValue>,
}

/// `auth = "none"` or `auth = { policy = "...", ...options }`. Options belong to one policy
/// each; validation refuses an option the chosen policy does not take.
#[derive(Debug)]
pub struct RawAuth {
    pub policy: String,
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
    pub endpoints: Option<Vec<RawEndpoint>>,
    /// `bearer`: send `X-FxA-Uid`, `X-FxA-Client-Id`, `X-FxA-Scope` upstream.
    pub identity_headers: Option<bool>,
}

/// One row of a bearer route's endpoint table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// Path after the route prefix (`/v1/email`); matches it and anything below it.
    pub path: String,
    pub methods: Option<Vec<String>>,
    /// One of these scopes is needed; `[]` = any valid token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// No token needed.
    #[serde(default)]
    pub public: bool,
}

/// `[bearer]`: the OAuth server bearer routes introspect tokens at, and the cache.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBearer {
    pub oauth_upstream: String,
    #[serde(default = "RawBearer::cache_max_ttl")]
    pub cache_max_ttl: DurationValue,
    #[serde(default = "RawBearer::negative_ttl")]
    pub negative_ttl: DurationValue,
    #[serde(default = "RawBearer::cache_size")]
    pub cache_size: u64,
    #[serde(default = "RawBearer::breaker")]
    pub breaker: DurationValue,
}

impl RawBearer {
    fn cache_max_ttl() -> DurationValue {
        secs(300)
    }
    fn negative_ttl() -> DurationValue {
        secs(5)
    }
    fn cache_size() -> u64 {
        100_000
    }
    fn breaker() -> DurationValue {
        secs(1)
    }
}

/// `[refresh]`: the OAuth client the gateway refreshes access tokens as.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRefresh {
    /// Default: `[bearer] oauth_upstream`.
    pub oauth_upstream: Option<String>,
    #[serde(default = "RawRefresh::token_path")]
    pub token_path: String,
    pub client_id: String,
    /// Omitted for a public (PKCE) client, which sends no secret.
    pub client_secret: Option<SecretRef>,
    #[serde(default = "RawRefresh::max_replay_body")]
    pub max_replay_body: SizeValue,
    #[serde(default = "RawRefresh::grace")]
    pub grace: DurationValue,
    #[serde(default = "RawRefresh::skew")]
    pub skew: DurationValue,
    #[serde(default = "RawRefresh::cache_size")]
    pub cache_size: u64,
}

impl RawRefresh {
    fn token_path() -> String {
        "/v1/token".to_owned()
    }
    fn max_replay_body() -> SizeValue {
        kib(64)
    }
    fn grace() -> DurationValue {
        secs(60)
    }
    fn skew() -> DurationValue {
        secs(30)
    }
    fn cache_size() -> u64 {
        100_000
    }
}

impl RawAuth {
    fn named(policy: &str) -> RawAuth {
        RawAuth {
            policy: policy.to_owned(),
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

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth::named("none")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthTable {
    policy: String,
    credential: Option<String>,
    header_selection: Option<bool>,
    issuers: Option<Vec<String>>,
    preset: Option<String>,
    scopes: Option<Vec<String>>,
    endpoints: Option<Vec<RawEndpoint>>,
    identity_headers: Option<bool>,
}

impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAuth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"an auth policy name ("none") or a table { policy = "..." }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAuth, E> {
                Ok(RawAuth::named(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
                let t = RawAuthTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawAuth {
                    policy: t.policy,
                    credential: t.credential,
                    header_selection: t.header_selection,
                    issuers: t.issuers,
                    preset: t.preset,
                    scopes: t.scopes,
                    endpoints: t.endpoints,
                    identity_headers: t.identity_headers,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `[[amo_credentials]]`: an AMO API key the gateway signs with (`amo-jwt` routes).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmoCredential {
    pub name: String,
    /// The JWT `iss`: AMO's "JWT issuer" (e.g. `user:12345:67`). Not a secret.
    pub api_key: String,
    pub secret: SecretRef,
    #[serde(default = "RawAmoCredential::lifetime")]
    pub lifetime: DurationValue,
    /// Seconds added to the clock when minting (negative for a fast local clock).
    #[serde(default)]
    pub clock_offset_seconds: i64,
    /// Listeners whose callers may select this credential by header.
    #[serde(default)]
    pub selectable_from_listeners: Vec<String>,
    /// Peer networks whose callers may select this credential by header.
    #[serde(default)]
    pub selectable_from_peers: Vec<String>,
}

impl RawAmoCredential {
    fn lifetime() -> DurationValue {
        secs(60)
    }
}

/// `[[amo_issuers]]`: an API key whose JWTs `amo-jwt-verify` routes accept.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmoIssuer {
    pub api_key: String,
    pub secret: SecretRef,
    /// Refuse tokens without `jti` (default). `false` accepts them: replays possible until `exp`.
    #[serde(default = "yes")]
    pub require_jti: bool,
}

/// `[amo_verify]`: settings shared by every `amo-jwt-verify` route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAmoVerify {
    #[serde(default = "RawAmoVerify::leeway")]
    pub leeway: DurationValue,
    #[serde(default = "RawAmoVerify::replay_cache_size")]
    pub replay_cache_size: u64,
}

impl RawAmoVerify {
    fn leeway() -> DurationValue {
        secs(5)
    }
    fn replay_cache_size() -> u64 {
        100_000
    }
}

impl Default for RawAmoVerify {
    fn default() -> Self {
        RawAmoVerify {
            leeway: RawAmoVerify::leeway(),
            replay_cache_size: RawAmoVerify::replay_cache_size(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default = "RawLimits::max_header_bytes")]
    pub max_header_bytes: SizeValue,
    #[serde(default = "RawLimits::max_headers")]
    pub max_headers: u64,
    #[serde(default = "RawLimits::max_body_bytes")]
    pub max_body_bytes: SizeValue,
    #[serde(default = "RawLimits::header_read_timeout")]
    pub header_read_timeout: DurationValue,
    #[serde(default = "RawLimits::body_read_timeout")]
    pub body_read_timeout: DurationValue,
    #[serde(default = "RawLimits::send_timeout")]
    pub send_timeout: DurationValue,
    #[serde(default = "RawLimits::idle_timeout")]
    pub idle_timeout: DurationValue,
    #[serde(default = "RawLimits::tls_handshake_timeout")]
    pub tls_handshake_timeout: DurationValue,
    #[serde(default = "RawLimits::max_connections")]
    pub max_connections: u64,
    /// Unset: the default, capped at `max_connections`.
    pub max_connections_per_peer: Option<u64>,
    #[serde(default = "RawLimits::h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: u64,
    #[serde(default = "RawLimits::h2_max_header_list_size")]
    pub h2_max_header_list_size: SizeValue,
    #[serde(default = "RawLimits::max_error_body_bytes")]
    pub max_error_body_bytes: SizeValue,
}

impl RawLimits {
    fn max_header_bytes() -> SizeValue {
        kib(16)
    }
    fn max_headers() -> u64 {
        100
    }
    fn max_body_bytes() -> SizeValue {
        kib(1024)
    }
    fn header_read_timeout() -> DurationValue {
        secs(10)
    }
    fn body_read_timeout() -> DurationValue {
        secs(30)
    }
    fn send_timeout() -> DurationValue {
        secs(60)
    }
    fn idle_timeout() -> DurationValue {
        secs(60)
    }
    fn tls_handshake_timeout() -> DurationValue {
        secs(10)
    }
    fn max_connections() -> u64 {
        10_000
    }
    pub(super) fn max_connections_per_peer() -> u64 {
        1_000
    }
    fn h2_max_concurrent_streams() -> u64 {
        100
    }
    fn h2_max_header_list_size() -> SizeValue {
        kib(16)
    }
    fn max_error_body_bytes() -> SizeValue {
        kib(64)
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_header_bytes: RawLimits::max_header_bytes(),
            max_headers: RawLimits::max_headers(),
            max_body_bytes: RawLimits::max_body_bytes(),
            header_read_timeout: RawLimits::header_read_timeout(),
            body_read_timeout: RawLimits::body_read_timeout(),
            send_timeout: RawLimits::send_timeout(),
            idle_timeout: RawLimits::idle_timeout(),
            tls_handshake_timeout: RawLimits::tls_handshake_timeout(),
            max_connections: RawLimits::max_connections(),
            max_connections_per_peer: None,
            h2_max_concurrent_streams: RawLimits::h2_max_concurrent_streams(),
            h2_max_header_list_size: RawLimits::h2_max_header_list_size(),
            max_error_body_bytes: RawLimits::max_error_body_bytes(),
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
