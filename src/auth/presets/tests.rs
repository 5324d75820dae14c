use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::auth::scope::{Scope, ScopeSet};

use Requirement::{AnyOf, AnyValidToken, Forbidden, Public};

const AVATAR_ID: &str = "0123456789abcdef0123456789ABCDEF";

fn req(preset: Preset, method: &str, path: &str) -> Requirement {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    requirement(preset, &method, path)
}

fn profile(method: &str, path: &str) -> Requirement {
    req(Preset::Profile, method, path)
}

fn granted(scopes: &str) -> ScopeSet {
    ScopeSet::parse(scopes).unwrap()
}

// === profile ===

#[test]
fn profile_endpoints_require_their_scopes() {
    let avatar_by_id = format!("/v1/avatar/{AVATAR_ID}");
    let rows: [(&str, &str, Requirement); 14] = [
        ("GET", "/v1/profile", AnyValidToken),
        ("GET", "/v1/email", AnyOf(&["profile:email", "email"])),
        (
            "GET",
            "/v1/subscriptions",
            AnyOf(&["profile:subscriptions", "profile:email"]),
        ),
        ("GET", "/v1/uid", AnyOf(&["profile:uid"])),
        ("GET", "/v1/avatar", AnyOf(&["profile:avatar"])),
        (
            "POST",
            "/v1/avatar/upload",
            AnyOf(&["profile:avatar:write"]),
        ),
        ("DELETE", "/v1/avatar", AnyOf(&["profile:avatar:write"])),
        ("DELETE", &avatar_by_id, AnyOf(&["profile:avatar:write"])),
        ("GET", "/v1/display_name", AnyOf(&["profile:display_name"])),
        (
            "POST",
            "/v1/display_name",
            AnyOf(&["profile:display_name:write"]),
        ),
        (
            "GET",
            "/v1/ecosystem_anon_id",
            AnyOf(&["profile:ecosystem_anon_id"]),
        ),
        (
            "POST",
            "/v1/ecosystem_anon_id",
            AnyOf(&["profile:ecosystem_anon_id:write"]),
        ),
        ("GET", "/v1/avatar/a", Public),
        ("HEAD", "/v1/email", AnyOf(&["profile:email", "email"])),
    ];
    for (method, path, expected) in rows {
        assert_eq!(profile(method, path), expected, "{method} {path}");
    }
}

#[test]
fn profile_method_mismatches_are_forbidden() {
    let rows = [
        ("POST", "/v1/profile"),
        ("DELETE", "/v1/email"),
        ("PUT", "/v1/display_name"),
        ("PATCH", "/v1/avatar"),
        ("POST", "/v1/avatar"),
        ("GET", "/v1/avatar/upload"),
        ("DELETE", "/v1/avatar/upload"),
        ("DELETE", "/v1/avatar/a"),
        ("OPTIONS", "/v1/profile"),
        ("TRACE", "/v1/profile"),
        ("POST", "/v1/uid"),
    ];
    for (method, path) in rows {
        assert_eq!(profile(method, path), Forbidden, "{method} {path}");
    }
}

#[test]
fn profile_internal_and_unknown_endpoints_are_forbidden() {
    let rows = [
        ("GET", "/v1/_core_profile"),
        ("DELETE", "/v1/cache/0123456789abcdef0123456789abcdef"),
        ("GET", "/v1/cache/x"),
        ("GET", "/__heartbeat__"),
        ("GET", "/__version__"),
        ("GET", "/"),
        ("GET", ""),
        ("GET", "/v2/profile"),
        ("GET", "/v1/nope"),
        ("GET", "v1/profile"),
    ];
    for (method, path) in rows {
        assert_eq!(profile(method, path), Forbidden, "{method} {path}");
    }
}

#[test]
fn trailing_slashes_extra_and_empty_segments_are_forbidden() {
    for path in [
        "/v1/email/",
        "/v1/email/x",
        "/v1//email",
        "//v1/email",
        "/v1/email/x/y/z",
        "/V1/email",
        "/v1/Email",
        "/v1/avatar/upload/",
        "/v1/avatar/",
    ] {
        assert_eq!(profile("GET", path), Forbidden, "GET {path}");
        assert_eq!(profile("POST", path), Forbidden, "POST {path}");
        assert_eq!(profile("DELETE", path), Forbidden, "DELETE {path}");
    }
}

