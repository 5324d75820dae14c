//! `X-Request-Id`: kept when the caller's is well-formed, generated otherwise, returned to the
//! caller and sent upstream, so one id follows a request through every hop.

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderName, HeaderValue};

/// A `HeaderName` rather than a `&str`: a string key is parsed again on every lookup.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest caller-supplied id we keep.
const MAX_LEN: usize = 128;

/// Well-formed: 1..=128 chars of `[A-Za-z0-9._:-]` (no spaces, quotes or control bytes that
/// would let a caller forge log lines).
pub fn is_well_formed(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// Generates ids unique within this process and unlikely to collide across restarts: a random
/// per-process prefix and a counter, hex-encoded (cheaper than a UUID per request).
pub struct IdGenerator {
    prefix: u64,
    counter: AtomicU64,
}

impl IdGenerator {
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        let prefix = match aws_lc_rs::rand::fill(&mut seed) {
            Ok(()) => u64::from_le_bytes(seed),
            Err(_) => std::process::id() as u64 ^ 0x9e37_79b9_7f4a_7c15,
        };
        IdGenerator {
            prefix,
            counter: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 33];
        hex16(self.prefix, &mut buf[0..16]);
        buf[16] = b'-';
        hex16(n, &mut buf[17..33]);
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

fn hex16(v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_well_formed_and_distinct() {
        let g = IdGenerator::new();
        let a = g.next();
        let b = g.next();
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn caller_ids_with_odd_bytes_are_rejected() {
        assert!(is_well_formed(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!is_well_formed(&HeaderValue::from_static("a b")));
        assert!(!is_well_formed(&HeaderValue::from_static("a\"b")));
        assert!(!is_well_formed(
            &HeaderValue::from_bytes(&[b'a'; 129]).unwrap()
        ));
        assert!(!is_well_formed(&HeaderValue::from_static("")));
    }
}
