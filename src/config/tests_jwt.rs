//! `[jwt]`, `[security_events]` and the `security-events` auth policy.

use std::time::Duration;

use super::tests::{BASE, errors, parse};
use super::*;

/// BASE plus an OAuth upstream named `oauth` and `extra`.
fn with(extra: &str) -> String {
    format!(
        "{BASE}\n[[upstreams]]\nname = \"oauth\"\nurl = \"https://oauth.accounts.firefox.com\"\n\n{extra}\n"
    )
}

const WEBHOOK: &str = r#"
[[routes]]
name = "webhook"
path_prefix = "/events"
upstream = "profile"
auth = "security-events"
"#;

#[test]
fn jwt_defaults_follow_bearer_and_fxa_production() {
    let c = parse(&with("[bearer]\noauth_upstream = \"oauth\"")).unwrap();
    let j = c.jwt;
    assert!(j.local_verification);
    assert_eq!(j.oauth_upstream, Some(1));
    assert_eq!(j.jwks_path, "/v1/jwks");
    assert_eq!(j.jwks_refetch_interval, Duration::from_secs(30));
    assert_eq!(j.issuer, "https://accounts.firefox.com");
    assert_eq!(j.audience, None);
    assert_eq!(j.revocation_window, Duration::from_secs(300));
    assert!(c.security_events.is_none());
    // No OAuth upstream anywhere: no JWK set.
    assert_eq!(parse(BASE).unwrap().jwt.oauth_upstream, None);
}

#[test]
fn every_jwt_problem_is_reported_at_once() {
    let src = with(
        r#"[jwt]
oauth_upstream = "oauht"
jwks_path = "v1/jwks"
issuer = "accounts.firefox.com"
audience = ""
revocation_window = "0s"
jwks_refetch_interval = "0s"
cache_size = 0
local = true"#,
    );
    let all = errors(&src).join("\n");
    for key in [
        "jwt.oauth_upstream: unknown upstream \"oauht\"",
        "jwt.jwks_path: must start with",
        "jwt.issuer:",
        "jwt.audience: must not be empty",
        "jwt.revocation_window: must be greater than 0",
        "jwt.jwks_refetch_interval: must be greater than 0",
        "jwt.cache_size: must be at least 1",
        "jwt.local: unknown field",
    ] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
}

#[test]
fn a_security_events_route_needs_its_section_and_an_oauth_upstream() {
    let all = errors(&format!("{BASE}{WEBHOOK}")).join("\n");
    assert!(
        all.contains("security_events: a route uses auth policy \"security-events\""),
        "{all}"
    );
    let all = errors(&format!(
        "{BASE}{WEBHOOK}\n[security_events]\nclient_id = \"5882386c6d801776\""
    ))
    .join("\n");
    assert!(
        all.contains("name its upstream in [jwt] oauth_upstream"),
        "{all}"
    );
    let c = parse(&with(&format!(
        "{WEBHOOK}\n[jwt]\noauth_upstream = \"oauth\"\n[security_events]\nclient_id = \"5882386c6d801776\""
    )))
    .unwrap();
    let e = c.security_events.unwrap();
    assert_eq!(e.issuer, "https://accounts.firefox.com/");
    assert_eq!(e.leeway, Duration::from_secs(60));
    assert_eq!(e.max_age, Duration::from_secs(3600));
    assert_eq!(e.remember, Duration::from_secs(24 * 3600));
    assert!(!e.revoke_on_profile_change && !e.revoke_on_subscription_change);
    assert_eq!(c.routes[1].auth, AuthPolicy::SecurityEvents);
}

#[test]
fn security_events_limits_are_checked() {
    let src = with(&format!(
        r#"{WEBHOOK}
[jwt]
oauth_upstream = "oauth"
[security_events]
client_id = "has space"
issuer = "accounts"
leeway = "10m"
max_age = "30d"
jti_cache_size = 0
remember = "1h"
remember_size = 0"#
    ));
    let all = errors(&src).join("\n");
    for key in [
        "security_events.client_id:",
        "security_events.issuer:",
        "security_events.leeway: must be at most",
        "security_events.max_age: must be between",
        "security_events.jti_cache_size: must be at least 1",
        "security_events.remember: must be at least \"6h\"",
        "security_events.remember_size: must be at least 1",
    ] {
        assert!(all.contains(key), "{key} missing from:\n{all}");
    }
    let missing = errors(&with(&format!(
        "{WEBHOOK}\n[jwt]\noauth_upstream = \"oauth\"\n[security_events]"
    )))
    .join("\n");
    assert!(missing.contains("missing field `client_id`"), "{missing}");
}

#[test]
fn a_security_events_route_takes_no_bearer_options_and_no_refresh() {
    let src = with(
        r#"[jwt]
oauth_upstream = "oauth"
[security_events]
client_id = "5882386c6d801776"
[[routes]]
name = "webhook"
path_prefix = "/events"
upstream = "profile"
auth = { policy = "security-events", scopes = ["profile"] }
[[routes]]
name = "webhook2"
path_prefix = "/events2"
upstream = "profile"
auth = "security-events"
refresh = true
[refresh]
client_id = "5882386c6d801776""#,
    );
    let all = errors(&src).join("\n");
    assert!(
        all.contains("routes[1].auth.scopes: not an option of auth policy \"security-events\""),
        "{all}"
    );
    assert!(
        all.contains("routes[2].refresh: refresh works on routes"),
        "{all}"
    );
}
