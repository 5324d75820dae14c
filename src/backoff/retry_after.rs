//! Reading how long an upstream asked us to stay away: `Retry-After` (RFC 9110 §10.2.3,
//! delta-seconds or HTTP-date), else the errno body's `retryAfter` (FxA sends both, equal;
//! `fxa-reference.md` §2.3).
//!
//! Never panics on any input, and never turns "retry now" into a window: 0, a date in the past,
//! negative or unparsable values yield `None` (no window). Huge values saturate instead of
//! overflowing; the caller clamps them with [`clamp_retry_after`] (the gate does).

use std::time::{Duration, SystemTime};

/// Longest window the gate keeps when the operator configures nothing: FxA's documented
/// back-off answers are tens of seconds; anything far longer is more likely a bug upstream
/// than a request to go dark for hours. After the clamped window one probe asks again.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How long the upstream asked clients to wait, unclamped.
///
/// - `header`: the raw `Retry-After` value. Delta-seconds must be plain digits (surrounding
///   spaces or tabs allowed); an all-digit value too big for `u64` saturates. Otherwise it is
///   read as an HTTP-date (`httpdate`), measured from `now`.
/// - `body_retry_after`: the errno body's `retryAfter` in seconds, used only when the header is
///   absent or unparsable. Fractions are kept; NaN, infinities and negatives are ignored.
///
/// A valid header wins over the body even when it says 0: the header is the protocol, the
/// body a convenience copy of it.
pub fn parse_retry_after(
    header: Option<&[u8]>,
    body_retry_after: Option<f64>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(parsed) = header.and_then(|raw| parse_header(raw, now)) {
        return non_zero(parsed);
    }
    body_retry_after.and_then(body_seconds).and_then(non_zero)
}

/// Caps a parsed wait at the configured maximum.
pub fn clamp_retry_after(wait: Duration, max: Duration) -> Duration {
    wait.min(max)
}

/// Whole seconds for a `Retry-After` header or `retryAfter` field: rounded up (29.2 s left is
/// "30", never "29", so a client that obeys never arrives early), at least 1.
pub fn whole_seconds_up(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// `Some(parsed)` when the header is well-formed (a zero or past value is still well-formed).
fn parse_header(raw: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(raw).ok()?.trim_matches([' ', '\t']);
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn body_seconds(secs: f64) -> Option<Duration> {
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

fn non_zero(wait: Duration) -> Option<Duration> {
    (!wait.is_zero()).then_some(wait)
}
