//! The compact cache entry (issue 19): what it gives back is what it was given, and tokens with
//! the same description share it.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::cache::Cached;
use super::*;

fn answer(sub: &str, times: &str) -> TokenInfo {
    let body = format!(
        r#"{{"active":true,"scope":"profile email","sub":"{sub}","client_id":"5882386c6d801776","token_type":"access_token"{times}}}"#
    );
    parse_answer(body.as_bytes()).expect("answer")
}

fn cached(info: TokenInfo, now: SystemTime) -> Cached {
    Cached::new(Some(Arc::new(info)), now, &IntrospectSettings::default())
}

#[test]
fn served_answers_are_the_answers_given() {
    let now = SystemTime::now();
    let exp = now + Duration::from_nanos(60_000_000_123);
    let iat = now - Duration::from_nanos(7);
    let mut info = answer("0123456789abcdef0123456789abcdef", "");
    info.exp = Some(exp);
    info.iat = Some(iat);
    let served = cached(info.clone(), now).serve(now).expect("active");
    assert_eq!(*served, info);
    // Still the same answer at the last nanosecond before `exp`, inactive from `exp` on.
    let entry = cached(info.clone(), now);
    assert_eq!(
        *entry.serve(exp - Duration::from_nanos(1)).expect("active"),
        info
    );
    assert!(!entry.serve(exp).expect("inactive").active);
}

#[test]
fn freshness_keeps_nanosecond_precision() {
    let now = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
    let settings = IntrospectSettings::default();
    let entry = cached(answer("ab", ""), now);
    let until = now + settings.max_ttl;
    assert!(entry.is_fresh(until - Duration::from_nanos(1)));
    assert!(!entry.is_fresh(until));
}

#[test]
fn tokens_of_one_description_share_it_and_its_strings() {
    let now = SystemTime::now();
    let a = cached(answer("0123456789abcdef0123456789abcdef", ""), now);
    let b = cached(answer("0123456789abcdef0123456789abcdef", ""), now);
    let (a, b) = (a.serve(now).expect("a"), b.serve(now).expect("b"));
    // Without exp/iat the shared description is what is served.
    assert!(Arc::ptr_eq(&a, &b));
    // Another user: its own description, the same scope and client id strings.
    let c = cached(answer("fedcba9876543210fedcba9876543210", ""), now)
        .serve(now)
        .expect("c");
    assert!(!Arc::ptr_eq(&a, &c));
    assert_eq!(a.scope.as_ptr(), c.scope.as_ptr());
    let client = |i: &TokenInfo| i.client_id.as_deref().map(str::as_ptr);
    assert_eq!(client(&a), client(&c));
    // With their own times, two tokens of one user still share the strings.
    let d = cached(
        answer(
            "0123456789abcdef0123456789abcdef",
            r#","exp":4102444800000,"iat":1700000000000"#,
        ),
        now,
    )
    .serve(now)
    .expect("d");
    assert_eq!(
        a.sub.as_deref().map(str::as_ptr),
        d.sub.as_deref().map(str::as_ptr)
    );
    assert_eq!(
        d.exp,
        Some(UNIX_EPOCH + Duration::from_millis(4_102_444_800_000))
    );
}

#[test]
fn refusals_and_inactive_answers_stay_what_they_were() {
    let now = SystemTime::now();
    let settings = IntrospectSettings::default();
    let refused = Cached::new(None, now, &settings);
    assert_eq!(refused.serve(now).err(), Some(IntrospectError::Refused));
    let inactive = Cached::new(Some(Arc::new(TokenInfo::inactive())), now, &settings);
    let served = inactive.serve(now).expect("inactive");
    assert!(Arc::ptr_eq(&served, &TokenInfo::inactive_shared()));
}
