use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::*;

fn answer(status: u16, body: serde_json::Value) -> TokenAnswer {
    judge(
        StatusCode::from_u16(status).unwrap(),
        Some(body.to_string().as_bytes()),
    )
}

fn error(status: u16, errno: u16) -> TokenAnswer {
    answer(
        status,
        json!({"code": status, "errno": errno, "message": "x"}),
    )
}

#[test]
fn only_108_on_400_and_110_on_401_mean_reauthentication() {
    assert!(matches!(error(400, 108), TokenAnswer::Reauth));
    assert!(matches!(error(401, 110), TokenAnswer::Reauth));
    // The same numbers with other statuses mean something else in the other namespace.
    assert!(matches!(
        error(400, 110),
        TokenAnswer::Misconfigured { errno: Some(110) }
    ));
    assert!(matches!(error(401, 108), TokenAnswer::Misconfigured { .. }));
}

#[test]
fn the_gateways_own_mistakes_are_misconfiguration() {
    // OAuth namespace (/v1/token) and the auth-server numbers /v1/oauth/token maps them to.
    for errno in [101, 102, 109, 113, 114, 116, 121, 162, 171, 107, 163, 166] {
        let status = if errno == 113 { 415 } else { 400 };
        assert!(
            matches!(error(status, errno), TokenAnswer::Misconfigured { errno: Some(e) } if e == errno),
            "errno {errno}"
        );
    }
    assert!(matches!(
        judge(StatusCode::FORBIDDEN, Some(b"<html>")),
        TokenAnswer::Misconfigured { errno: None }
    ));
}

#[test]
fn outages_are_never_reauthentication() {
    for status in [429, 500, 502, 503, 504, 408] {
        assert!(
            matches!(error(status, 201), TokenAnswer::Unavailable),
            "{status}"
        );
    }
    // FxA's "client disabled" is a 503 errno 202.
    assert!(matches!(error(503, 202), TokenAnswer::Unavailable));
    assert!(matches!(
        judge(StatusCode::BAD_GATEWAY, None),
        TokenAnswer::Unavailable
    ));
}

#[test]
fn a_success_must_carry_a_usable_token() {
    let ok = answer(
        200,
        json!({"access_token": "ab12", "token_type": "bearer", "scope": "profile", "expires_in": 3600, "extra": 1}),
    );
    let TokenAnswer::Granted(new) = ok else {
        panic!("granted")
    };
    assert_eq!(new.access_token, "ab12");
    assert_eq!(new.expires_in, Duration::from_secs(3600));
    assert_eq!(new.scope, "profile");
    for broken in [
        json!({"token_type": "bearer", "expires_in": 3600}),
        json!({"access_token": "", "expires_in": 3600}),
        json!({"access_token": "a b", "expires_in": 3600}),
        json!({"access_token": "ab12"}),
        json!({"access_token": "ab12", "expires_in": 0}),
        json!({"access_token": "ab12", "expires_in": -5}),
        json!({"access_token": "ab12", "expires_in": "3600"}),
        json!({"access_token": "ab12", "expires_in": 3600, "token_type": "mac"}),
        json!("not an object"),
    ] {
        assert!(
            matches!(answer(200, broken.clone()), TokenAnswer::Unavailable),
            "{broken}"
        );
    }
    assert!(matches!(
        judge(StatusCode::OK, Some(b"{")),
        TokenAnswer::Unavailable
    ));
}

fn with_header(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(REFRESH_TOKEN_HEADER, HeaderValue::from_str(v).unwrap());
    }
    headers
}

#[test]
fn the_refresh_token_header_is_checked_where_it_is_used() {
    let good = "0123456789abcdef".repeat(4);
    let refused = |h: &HeaderMap, accepted: bool, wanted: bool| {
        caller_refresh_token(h, accepted, wanted)
            .err()
            .map(|e| e.parts().reason)
    };
    assert_eq!(
        caller_refresh_token(&with_header(&[&good]), true, true).unwrap(),
        Some(good.clone())
    );
    assert_eq!(
        caller_refresh_token(&HeaderMap::new(), false, true).unwrap(),
        None
    );
    // Not accepted on this listener: refused whatever the route.
    for wanted in [true, false] {
        assert_eq!(
            refused(&with_header(&[&good]), false, wanted),
            Some("refresh-token-not-accepted")
        );
    }
    // On a route without refresh it is only dropped.
    assert_eq!(
        caller_refresh_token(&with_header(&["junk"]), true, false).unwrap(),
        None
    );
    let upper = good.to_uppercase();
    assert!(caller_refresh_token(&with_header(&[&upper]), true, true).is_ok());
    for bad in [&good[..63], &format!("{good}0"), &good.replace('a', "g")] {
        assert_eq!(
            refused(&with_header(&[bad]), true, true),
            Some("refresh-token-malformed"),
            "{bad}"
        );
    }
    assert_eq!(
        refused(&with_header(&[&good, &good]), true, true),
        Some("refresh-token-malformed")
    );
}
