//! The validated, typed configuration the rest of the gateway reads.
//!
//! Everything here has passed validation: addresses parse, upstream names resolve to indices,
//! secrets have been read, durations and sizes are typed. Nothing in this module does I/O.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use http::Method;

/// The whole gateway configuration, as loaded from `gateway.toml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// File the configuration came from (for messages and relative paths).
    pub source: PathBuf,
    pub server: ServerSettings,
    pub listeners: Vec<ListenerConfig>,
    pub admin: Option<AdminConfig>,
    pub upstreams: Vec<UpstreamConfig>,
    /// How upstream host names resolve.
    pub resolver: ResolverSettings,
    pub routes: Vec<RouteConfig>,
    pub limits: Limits,
    /// Peers whose `X-Forwarded-For` is trusted and extended rather than replaced.
    pub trusted_proxies: Vec<IpNet>,
    /// AMO API credentials the gateway signs with (`amo-jwt` routes).
    pub amo_credentials: Vec<AmoCredentialConfig>,
    /// AMO API keys whose JWTs `amo-jwt-verify` routes accept.
    pub amo_issuers: Vec<AmoIssuerConfig>,
    pub amo_verify: AmoVerifySettings,
    pub backoff: BackoffSettings,
    /// Token introspection for `bearer` routes; required when any route uses it.
    pub bearer: Option<BearerSettings>,
    /// Transparent token refresh; required when any route has `refresh = true`.
    pub refresh: Option<RefreshSettings>,
    /// Picking up changed files without a signal.
    pub reload: ReloadSettings,
    /// FxA's JWK set and local verification of JWT access tokens.
    pub jwt: super::JwtConfig,
    /// FxA security events; required when any route uses auth policy `security-events`.
    pub security_events: Option<super::SecurityEventsConfig>,
    /// State shared by every replica through Redis; `None`: all state is in-process.
    pub redis: Option<RedisSettings>,
}

/// `[reload]`: the file watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSettings {
    /// Watch the config file and the files it names; a change reloads.
    pub watch: bool,
    /// How often the watched files are looked at.
    pub watch_interval: Duration,
}

/// `[redis]`: where the fleet's shared state lives and what to do without it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub db: i64,
    /// `rediss://`.
    pub tls: bool,
    /// PEM CA bundle for TLS; `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub key_prefix: String,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub health_interval: Duration,
    /// HMAC-SHA256 key for every key name derived from a token, id or jti (same on every replica).
    pub hashing_key: Secret,
    /// Key material for the AEAD that protects access tokens stored in Redis.
    pub encryption_key: Secret,
    pub on_down: OnRedisDown,
}

/// Per kind of shared state: what a replica does while Redis is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnRedisDown {
    pub backoff: DownPolicy,
    pub quotas: DownPolicy,
    pub refresh: DownPolicy,
    pub amo_replay: DownPolicy,
}

/// `"local"`: fall back to this replica's own state. `"refuse"`: answer 503 rather than decide
/// without the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownPolicy {
    Local,
    Refuse,
}

impl Default for OnRedisDown {
    fn default() -> Self {
        OnRedisDown {
            backoff: DownPolicy::Local,
            quotas: DownPolicy::Local,
            refresh: DownPolicy::Local,
            amo_replay: DownPolicy::Refuse,
        }
    }
}

/// `[refresh]`: the OAuth client credentials and the rules of transparent refresh.
#[derive(Debug, Clone)]
pub struct RefreshSettings {
    /// Index into `Config::upstreams` of the OAuth server (`POST <token_path>`).
    pub oauth_upstream: usize,
    pub token_endpoint: TokenEndpoint,
    /// 16 lowercase hex characters.
    pub client_id: String,
    /// `None` for a public (PKCE) client.
    pub client_secret: Option<Secret>,
    /// Request bodies up to this size are buffered so they can be replayed.
    pub max_replay_body: u64,
    /// A new access token is reused for the same old token and refresh token this long.
    pub grace: Duration,
    /// Refresh before forwarding when the cached token expires within this.
    pub skew: Duration,
    /// Most refresh results and token lineages held at once.
    pub cache_size: u64,
}

