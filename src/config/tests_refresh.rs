//! `[refresh]`, the routes' `refresh`/`refresh_scope` and the listeners'
//! `accept_refresh_token`.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::tests::BASE;
use super::*;

const SECRET: &str = "a3c0c5cf3c2e1b47d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6";

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    let env = |name: &str| match name {
        "FXA_CLIENT_SECRET" => Some(OsString::from(SECRET)),
        "FXA_SHORT_SECRET" => Some(OsString::from("abc")),
        "AMO_SECRET" => Some(OsString::from(SECRET)),
        _ => None,
    };
    parse_with_env(
        src,
        Path::new("gateway.toml"),
        Path::new("/nonexistent"),
        &env,
    )
}

fn errors(src: &str) -> String {
    match parse(src) {
        Ok(_) => panic!("config was accepted:\n{src}"),
        Err(e) => e.to_string(),
    }
}

/// BASE with an OAuth upstream, the profile route refreshing, and `[refresh]` = `section`.
fn with(section: &str, route_extra: &str) -> String {
    let routes = BASE.replace(
        "upstream = \"profile\"\n",
        &format!("upstream = \"profile\"\n{route_extra}\n"),
    );
    format!(
        "{routes}\n[[upstreams]]\nname = \"oauth\"\nurl = \"https://oauth.accounts.firefox.com\"\n\n{section}\n"
    )
}

const CLIENT: &str = "[refresh]\noauth_upstream = \"oauth\"\nclient_id = \"5882386c6d801776\"\nclient_secret = { env = \"FXA_CLIENT_SECRET\" }";

#[test]
fn defaults_and_a_confidential_client() {
    let c = parse(&with(CLIENT, "refresh = true")).unwrap();
    let r = c.refresh.unwrap();
    assert_eq!(r.oauth_upstream, 1);
    assert_eq!(r.token_endpoint, TokenEndpoint::OAuth);
    assert_eq!(r.client_secret.unwrap().expose(), SECRET.as_bytes());
    assert_eq!(r.max_replay_body, 64 * 1024);
    assert_eq!(r.grace, Duration::from_secs(60));
    assert_eq!(r.skew, Duration::from_secs(30));
    assert_eq!(c.routes[0].refresh, Some(RouteRefresh { scope: None }));
    // A loopback listener takes refresh tokens unless told otherwise.
    assert!(c.listeners[0].accept_refresh_token);
}

#[test]
fn a_public_client_the_auth_server_route_and_a_narrowing_scope() {
    let section = "[refresh]\noauth_upstream = \"oauth\"\nclient_id = \"5882386c6d801776\"\ntoken_path = \"/v1/oauth/token\"";
    let c = parse(&with(
        section,
        "refresh = true\nrefresh_scope = \"profile:email  profile:uid\"",
    ))
    .unwrap();
    let r = c.refresh.unwrap();
    assert!(r.client_secret.is_none());
    assert_eq!(r.token_endpoint, TokenEndpoint::AuthServer);
    assert_eq!(
        c.routes[0].refresh.as_ref().unwrap().scope.as_deref(),
        Some("profile:email profile:uid")
    );
}

#[test]
fn the_oauth_upstream_defaults_to_the_bearer_one() {
    let section =
        "[bearer]\noauth_upstream = \"oauth\"\n[refresh]\nclient_id = \"5882386c6d801776\"";
    let c = parse(&with(section, "refresh = true")).unwrap();
    assert_eq!(c.refresh.unwrap().oauth_upstream, 1);
    let section = "[refresh]\nclient_id = \"5882386c6d801776\"";
    assert!(errors(&with(section, "refresh = true")).contains("refresh.oauth_upstream"));
}

#[test]
fn bad_values_are_reported_at_their_keys() {
    for (replace, by, expected) in [
        ("5882386c6d801776", "5882386C6D801776", "refresh.client_id"),
        ("5882386c6d801776", "abc", "refresh.client_id"),
        ("FXA_CLIENT_SECRET", "FXA_SHORT_SECRET", "64 hex characters"),
        ("FXA_CLIENT_SECRET", "FXA_UNSET", "refresh.client_secret"),
        (
            "oauth_upstream = \"oauth\"",
            "oauth_upstream = \"nope\"",
            "unknown upstream",
        ),
    ] {
        let e = errors(&with(&CLIENT.replace(replace, by), "refresh = true"));
        assert!(e.contains(expected), "{by}: {e}");
        assert!(!e.contains(SECRET));
    }
    for (extra, expected) in [
        ("token_path = \"/token\"", "refresh.token_path"),
        ("grace = \"0s\"", "refresh.grace"),
        ("max_replay_body = \"1GiB\"", "refresh.max_replay_body"),
        ("cache_size = 0", "refresh.cache_size"),
        ("client_secret_inline = \"x\"", "unknown field"),
    ] {
        let e = errors(&with(&format!("{CLIENT}\n{extra}"), "refresh = true"));
        assert!(e.contains(expected), "{extra}: {e}");
    }
}

#[test]
fn routes_refresh_only_where_it_makes_sense() {
    assert!(errors(&with("", "refresh = true")).contains("add a [refresh] section"));
    let e = errors(&with(CLIENT, "refresh_scope = \"profile\""));
    assert!(
        e.contains("refresh_scope: only takes effect with refresh = true"),
        "{e}"
    );
    let e = errors(&with(CLIENT, "refresh = true\nrefresh_scope = \"a\\\"b\""));
    assert!(e.contains("routes[0].refresh_scope"), "{e}");
    let amo = "auth = { policy = \"amo-jwt-verify\" }\nrefresh = true";
    let issuer = "[[amo_issuers]]\napi_key = \"user:1:2\"\nsecret = { env = \"AMO_SECRET\" }";
    let e = errors(&with(&format!("{CLIENT}\n{issuer}"), amo));
    assert!(e.contains("routes[0].refresh"), "{e}");
}

#[test]
fn only_loopback_listeners_take_refresh_tokens_by_default() {
    let edge = BASE.replace(
        "addr = \"127.0.0.1:8080\"",
        "addr = \"0.0.0.0:8080\"\nallow_plain_non_loopback = true",
    );
    let c = parse(&edge).unwrap();
    assert!(!c.listeners[0].accept_refresh_token);
    let opted_in = edge.replace(
        "allow_plain_non_loopback = true",
        "allow_plain_non_loopback = true\naccept_refresh_token = true",
    );
    assert!(parse(&opted_in).unwrap().listeners[0].accept_refresh_token);
    let opted_out = BASE.replace(
        "addr = \"127.0.0.1:8080\"",
        "addr = \"127.0.0.1:8080\"\naccept_refresh_token = false",
    );
    assert!(!parse(&opted_out).unwrap().listeners[0].accept_refresh_token);
}
