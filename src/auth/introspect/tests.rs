//! Pure parts of introspection: answer parsing, time units, TTLs, the breaker, the form body.
//! The network behaviour is in `tests/introspect.rs`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use serde_json::json;

use super::breaker::Breaker;
use super::cache::Cached;
use super::*;
use crate::auth::form_post::encode_into as form_encode_into;

const DAY: Duration = Duration::from_secs(86_400);

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn settings() -> IntrospectSettings {
    IntrospectSettings::default()
}

fn active(exp: Option<SystemTime>) -> TokenInfo {
    TokenInfo {
        active: true,
        sub: Some("0123456789abcdef0123456789abcdef".into()),
        client_id: Some("5882386c6d801776".into()),
        scope: "profile".into(),
        token_type: Some("access_token".into()),
        exp,
        iat: None,
    }
}

// --- exp/iat units ---

#[test]
fn fxa_milliseconds_are_read_as_milliseconds() {
    // The example in FxA's API docs.
    let t = epoch_time(&json!(1_566_535_888_243u64)).unwrap();
    assert_eq!(t, UNIX_EPOCH + Duration::from_millis(1_566_535_888_243));
}

#[test]
fn rfc7662_seconds_are_read_as_seconds() {
    let t = epoch_time(&json!(1_566_535_888u64)).unwrap();
    assert_eq!(t, at(1_566_535_888));
}

#[test]
fn fractional_values_keep_their_unit() {
    assert_eq!(
        epoch_time(&json!(1_566_535_888.5)).unwrap(),
        UNIX_EPOCH + Duration::from_millis(1_566_535_888_500)
    );
    assert_eq!(
        epoch_time(&json!(1_566_535_888_243.0)).unwrap(),
        UNIX_EPOCH + Duration::from_millis(1_566_535_888_243)
    );
}

#[test]
fn fxa_millisecond_exp_is_never_millennia_away() {
    let now = SystemTime::now();
    let exp_ms = (now + DAY).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let body = json!({"active": true, "exp": exp_ms}).to_string();
    let info = parse_answer(body.as_bytes()).unwrap();
    let exp = info.exp.unwrap();
    assert!(
        exp > now && exp <= now + DAY + Duration::from_secs(1),
        "{exp:?}"
    );
    // And the TTL is capped by max_ttl anyway.
    assert_eq!(entry_ttl(Some(&info), now, &settings()), settings().max_ttl);
}

#[test]
fn unusable_times_are_absent() {
    for v in [
        json!(-1),
        json!("1566535888"),
        json!(null),
        json!(true),
        json!(f64::MAX),
    ] {
        assert_eq!(epoch_time(&v), None, "{v}");
    }
    assert_eq!(epoch_time(&json!(0)), Some(UNIX_EPOCH));
}

proptest! {
    #[test]
    fn any_millisecond_timestamp_after_1973_is_milliseconds(ms in 100_000_000_001u64..10_000_000_000_000u64) {
        prop_assert_eq!(epoch_time(&json!(ms)), Some(UNIX_EPOCH + Duration::from_millis(ms)));
    }

    #[test]
    fn any_seconds_timestamp_before_5138_is_seconds(secs in 0u64..=100_000_000_000u64) {
        prop_assert_eq!(epoch_time(&json!(secs)), Some(at(secs)));
    }

    #[test]
    fn parse_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_answer(&body);
    }
}

// --- parsing answers ---

