//! `RateLimit-Policy` and `RateLimit` header values in the structured-field form of
//! draft-ietf-httpapi-ratelimit-headers (-09/-10): a policy name as an sf-string, `q` (quota
//! units, here requests), `w` (window, seconds), `r` (remaining), `t` (seconds until more
//! quota). Optional on responses; the lead decides when to send them.

use http::HeaderName;

use super::{Allowed, Limit, RetryAfter};
use crate::backoff::whole_seconds_up;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// `"default";q=100;w=60` for a limit of 100 requests per 60 s.
pub fn policy_header(name: &str, limit: &Limit) -> String {
    format!(
        "{};q={};w={}",
        sf_string(name),
        limit.requests(),
        whole_seconds_up(limit.window())
    )
}

/// `"default";r=42;t=10`: 42 requests left, more quota in 10 s.
pub fn ratelimit_header(name: &str, remaining: u32, reset_secs: u64) -> String {
    format!("{};r={remaining};t={reset_secs}", sf_string(name))
}

/// The `RateLimit` value after an admitted request.
pub fn ratelimit_allowed(name: &str, allowed: &Allowed) -> String {
    let reset = if allowed.reset.is_zero() {
        0
    } else {
        whole_seconds_up(allowed.reset)
    };
    ratelimit_header(name, allowed.remaining, reset)
}

/// The `RateLimit` value on a 429: nothing left until `Retry-After`.
pub fn ratelimit_denied(name: &str, denied: &RetryAfter) -> String {
    ratelimit_header(name, 0, denied.secs())
}

/// An RFC 8941 sf-string: quoted, `\` and `"` escaped; characters outside printable ASCII
/// (which sf-strings cannot carry) become `_`.
fn sf_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('_'),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_escaped() {
        assert_eq!(sf_string("default"), "\"default\"");
        assert_eq!(sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(sf_string("é\n"), "\"__\"");
    }
}
