//! Upstream error bodies (errno JSON, Cornice, DRF, AMO, HTML, text, bare JSON, gzip and
//! deflate): the rewrite into FxA's errno shape. Input: two flag bytes (status, content type,
//! encoding, route kind, `Retry-After`), then the body; for `gzip`/`deflate` the target
//! compresses the body itself so the decoders see real streams, and `br`/garbled ones test
//! the fallbacks.

use std::io::Write;

use flate2::Compression;
use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use fxa_gateway::errno::errno_in;
use fxa_gateway::rewrite::{self, MAX_TEXT, UpstreamError, Verdict};
use http::StatusCode;
use serde_json::Value;

const STATUSES: [u16; 8] = [400, 401, 403, 404, 429, 500, 503, 504];
const TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("text/html; charset=utf-8"),
    Some("text/plain"),
];
/// The cap on decoded bytes (the gateway's default `max_error_body_bytes` is 64 KiB).
const CAP: usize = 16 * 1024;

pub fn run(data: &[u8]) {
    let [a, b, body @ ..] = data else {
        return;
    };
    let status = StatusCode::from_u16(STATUSES[usize::from(a & 7)]).unwrap();
    let content_type = TYPES[usize::from((a >> 3) & 3)];
    let bearer_route = a & 0x20 != 0;
    let retry_after = (b & 0x80 != 0).then_some(u64::from(b & 0x7f));
    let (encoding, sent) = match (b >> 4) & 7 {
        1 => (
            Some("gzip"),
            compress(GzEncoder::new(Vec::new(), Compression::fast()), body),
        ),
        2 => (
            Some("deflate"),
            compress(ZlibEncoder::new(Vec::new(), Compression::fast()), body),
        ),
        3 => (
            Some("deflate"),
            compress(DeflateEncoder::new(Vec::new(), Compression::fast()), body),
        ),
        4 => (Some("gzip"), body.to_vec()),
        5 => (Some("br"), body.to_vec()),
        6 => (Some(" GZip "), body.to_vec()),
        _ => (None, body.to_vec()),
    };
    let over_cap = b & 0x0f == 0x0f;
    let error = UpstreamError {
        status,
        content_type,
        content_encoding: encoding,
        body: (!over_cap).then_some(&sent[..]),
        bearer_route,
        upstream: "upstream",
        retry_after,
    };
    let _ = errno_in(&sent);
    match rewrite::rewrite(&error, CAP) {
        Verdict::PassThrough => {
            assert!(!over_cap);
            // Only bodies that are errno JSON once decoded pass through.
            if matches!((b >> 4) & 7, 0..=3) && body.len() <= CAP {
                assert!(
                    rewrite::is_errno_shaped(body),
                    "passed through a foreign body"
                );
            }
        }
        Verdict::Rewritten(bytes) => check_rewritten(&bytes, status, bearer_route, retry_after),
    }
}

fn compress<W: Write + Finish>(mut encoder: W, body: &[u8]) -> Vec<u8> {
    encoder.write_all(body).expect("in-memory write");
    encoder.done()
}

/// The encoders' `finish`, under one name.
trait Finish {
    fn done(self) -> Vec<u8>;
}

impl Finish for GzEncoder<Vec<u8>> {
    fn done(self) -> Vec<u8> {
        self.finish().expect("in-memory write")
    }
}

impl Finish for ZlibEncoder<Vec<u8>> {
    fn done(self) -> Vec<u8> {
        self.finish().expect("in-memory write")
    }
}

impl Finish for DeflateEncoder<Vec<u8>> {
    fn done(self) -> Vec<u8> {
        self.finish().expect("in-memory write")
    }
}

/// A rewritten body is FxA's errno shape: `code` = the status, an integer `errno`, string
/// `error`, `message` (bounded) and `info`.
fn check_rewritten(bytes: &[u8], status: StatusCode, bearer_route: bool, retry_after: Option<u64>) {
    assert!(
        rewrite::is_errno_shaped(bytes),
        "rewrite is not errno-shaped"
    );
    let value: Value = serde_json::from_slice(bytes).expect("rewrite is JSON");
    assert_eq!(value["code"].as_u64(), Some(u64::from(status.as_u16())));
    let errno = value["errno"].as_u64().expect("errno");
    assert_eq!(
        errno,
        u64::from(rewrite::errno_for_status(status, bearer_route))
    );
    assert!(value["error"].is_string() && value["info"].is_string());
    let message = value["message"].as_str().expect("message");
    assert!(
        !message.is_empty() && message.len() <= MAX_TEXT,
        "message of {} bytes",
        message.len()
    );
    if matches!(status.as_u16(), 429 | 500 | 503) && retry_after.is_some() {
        assert!(value["retryAfter"].is_u64(), "retryAfter lost");
    }
    if matches!(status.as_u16(), 502 | 504) {
        assert_eq!(value["service"], "upstream");
    }
}