#[test]
fn parses_an_fxa_answer() {
    let body = json!({
        "active": true,
        "scope": "profile https://identity.mozilla.com/apps/oldsync",
        "client_id": "5882386c6d801776",
        "token_type": "access_token",
        "iat": 1_566_535_888_243u64,
        "exp": 1_566_622_288_243u64,
        "sub": "0123456789abcdef0123456789abcdef",
        "jti": "deadbeef",
        "fxa-lastUsedAt": 1_566_535_888_243u64,
    });
    let info = parse_answer(body.to_string().as_bytes()).unwrap();
    assert!(info.is_active_access_token());
    assert_eq!(
        info.scope,
        "profile https://identity.mozilla.com/apps/oldsync"
    );
    assert_eq!(info.client_id.as_deref(), Some("5882386c6d801776"));
    assert_eq!(
        info.sub.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(info.token_type.as_deref(), Some("access_token"));
    assert_eq!(
        info.iat,
        Some(UNIX_EPOCH + Duration::from_millis(1_566_535_888_243))
    );
    assert_eq!(
        info.exp,
        Some(UNIX_EPOCH + Duration::from_millis(1_566_622_288_243))
    );
}

#[test]
fn parses_an_rfc7662_answer_with_unknown_fields() {
    let body = json!({
        "active": true, "scope": "read write", "client_id": "l238j323ds-23ij4",
        "username": "jdoe", "token_type": "bearer", "exp": 1_419_356_238u64,
        "iat": 1_419_350_238u64, "nbf": 1, "sub": "Z5O3upPC88QrAjx00dis",
        "aud": "https://protected.example.net/resource", "iss": "https://server.example.com/",
        "extension_field": {"nested": [1, 2]},
    });
    let info = parse_answer(body.to_string().as_bytes()).unwrap();
    assert!(info.is_active_access_token());
    assert_eq!(info.exp, Some(at(1_419_356_238)));
    assert_eq!(info.iat, Some(at(1_419_350_238)));
    assert_eq!(info.scope, "read write");
}

#[test]
fn inactive_answer_carries_nothing() {
    let info = parse_answer(br#"{"active":false,"sub":"x","scope":"profile"}"#).unwrap();
    assert_eq!(info, TokenInfo::inactive());
    assert!(!info.is_active_access_token());
}

#[test]
fn refresh_token_is_returned_but_not_an_access_token() {
    let body =
        br#"{"active":true,"token_type":"refresh_token","scope":"profile","client_id":"abc"}"#;
    let info = parse_answer(body).unwrap();
    assert!(info.active);
    assert_eq!(info.token_type.as_deref(), Some("refresh_token"));
    assert!(!info.is_active_access_token());
}

#[test]
fn wrong_types_are_ignored_and_scope_arrays_joined() {
    let body =
        br#"{"active":true,"sub":42,"client_id":null,"scope":["profile","email",3],"exp":"soon"}"#;
    let info = parse_answer(body).unwrap();
    assert_eq!(info.sub, None);
    assert_eq!(info.client_id, None);
    assert_eq!(info.scope, "profile email");
    assert_eq!(info.exp, None);
    assert!(info.is_active_access_token());
}

#[test]
fn answers_without_boolean_active_are_malformed() {
    for body in [
        &b""[..],
        b"not json",
        b"[]",
        b"{}",
        br#"{"active":"true"}"#,
        br#"{"active":1}"#,
        b"<html>502</html>",
    ] {
        assert_eq!(parse_answer(body), Err(MalformedAnswer), "{body:?}");
    }
}

// --- TTL arithmetic ---

#[test]
fn active_ttl_runs_to_exp_when_sooner_than_max() {
    let now = at(1_700_000_000);
    let info = active(Some(now + Duration::from_secs(42)));
    assert_eq!(
        entry_ttl(Some(&info), now, &settings()),
        Duration::from_secs(42)
    );
}

#[test]
fn active_ttl_is_capped_at_max_ttl() {
    let now = at(1_700_000_000);
    assert_eq!(
        entry_ttl(Some(&active(Some(now + DAY))), now, &settings()),
        Duration::from_secs(300)
    );
    assert_eq!(
        entry_ttl(Some(&active(None)), now, &settings()),
        Duration::from_secs(300)
    );
}

#[test]
fn inactive_refused_and_already_expired_get_the_negative_ttl() {
    let now = at(1_700_000_000);
    let s = settings();
    assert_eq!(
        entry_ttl(Some(&TokenInfo::inactive()), now, &s),
        s.negative_ttl
    );
    assert_eq!(entry_ttl(None, now, &s), s.negative_ttl);
    assert_eq!(entry_ttl(Some(&active(Some(now))), now, &s), s.negative_ttl);
    assert_eq!(
        entry_ttl(Some(&active(Some(at(1)))), now, &s),
        s.negative_ttl
    );
}

#[test]
fn cached_entry_past_exp_is_served_inactive() {
    let now = at(1_700_000_000);
    let exp = now + Duration::from_secs(10);
    let cached = Cached::new(Some(Arc::new(active(Some(exp)))), now, &settings());
    assert!(cached.serve(now).unwrap().active);
    assert!(cached.is_fresh(exp - Duration::from_secs(1)));
    // Even if the entry were still considered fresh, the hit check says inactive.
    assert!(!cached.serve(exp).unwrap().active);
    assert!(!cached.serve(exp + DAY).unwrap().active);
    assert!(!cached.is_fresh(exp));
}

#[test]
fn cached_refusal_is_served_as_refused() {
    let now = at(1_700_000_000);
    let cached = Cached::new(None, now, &settings());
    assert_eq!(cached.serve(now), Err(IntrospectError::Refused));
    assert!(cached.is_fresh(now + Duration::from_secs(4)));
    assert!(!cached.is_fresh(now + Duration::from_secs(5)));
}

// --- breaker ---

#[test]
fn breaker_answers_while_open_then_lets_one_probe() {
    let breaker = Breaker::new(Duration::from_secs(1));
    let t0 = at(1_000);
    breaker.admit(t0).unwrap().fail(t0);
    assert!(breaker.admit(t0 + Duration::from_millis(999)).is_none());
    let probe = breaker.admit(t0 + Duration::from_secs(1)).unwrap();
    assert!(
        breaker.admit(t0 + Duration::from_secs(2)).is_none(),
        "one probe at a time"
    );
    probe.succeed();
    assert!(breaker.admit(t0 + Duration::from_secs(2)).is_some());
}

#[test]
fn failed_probe_reopens_and_dropped_probe_frees_the_slot() {
    let breaker = Breaker::new(Duration::from_secs(1));
    let t0 = at(1_000);
    breaker.admit(t0).unwrap().fail(t0);
    let t1 = t0 + Duration::from_secs(1);
    breaker.admit(t1).unwrap().fail(t1);
    assert!(breaker.admit(t1 + Duration::from_millis(500)).is_none());
    let t2 = t1 + Duration::from_secs(1);
    drop(breaker.admit(t2).unwrap());
    assert!(
        breaker.admit(t2).is_some(),
        "an unsettled probe does not block the next"
    );
}

#[test]
fn a_caller_refused_while_the_probe_is_out_is_told_the_open_time() {
    // Regression (tests/faults.rs oauth_server_answers_429): such callers got a 503 errno 104
    // without Retry-After.
    let breaker = Breaker::new(Duration::from_secs(2));
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    assert_eq!(breaker.wait(t0), None);
    breaker.admit(t0).unwrap().fail(t0);
    assert_eq!(
        breaker.wait(t0 + Duration::from_millis(500)),
        Some(Duration::from_millis(1500))
    );
    let _probe = breaker.admit(t0 + Duration::from_secs(2)).unwrap();
    assert!(breaker.admit(t0 + Duration::from_secs(2)).is_none());
    assert_eq!(
        breaker.wait(t0 + Duration::from_secs(3)),
        Some(Duration::from_secs(2))
    );
}

#[test]
fn zero_breaker_never_opens() {
    let breaker = Breaker::new(Duration::ZERO);
    let t0 = at(1_000);
    breaker.admit(t0).unwrap().fail(t0);
    assert!(breaker.admit(t0).is_some());
    assert!(!breaker.is_open(t0));
}

// --- request body ---

#[test]
fn form_encoding_escapes_everything_but_the_safe_set() {
    let mut out = String::new();
    form_encode_into(&mut out, "aZ09*-._ +/=&%é");
    assert_eq!(out, "aZ09*-._+%2B%2F%3D%26%25%C3%A9");
    let mut jwt = String::new();
    form_encode_into(&mut jwt, "eyJh.eyJz.sig-_");
    assert_eq!(jwt, "eyJh.eyJz.sig-_");
}

#[test]
fn errors_have_stable_labels() {
    assert_eq!(IntrospectError::Refused.label(), "introspect_refused");
    assert_eq!(
        IntrospectError::Unavailable { retry_after: None }.label(),
        "introspect_unavailable"
    );
}