#[test]
fn the_query_string_is_ignored() {
    assert_eq!(profile("GET", "/v1/email?x=/v1/profile"), AnyOf(EMAIL));
    assert_eq!(profile("GET", "/v1/email/?x"), Forbidden);
}

#[test]
fn avatar_delete_ids_must_be_32_hex() {
    for id in [
        "0123456789abcdef0123456789abcde",
        "0123456789abcdef0123456789abcdef0",
        "0123456789abcdef0123456789abcdeg",
        "",
    ] {
        assert_eq!(
            profile("DELETE", &format!("/v1/avatar/{id}")),
            Forbidden,
            "{id:?}"
        );
    }
}

#[test]
fn monogram_avatars_are_public_only_for_one_character() {
    for letter in [
        "a",
        "Z",
        "7",
        "+",
        "_",
        "%C3%A9",
        "%e2%82%ac",
        "%F0%9F%98%80",
    ] {
        assert_eq!(
            profile("GET", &format!("/v1/avatar/{letter}")),
            Public,
            "{letter}"
        );
        assert_eq!(
            profile("HEAD", &format!("/v1/avatar/{letter}")),
            Public,
            "{letter}"
        );
    }
    for segment in [
        "ab",
        ".",
        "..",
        "%2E",
        "%2e%2e",
        "%2F",
        "%41",
        "%C2%80",
        "%C3",
        "%C3%A9%C3%A9",
        "%ZZ",
        "%",
        "%%41",
        "%+f",
        AVATAR_ID,
    ] {
        let path = format!("/v1/avatar/{segment}");
        assert_eq!(profile("GET", &path), Forbidden, "{segment}");
    }
}

// === token server ===

#[test]
fn token_server_requires_oldsync_for_sync_1_5_only() {
    let ts = |m: &str, p: &str| req(Preset::TokenServer, m, p);
    assert_eq!(ts("GET", "/1.0/sync/1.5"), AnyOf(&[OLDSYNC_SCOPE]));
    assert_eq!(ts("HEAD", "/1.0/sync/1.5"), AnyOf(&[OLDSYNC_SCOPE]));
    assert_eq!(
        ts("GET", "/1.0/sync/1.5?duration=300"),
        AnyOf(&[OLDSYNC_SCOPE])
    );
    for (method, path) in [
        ("POST", "/1.0/sync/1.5"),
        ("DELETE", "/1.0/sync/1.5"),
        ("GET", "/1.0/sync/1.5/"),
        ("GET", "/1.0/sync/1.5/x"),
        ("GET", "/1.0/sync/1.1"),
        ("GET", "/1.0/aitc/1.0"),
        ("GET", "/1.0/sync"),
        ("GET", "/1.0"),
        ("GET", "/v1/profile"),
        ("GET", "/__heartbeat__"),
    ] {
        assert_eq!(ts(method, path), Forbidden, "{method} {path}");
    }
}

// === OAuth ===

#[test]
fn oauth_lists_exactly_the_rp_endpoints_as_public() {
    let rows = [
        ("GET", "/v1/authorization"),
        ("POST", "/v1/authorization"),
        ("POST", "/v1/authorized-clients"),
        ("POST", "/v1/authorized-clients/destroy"),
        ("GET", "/v1/client/dcdb5ae7add825d2"),
        ("POST", "/v1/destroy"),
        ("POST", "/v1/introspect"),
        ("GET", "/v1/jwks"),
        ("HEAD", "/v1/jwks"),
        ("POST", "/v1/key-data"),
        ("POST", "/v1/token"),
        ("POST", "/v1/verify"),
    ];
    for (method, path) in rows {
        assert_eq!(req(Preset::OAuth, method, path), Public, "{method} {path}");
    }
}