/// Which FxA token route the gateway refreshes at (their errors differ, reference §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `POST /v1/token` (OAuth errno namespace; a dead refresh token is 400 errno 108).
    OAuth,
    /// `POST /v1/oauth/token` (auth-server namespace; a dead refresh token is 401 errno 110).
    AuthServer,
}

impl TokenEndpoint {
    pub fn path(self) -> &'static str {
        match self {
            TokenEndpoint::OAuth => "/v1/token",
            TokenEndpoint::AuthServer => "/v1/oauth/token",
        }
    }
}

/// A route's refresh options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRefresh {
    /// `scope` sent with the refresh grant (narrowing), if any.
    pub scope: Option<String>,
}

#[derive(Debug, Clone)]
pub struct BearerSettings {
    /// Index into `Config::upstreams` of the OAuth server (`/v1/introspect`).
    pub oauth_upstream: usize,
    /// Positive cache entries live at most this long (and never past the token's `exp`).
    pub cache_max_ttl: Duration,
    /// Inactive/unknown tokens are remembered this long.
    pub negative_ttl: Duration,
    pub cache_size: u64,
    /// After the OAuth server fails, answer 503 at once for this long before trying again.
    pub breaker: Duration,
}

/// A bearer route's requirements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerPolicy {
    pub preset: Option<PresetName>,
    /// One of these is needed where no endpoint row or preset says otherwise; empty = any token.
    pub scopes: Vec<String>,
    /// Longest `path` first.
    pub endpoints: Vec<EndpointRule>,
    pub identity_headers: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetName {
    Profile,
    TokenServer,
    OAuth,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRule {
    pub path: String,
    pub methods: Option<Vec<Method>>,
    /// `None` = public (no token); `Some([])` = any valid token; else one of these scopes.
    pub scopes: Option<Vec<String>>,
}

/// How back-off windows behave (`[backoff]`).
#[derive(Debug, Clone)]
pub struct BackoffSettings {
    /// Longest window kept, whatever the upstream asked.
    pub max_window: Duration,
    /// Window for a 503 without `Retry-After` or `retryAfter`; `None` opens none.
    pub default_503_window: Option<Duration>,
    /// The token server's `Backoff`/`X-Backoff` opens an upstream window.
    pub honour_backoff_header: bool,
    /// Gradual reopening after a successful probe; `None` reopens at once.
    pub ramp: Option<RampSettings>,
    /// Most per-client and per-identity windows held at once.
    pub max_scoped_windows: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RampSettings {
    pub period: Duration,
    pub steps: u32,
    pub start_percent: u8,
    pub base_rate_per_sec: u32,
}

/// `requests` per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaSettings {
    pub requests: u32,
    pub window: Duration,
}

/// A per-caller quota on a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteQuota {
    pub quota: QuotaSettings,
    pub key: QuotaKey,
    /// Send `RateLimit-Policy` / `RateLimit` response headers.
    pub headers: bool,
}

/// What identifies a caller for its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaKey {
    /// The peer address (IPv6 by /64).
    Peer,
    /// The OAuth client id of the bearer token, else the peer address.
    Client,
    /// The authenticated identity (AMO issuer...), else the peer address.
    Identity,
    /// A request header's value (hashed, never stored raw), else the peer address.
    Header(http::HeaderName),
}

/// Whose traffic a back-off answer on a route stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackoffScope {
    /// As FxA means it: a 429 is about the caller's identity, a 503 about everyone.
    #[default]
    Auto,
    /// Any back-off answer closes the whole upstream.
    Upstream,
}

