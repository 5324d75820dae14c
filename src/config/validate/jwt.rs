//! `[jwt]` (FxA's JWK set, local verification of JWT access tokens) and `[security_events]`
//! (the RP whose webhook `security-events` routes front).

use std::time::Duration;

use crate::config::Problems;
use crate::config::model_jwt::{JwtConfig, SecurityEventsConfig};
use crate::config::raw_jwt::{RawJwt, RawSecurityEvents};

/// FxA stores no JWT living up to six hours: a revocation must outlive them to reach them.
const SHORTEST_REMEMBER: Duration = Duration::from_secs(6 * 3600);
const MAX_LEEWAY: Duration = Duration::from_secs(300);
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

pub fn settings(
    raw: &RawJwt,
    bearer_upstream: Option<&str>,
    upstream_names: &[Option<String>],
    p: &mut Problems,
) -> JwtConfig {
    let name = raw.oauth_upstream.as_deref().or(bearer_upstream);
    let oauth_upstream = name.and_then(|name| {
        let found = upstream_names
            .iter()
            .position(|n| n.as_deref() == Some(name));
        if found.is_none()
            && raw.oauth_upstream.is_some()
            && upstream_names.iter().all(Option::is_some)
        {
            p.at("jwt.oauth_upstream", format!("unknown upstream {name:?}"));
        }
        found
    });
    if !raw.jwks_path.starts_with('/') {
        p.at("jwt.jwks_path", "must start with \"/\"");
    }
    check_issuer(&raw.issuer, "jwt.issuer", p);
    if raw.audience.as_deref().is_some_and(|a| a.trim().is_empty()) {
        p.at(
            "jwt.audience",
            "must not be empty (omit it to skip the aud check)",
        );
    }
    for (key, d) in [
        ("jwks_refetch_interval", &raw.jwks_refetch_interval),
        ("revocation_window", &raw.revocation_window),
    ] {
        if d.0.is_zero() {
            p.at(format!("jwt.{key}"), "must be greater than 0");
        }
    }
    if raw.cache_size == 0 {
        p.at("jwt.cache_size", "must be at least 1");
    }
    JwtConfig {
        local_verification: raw.local_verification,
        oauth_upstream,
        jwks_path: raw.jwks_path.clone(),
        jwks_refetch_interval: raw.jwks_refetch_interval.0,
        issuer: raw.issuer.clone(),
        audience: raw.audience.clone(),
        revocation_window: raw.revocation_window.0,
        cache_size: raw.cache_size,
    }
}

pub fn security_events(
    raw: Option<&RawSecurityEvents>,
    needed: bool,
    jwks_upstream: Option<usize>,
    p: &mut Problems,
) -> Option<SecurityEventsConfig> {
    let Some(raw) = raw else {
        if needed && !p.reported("security_events") {
            p.at(
                "security_events",
                "a route uses auth policy \"security-events\": add a [security_events] section with the RP's client_id",
            );
        }
        return None;
    };
    if needed && jwks_upstream.is_none() && !p.reported("jwt.oauth_upstream") {
        p.at(
            "security_events",
            "security events are verified with the OAuth server's keys: name its upstream in [jwt] oauth_upstream or [bearer] oauth_upstream",
        );
    }
    let client_id = raw.client_id.as_deref();
    if let Some(id) = client_id
        && (id.is_empty() || id.len() > 256 || id.bytes().any(|b| !b.is_ascii_graphic()))
    {
        p.at(
            "security_events.client_id",
            "must be the RP's OAuth client id (printable, no spaces)",
        );
    }
    check_issuer(&raw.issuer, "security_events.issuer", p);
    if raw.leeway.0 > MAX_LEEWAY {
        p.at("security_events.leeway", "must be at most \"5m\"");
    }
    if raw.max_age.0.is_zero() || raw.max_age.0 > MAX_AGE {
        p.at(
            "security_events.max_age",
            "must be between \"1s\" and \"7d\"",
        );
    }
    if raw.jti_cache_size == 0 {
        p.at("security_events.jti_cache_size", "must be at least 1");
    }
    if raw.remember.0 < SHORTEST_REMEMBER {
        p.at(
            "security_events.remember",
            "must be at least \"6h\": FxA's short-lived JWTs (up to 6 hours) can only be revoked by it",
        );
    }
    if raw.remember_size == 0 {
        p.at("security_events.remember_size", "must be at least 1");
    }
    Some(SecurityEventsConfig {
        client_id: client_id?.to_owned(),
        issuer: raw.issuer.clone(),
        leeway: raw.leeway.0,
        max_age: raw.max_age.0,
        jti_cache_size: raw.jti_cache_size,
        revoke_on_profile_change: raw.revoke_on_profile_change,
        revoke_on_subscription_change: raw.revoke_on_subscription_change,
        remember: raw.remember.0,
        remember_size: raw.remember_size,
    })
}

fn check_issuer(issuer: &str, key: &str, p: &mut Problems) {
    let ok = (issuer.starts_with("https://") || issuer.starts_with("http://"))
        && !issuer
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if !ok {
        p.at(
            key,
            format!("{issuer:?} is not an issuer URL (e.g. \"https://accounts.firefox.com\")"),
        );
    }
}
