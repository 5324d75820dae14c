//! `[jwt]` and `[security_events]` as written (see `raw` for how sections are read).

use std::time::Duration;

use super::raw::DurationValue;
use super::read::{FromTable, Table};

fn secs(n: u64) -> DurationValue {
    DurationValue(Duration::from_secs(n))
}

/// `[jwt]`: FxA's JWK set, and local verification of JWT access tokens on bearer routes.
#[derive(Debug)]
pub struct RawJwt {
    /// Verify JWT access tokens locally (default true); off: introspection as for any token.
    pub local_verification: bool,
    /// Default: `[bearer] oauth_upstream`.
    pub oauth_upstream: Option<String>,
    pub jwks_path: String,
    pub jwks_refetch_interval: DurationValue,
    pub issuer: String,
    pub audience: Option<String>,
    pub revocation_window: DurationValue,
    pub cache_size: u64,
}

impl FromTable for RawJwt {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawJwt {
            local_verification: t.or("local_verification", true),
            oauth_upstream: t.get("oauth_upstream"),
            jwks_path: t.or("jwks_path", "/v1/jwks".to_owned()),
            jwks_refetch_interval: t.or("jwks_refetch_interval", secs(30)),
            issuer: t.or("issuer", "https://accounts.firefox.com".to_owned()),
            audience: t.get("audience"),
            revocation_window: t.or("revocation_window", secs(300)),
            cache_size: t.or("cache_size", 100_000),
        }
    }
}

/// `[security_events]`: the RP whose webhook `security-events` routes front.
#[derive(Debug)]
pub struct RawSecurityEvents {
    pub client_id: Option<String>,
    pub issuer: String,
    pub leeway: DurationValue,
    pub max_age: DurationValue,
    pub jti_cache_size: u64,
    pub revoke_on_profile_change: bool,
    pub revoke_on_subscription_change: bool,
    pub remember: DurationValue,
    pub remember_size: u64,
}

impl FromTable for RawSecurityEvents {
    fn from_table(t: &mut Table<'_, '_>) -> Self {
        RawSecurityEvents {
            client_id: t.required("client_id"),
            issuer: t.or("issuer", "https://accounts.firefox.com/".to_owned()),
            leeway: t.or("leeway", secs(60)),
            max_age: t.or("max_age", secs(3600)),
            jti_cache_size: t.or("jti_cache_size", 100_000),
            revoke_on_profile_change: t.or("revoke_on_profile_change", false),
            revoke_on_subscription_change: t.or("revoke_on_subscription_change", false),
            remember: t.or("remember", secs(24 * 3600)),
            remember_size: t.or("remember_size", 100_000),
        }
    }
}