#[derive(Debug, Clone)]
pub struct AmoCredentialConfig {
    pub name: String,
    /// JWT `iss` (AMO's "JWT issuer"; not a secret).
    pub api_key: String,
    pub secret: Secret,
    /// `exp - iat`, whole seconds, at most 300.
    pub lifetime: Duration,
    pub clock_offset_seconds: i64,
    /// Listener names whose callers may select this credential with `X-FxA-Amo-Credential`.
    pub selectable_from_listeners: Vec<String>,
    /// Peer networks whose callers may select it.
    pub selectable_from_peers: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct AmoIssuerConfig {
    pub api_key: String,
    pub secret: Secret,
    /// `false` accepts tokens without `jti` (replayable until `exp`).
    pub require_jti: bool,
}

#[derive(Debug, Clone)]
pub struct AmoVerifySettings {
    /// Clock leeway for `iat` and `exp`.
    pub leeway: Duration,
    /// Seen `jti`s remembered (per process) until their `exp`.
    pub replay_cache_size: u64,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Tokio worker threads; `None` = one per core.
    pub worker_threads: Option<usize>,
    /// How long in-flight requests may take to finish after SIGTERM.
    pub drain_timeout: Duration,
    pub log: LogSettings,
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `"info"` or `"fxa_gateway=debug"`.
    pub level: String,
    /// One access event per request at `info`.
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    /// MozLog-style JSON, one object per line.
    Json,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub addr: SocketAddr,
    /// `None` = plain HTTP/1.1 (sidecar use).
    pub tls: Option<TlsSettings>,
    /// The operator acknowledged a plain listener on a non-loopback address.
    pub allow_plain_non_loopback: bool,
    /// Callers may send `X-FxA-Refresh-Token` here (default: loopback listeners only).
    pub accept_refresh_token: bool,
    /// Request header names with an underscore are forwarded, except those that read as a
    /// header the gateway sets or strips (default: every such name is dropped, as nginx does).
    pub allow_underscore_headers: bool,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// First entry is the default certificate (no SNI, or no match).
    pub certificates: Vec<CertificateConfig>,
}

#[derive(Debug, Clone)]
pub struct CertificateConfig {
    /// PEM certificate chain (leaf first).
    pub cert_pem: Vec<u8>,
    /// PEM private key (read from a file or an environment variable, never inline).
    pub key_pem: Secret,
    /// SNI names this certificate answers for; empty = taken from the certificate is not
    /// attempted, so an empty list means "default only".
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    /// Callers of `POST /__reload__` send it as a bearer token; `None`: loopback peers only.
    pub reload_token: Option<Secret>,
}

/// `[resolver]`: host names pinned to addresses (answered without a DNS query), and whether
/// other names go to the system resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverSettings {
    /// Lower-case host name → its addresses, in the order tried.
    pub hosts: Vec<(String, Vec<IpAddr>)>,
    /// Names not pinned resolve through getaddrinfo; when false they fail to resolve.
    pub system: bool,
}