#[test]
fn oauth_everything_else_is_forbidden() {
    let rows = [
        ("GET", "/v1/token"),
        ("GET", "/v1/verify"),
        ("POST", "/v1/jwks"),
        ("DELETE", "/v1/authorization"),
        ("GET", "/v1/authorized-clients"),
        ("POST", "/v1/client/dcdb5ae7add825d2"),
        ("GET", "/v1/client/dcdb5ae7add825d"),
        ("GET", "/v1/client/not-a-client-id!"),
        ("GET", "/v1/client"),
        ("GET", "/v1/client-tokens"),
        ("DELETE", "/v1/client-tokens/dcdb5ae7add825d2"),
        ("POST", "/v1/oauth/token"),
        ("POST", "/v1/account/login"),
        ("POST", "/v1/token/"),
        ("POST", "/v1/authorized-clients/destroy/x"),
        ("GET", "/.well-known/openid-configuration"),
        ("OPTIONS", "/v1/token"),
    ];
    for (method, path) in rows {
        assert_eq!(
            req(Preset::OAuth, method, path),
            Forbidden,
            "{method} {path}"
        );
    }
}

// === requirements and scopes ===

#[test]
fn every_preset_scope_is_a_valid_scope() {
    for scopes in [
        EMAIL,
        SUBSCRIPTIONS,
        UID,
        AVATAR,
        AVATAR_WRITE,
        DISPLAY_NAME,
        DISPLAY_NAME_WRITE,
        ECOSYSTEM_ANON_ID,
        ECOSYSTEM_ANON_ID_WRITE,
        OLDSYNC,
    ] {
        for scope in scopes {
            assert!(Scope::parse(scope).is_ok(), "{scope}");
        }
    }
}

#[test]
fn requirements_are_checked_with_implication() {
    let email = profile("GET", "/v1/email");
    assert!(email.is_satisfied_by(&granted("profile")));
    assert!(email.is_satisfied_by(&granted("email")));
    assert!(email.is_satisfied_by(&granted("profile:email:write")));
    assert!(!email.is_satisfied_by(&granted("profile:uid openid")));

    let subscriptions = profile("GET", "/v1/subscriptions");
    assert!(subscriptions.is_satisfied_by(&granted("profile:subscriptions")));
    assert!(subscriptions.is_satisfied_by(&granted("profile:email")));
    assert!(!subscriptions.is_satisfied_by(&granted("email")));

    let write_name = profile("POST", "/v1/display_name");
    assert!(write_name.is_satisfied_by(&granted("profile:write")));
    assert!(!write_name.is_satisfied_by(&granted("profile")));

    let sync = req(Preset::TokenServer, "GET", "/1.0/sync/1.5");
    assert!(sync.is_satisfied_by(&granted(OLDSYNC_SCOPE)));
    assert!(!sync.is_satisfied_by(&granted("https://identity.mozilla.com/apps/oldsync#read")));
    assert!(!sync.is_satisfied_by(&granted("profile:write")));

    assert!(AnyValidToken.is_satisfied_by(&ScopeSet::default()));
    assert!(!Forbidden.is_satisfied_by(&granted("profile:write")));
}

#[test]
fn only_token_requirements_need_a_token() {
    assert!(!Public.needs_token());
    assert!(!Forbidden.needs_token());
    assert!(AnyValidToken.needs_token());
    assert!(AnyOf(EMAIL).needs_token());
    assert_eq!(AnyOf(EMAIL).scopes(), EMAIL);
    assert!(Public.scopes().is_empty());
}

#[test]
fn cors_preflight_needs_options_and_the_request_method_header() {
    let mut headers = HeaderMap::new();
    assert!(!is_cors_preflight(&Method::OPTIONS, &headers));
    headers.insert(
        ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_static("GET"),
    );
    assert!(is_cors_preflight(&Method::OPTIONS, &headers));
    assert!(!is_cors_preflight(&Method::GET, &headers));
}

#[test]
fn presets_deserialize_from_their_config_names() {
    for preset in [Preset::Profile, Preset::TokenServer, Preset::OAuth] {
        let parsed: Preset = serde_json::from_str(&format!("\"{}\"", preset.as_str())).unwrap();
        assert_eq!(parsed, preset);
    }
    assert!(serde_json::from_str::<Preset>("\"o-auth\"").is_err());
}
