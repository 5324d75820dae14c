//! The validated `[jwt]` and `[security_events]` sections.

use std::time::Duration;

/// `[jwt]`: FxA's JWK set and local verification of JWT access tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// Verify JWT access tokens on bearer routes locally.
    pub local_verification: bool,
    /// Index into `Config::upstreams` of the OAuth server serving the JWK set (`None`: no
    /// OAuth upstream configured, so no JWK set).
    pub oauth_upstream: Option<usize>,
    pub jwks_path: String,
    /// An unknown `kid` triggers at most one JWK set fetch per this interval.
    pub jwks_refetch_interval: Duration,
    /// Exact `iss` of accepted access tokens.
    pub issuer: String,
    /// `aud` must contain this when set.
    pub audience: Option<String>,
    /// Long-lived JWTs are introspected again at most this often.
    pub revocation_window: Duration,
    pub cache_size: u64,
}

/// `[security_events]`: the RP whose webhook receives FxA's Security Event Tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEventsConfig {
    /// The RP's OAuth client id (the SETs' `aud`).
    pub client_id: String,
    /// Exact `iss` of accepted SETs.
    pub issuer: String,
    /// Allowed clock skew for `iat` in the future.
    pub leeway: Duration,
    /// Oldest `iat` accepted (and how long a delivered `jti` is remembered).
    pub max_age: Duration,
    pub jti_cache_size: u64,
    pub revoke_on_profile_change: bool,
    pub revoke_on_subscription_change: bool,
    /// How long a user's revocation is kept.
    pub remember: Duration,
    /// Most users with a revocation kept at once.
    pub remember_size: u64,
}
