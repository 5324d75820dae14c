//! How long an upstream asked us to stay away: `Retry-After` and `Backoff` header values, the
//! error body's `retryAfter` (and `errno`) as the back-off gate reads it, and the window the
//! gate then opens. Input: a flags byte (answer status, caller), then the header value, a
//! NUL, and the error body.

use std::time::Duration;

use fxa_gateway::backoff::{
    self, Admission, BackoffGate, BackoffPolicy, Caller, Gate, UpstreamAnswer,
};
use fxa_gateway::fuzzing;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

const STATUSES: [u16; 4] = [429, 503, 500, 200];

pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let (header, body) = crate::split_at_byte(rest, 0);
    let now = crate::now();
    let mut response_headers = HeaderMap::new();
    response_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let (errno, body_retry_after) = fuzzing::backoff_fields(Some(body), &response_headers);

    let wait = backoff::parse_retry_after(Some(header), body_retry_after, now);
    if let Some(wait) = wait {
        assert!(!wait.is_zero(), "a zero wait opens no window");
        let clamped = backoff::clamp_retry_after(wait, backoff::DEFAULT_MAX_RETRY_AFTER);
        let secs = backoff::whole_seconds_up(clamped);
        assert!((1..=300).contains(&secs), "{secs} s");
    }
    // The body alone (no header) and the `Backoff` header alone.
    let from_body = backoff::parse_retry_after(None, body_retry_after, now);
    assert!(from_body.is_none_or(|w| !w.is_zero()));
    let backoff_header = backoff::parse_retry_after(Some(header), None, now);

    let status = StatusCode::from_u16(STATUSES[usize::from(flags & 3)]).unwrap();
    let policy = BackoffPolicy {
        honour_backoff_header: flags & 4 != 0,
        default_503_window: (flags & 8 != 0).then_some(Duration::from_secs(5)),
        ..BackoffPolicy::default()
    };
    let caller = Caller {
        upstream: 0,
        client_id: (flags & 16 != 0).then_some("client"),
        identity: (flags & 32 != 0).then_some("uid:abc"),
    };
    let answer = UpstreamAnswer {
        status,
        errno,
        retry_after: wait,
        backoff: backoff_header,
    };
    let max = policy.max_window;
    if let Some(spec) = backoff::classify(&answer, &caller, &policy) {
        assert!(!spec.length.is_zero() && spec.length <= max);
        assert!(matches!(spec.status.as_u16(), 429 | 503));
    }
    let gate = BackoffGate::new(policy);
    gate.record(&caller, &answer, now);
    for scope in caller.scopes() {
        if let Admission::Deny(denial) = gate.check(scope, now) {
            assert!((1..=max.as_secs()).contains(&denial.retry_after_secs));
        }
        // After the longest window, one probe goes through for every scope.
        let later = now + max + Duration::from_secs(1);
        assert!(!matches!(gate.check(scope, later), Admission::Deny(_)));
    }
}
