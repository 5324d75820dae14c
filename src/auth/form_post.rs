//! One form POST to the OAuth server (`/v1/introspect`, `/v1/token`), its answer read up to
//! [`MAX_ANSWER_BYTES`] within the upstream's response timeout. Never logs the request body:
//! it carries tokens and client secrets.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::UpstreamBody;
use crate::errno::GatewayError;
use crate::upstream::{CallError, Upstream};

/// OAuth answers are a few hundred bytes; anything near this is not one.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An answer from the OAuth server (any status).
pub struct RawAnswer {
    pub status: StatusCode,
    pub retry_after: Option<HeaderValue>,
    /// `None` when the body could not be read whole (too large, cut, too slow).
    pub body: Option<Bytes>,
}

/// Why no answer came back; for logs only (never holds the request).
#[derive(Debug, thiserror::Error)]
pub enum NoAnswer {
    #[error(transparent)]
    Gateway(GatewayError),
    #[error("OAuth request could not be built")]
    Request,
}

/// POSTs `form` (already `application/x-www-form-urlencoded`) to `path` on `upstream` and
/// reads the answer. The connection slot is held until the body is read.
pub async fn post(upstream: &Upstream, path: &str, form: String) -> Result<RawAnswer, NoAnswer> {
    let uri = upstream
        .uri_for(path, None)
        .map_err(|_| NoAnswer::Request)?;
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(UpstreamBody::Full(Some(Bytes::from(form))))
        .map_err(|_| NoAnswer::Request)?;
    let _permit = upstream.acquire().await.map_err(NoAnswer::Gateway)?;
    // One response timeout covers the head (enforced by `send`) and the body together.
    let deadline = tokio::time::Instant::now() + upstream.response_timeout();
    let response = upstream.send(request).await.map_err(|e| match e {
        CallError::Gateway(e) => NoAnswer::Gateway(e),
        CallError::RequestBody => NoAnswer::Request,
    })?;
    let (parts, body) = response.into_parts();
    let read = Limited::new(body, MAX_ANSWER_BYTES).collect();
    let body = match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(collected)) => Some(collected.to_bytes()),
        Ok(Err(_)) | Err(_) => None,
    };
    Ok(RawAnswer {
        status: parts.status,
        retry_after: parts.headers.get(RETRY_AFTER).cloned(),
        body,
    })
}

/// Appends `name=value&` pairs, form-encoded.
pub fn push_field(form: &mut String, name: &str, value: &str) {
    if !form.is_empty() {
        form.push('&');
    }
    form.push_str(name);
    form.push('=');
    encode_into(form, value);
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): `*-._` and alphanumerics as is,
/// space as `+`, every other byte of the UTF-8 as `%XX`.
pub fn encode_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &byte in value.as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0f)]));
            }
        }
    }
}
