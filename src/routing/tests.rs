use std::time::{Duration, SystemTime};

use http::Method;

use super::*;
use crate::config::{AuthPolicy, DeprecatedVersion, RouteConfig};

fn route(name: &str, host: Option<&str>, prefix: &str) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        host: host.map(Into::into),
        path_prefix: prefix.into(),
        upstream: 0,
        strip_prefix: true,
        methods: None,
        versions: vec![],
        deprecated_versions: vec![],
        rewrite_errors: true,
        auth: AuthPolicy::None,
        quota: None,
        backoff_scope: Default::default(),
        refresh: None,
    }
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn name<'a>(m: &RouteMatch<'a>) -> &'a str {
    &m.route.config.name
}

#[test]
fn longest_prefix_wins_on_segment_boundaries() {
    let router = Router::new(&[
        route("root", None, "/"),
        route("p", None, "/profile"),
        route("pv", None, "/profile/v1"),
    ]);
    let pick = |p: &str| name(&router.select(None, p, &Method::GET, at(0)).unwrap()).to_owned();
    assert_eq!(pick("/profile/v1/email"), "pv");
    assert_eq!(pick("/profile/v2"), "p");
    assert_eq!(pick("/profile"), "p");
    assert_eq!(pick("/profilex"), "root");
    assert_eq!(pick("/"), "root");
}

#[test]
fn no_route_is_route_not_found() {
    let router = Router::new(&[route("p", None, "/profile")]);
    let err = router
        .select(None, "/oauth/v1/token", &Method::GET, at(0))
        .unwrap_err();
    assert!(matches!(err, GatewayError::RouteNotFound));
}

#[test]
fn host_routes_take_precedence_and_match_case_insensitively() {
    let router = Router::new(&[
        route("any", None, "/api"),
        route("h", Some("api.example"), "/api"),
    ]);
    assert_eq!(
        name(
            &router
                .select(Some("API.example"), "/api/x", &Method::GET, at(0))
                .unwrap()
        ),
        "h"
    );
    assert_eq!(
        name(
            &router
                .select(Some("other"), "/api/x", &Method::GET, at(0))
                .unwrap()
        ),
        "any"
    );
    assert_eq!(
        name(&router.select(None, "/api/x", &Method::GET, at(0)).unwrap()),
        "any"
    );
}

#[test]
fn version_is_the_segment_after_the_prefix() {
    let mut r = route("t", None, "/token");
    r.versions = vec!["1.0".into()];
    let router = Router::new(&[r]);
    let m = router
        .select(None, "/token/1.0/sync/1.5", &Method::GET, at(0))
        .unwrap();
    assert_eq!(m.rest_start, "/token".len());
    assert!(m.deprecation.is_none());
    for bad in ["/token/2.0/sync", "/token", "/token/", "/token/sync/1.0"] {
        let err = router.select(None, bad, &Method::GET, at(0)).unwrap_err();
        assert!(
            matches!(err, GatewayError::VersionNotSupported { .. }),
            "{bad}"
        );
    }
}

#[test]
fn deprecated_versions_work_until_sunset_then_are_gone() {
    let mut r = route("amo", None, "/amo/api");
    r.versions = vec!["v5".into()];
    r.deprecated_versions = vec![DeprecatedVersion {
        version: "v3".into(),
        deprecation: at(1_612_137_600),
        sunset: Some(at(1_640_908_800)),
    }];
    let router = Router::new(&[r]);
    let m = router
        .select(None, "/amo/api/v3/addons/", &Method::GET, at(1_640_908_799))
        .unwrap();
    let (dep, sunset) = m.deprecation.expect("deprecation headers");
    assert_eq!(dep, "@1612137600");
    assert_eq!(sunset.unwrap(), "Fri, 31 Dec 2021 00:00:00 GMT");
    let err = router
        .select(None, "/amo/api/v3/addons/", &Method::GET, at(1_640_908_800))
        .unwrap_err();
    assert!(matches!(err, GatewayError::VersionGone { .. }));
    assert!(
        router
            .select(None, "/amo/api/v5/addons/", &Method::GET, at(1_640_908_800))
            .unwrap()
            .deprecation
            .is_none()
    );
}

#[test]
fn disallowed_method_lists_the_allowed_ones() {
    let mut r = route("o", None, "/oauth");
    r.methods = Some(vec![Method::GET, Method::POST]);
    let router = Router::new(&[r]);
    assert!(
        router
            .select(None, "/oauth/v1/jwks", &Method::HEAD, at(0))
            .is_ok()
    );
    match router
        .select(None, "/oauth/v1/jwks", &Method::DELETE, at(0))
        .unwrap_err()
    {
        GatewayError::MethodNotAllowed { allow } => assert_eq!(allow, "GET, POST"),
        other => panic!("unexpected {other:?}"),
    }
}