impl Default for ResolverSettings {
    fn default() -> Self {
        ResolverSettings {
            hosts: Vec::new(),
            system: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    /// `https://host[:port][/base/path]`, or `http://` on loopback only.
    pub url: http::Uri,
    /// Extra PEM CA bundle trusted for this upstream (in addition to, or instead of, webpki roots).
    pub ca_pem: Option<Vec<u8>>,
    /// Trust only `ca_pem`, not the webpki roots.
    pub ca_only: bool,
    pub connect_timeout: Duration,
    /// Time to the response head.
    pub response_timeout: Duration,
    /// Concurrent requests (≈ connections for HTTP/1.1) to this upstream.
    pub max_connections: usize,
    /// Idle pooled connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Offer h2 by ALPN (TLS upstreams only).
    pub http2: bool,
    /// Cap on requests from all callers together.
    pub rate_limit: Option<QuotaSettings>,
}

#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Exact `Host` (or `:authority`) match, lower-case, without port. `None` = any host.
    pub host: Option<String>,
    /// Path prefix, starts with `/`, no trailing `/` unless it is `/` itself.
    pub path_prefix: String,
    /// Index into `Config::upstreams`.
    pub upstream: usize,
    /// Remove `path_prefix` before appending the path to the upstream's base path.
    pub strip_prefix: bool,
    /// `None` = any method.
    pub methods: Option<Vec<Method>>,
    /// Accepted API versions (the segment after the prefix); empty = no version policy.
    pub versions: Vec<String>,
    /// Versions that still work but are announced for removal.
    pub deprecated_versions: Vec<DeprecatedVersion>,
    /// Rewrite non-errno upstream error bodies into the errno shape.
    pub rewrite_errors: bool,
    pub auth: AuthPolicy,
    pub quota: Option<RouteQuota>,
    pub backoff_scope: BackoffScope,
    /// Transparent refresh on this route (`None` = off).
    pub refresh: Option<RouteRefresh>,
}

#[derive(Debug, Clone)]
pub struct DeprecatedVersion {
    pub version: String,
    /// Sent as `Deprecation: @<unix seconds>` (RFC 9745).
    pub deprecation: SystemTime,
    /// Sent as `Sunset: <HTTP-date>` (RFC 8594); after it the version answers 410.
    pub sunset: Option<SystemTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthPolicy {
    /// No check; the caller's `Authorization` goes upstream unchanged.
    None,
    /// Replace the caller's credentials with a fresh HS256 JWT per request (AMO's API).
    AmoJwt {
        /// Index into `Config::amo_credentials` used when the caller selects none.
        credential: Option<usize>,
        /// Callers may pick a credential with `X-FxA-Amo-Credential` (where the credential allows).
        header_selection: bool,
    },
    /// Introspect `Authorization: Bearer <token>` at the OAuth server and enforce FxA scopes.
    Bearer(Box<BearerPolicy>),
    /// Verify the caller's `Authorization: JWT <token>` and pass the issuer upstream.
    AmoJwtVerify {
        /// Indices into `Config::amo_issuers` accepted on this route.
        issuers: Vec<usize>,
    },
    /// Front the RP's webhook: verify FxA's Security Event Tokens, deliver each once, and
    /// drop the cached tokens of the users they name.
    SecurityEvents,
}

#[derive(Debug, Clone)]
pub struct Limits {
    /// Request head size (431 above it). hyper's floor is 8 KiB.
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// Request body size (413 above it).
    pub max_body_bytes: u64,
    /// Slowloris guard: every request head of a connection must arrive within this from its
    /// first byte (408).
    pub header_read_timeout: Duration,
    /// A request body that makes no progress for this long is refused (408).
    pub body_read_timeout: Duration,
    /// A client that takes nothing of a response for this long loses its connection (HTTP/1.1)
    /// or stream (HTTP/2).
    pub send_timeout: Duration,
    /// Bytes written to a client connection that the kernel may hold unsent
    /// (`TCP_NOTSENT_LOWAT`): past it, writes wait until the client takes some.
    pub max_unsent_bytes: u32,
    /// Keep-alive connections with no traffic are closed after this.
    pub idle_timeout: Duration,
    /// TLS handshake must finish within this.
    pub tls_handshake_timeout: Duration,
    /// Client connections open at once, across all listeners.
    pub max_connections: usize,
    /// Client connections one peer address may have open at once (never above
    /// `max_connections`).
    pub max_connections_per_peer: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
    /// Upstream error bodies are read up to this size for rewriting.
    pub max_error_body_bytes: usize,
}

/// An IPv4 or IPv6 network in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (canonical(self.addr), ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let bits = u32::from(self.prefix_len.min(32));
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let bits = u32::from(self.prefix_len.min(128));
                let mask = if bits == 0 {
                    0
                } else {
                    u128::MAX << (128 - bits)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A secret value read from an environment variable or a file. `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Secret(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}
