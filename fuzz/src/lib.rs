//! The fuzz targets' bodies, one module per parser of untrusted input. Each `run` takes the
//! fuzzer's bytes, drives the gateway's own code the way the pipeline does, and asserts what
//! must hold for every input (a failed assertion is a crash AFL records, like a panic).
//! The binaries in `fuzz_targets/` only hand AFL's input to these.

pub mod amo_jwt;
pub mod authorization;
pub mod config;
pub mod introspect_answer;
pub mod refresh_token_header;
pub mod request_head;
pub mod retry_after;
pub mod scope;
pub mod token_answer;
pub mod upstream_error;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

/// The gateway's clock in every target: 2023-11-14T22:13:20Z.
pub fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Splits `data` at the first `sep`: (before, after); all of it is `before` when there is none.
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// One `name` field per line of `data` whose bytes make a valid header value (as hyper and h2
/// would hand them over); the other lines are dropped.
pub fn fields(name: HeaderName, data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(name.clone(), value);
        }
    }
    headers
}
