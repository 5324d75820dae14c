//! One `POST /v1/introspect` (RFC 7662 §2.1): a form body with the token and
//! `token_type_hint=access_token`, the answer read up to [`MAX_ANSWER_BYTES`] within the
//! upstream's response timeout. Never logs the token or the request body.

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::body::UpstreamBody;
use crate::errno::GatewayError;
use crate::upstream::{CallError, Upstream};

pub(super) const INTROSPECT_PATH: &str = "/v1/introspect";

/// Introspection answers are a few hundred bytes; anything near this is not one.
pub(super) const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An answer from the OAuth server (any status).
pub(super) struct RawAnswer {
    pub(super) status: StatusCode,
    pub(super) retry_after: Option<HeaderValue>,
    /// `None` when the body could not be read whole (too large, cut, too slow).
    pub(super) body: Option<Bytes>,
}

/// Why no answer came back; for logs only.
#[derive(Debug, thiserror::Error)]
pub(super) enum NoAnswer {
    #[error(transparent)]
    Gateway(GatewayError),
    #[error("introspection request could not be built")]
    Request,
}

/// Sends the request and reads the answer. The connection slot is held until the body is read.
pub(super) async fn post(upstream: &Upstream, token: &str) -> Result<RawAnswer, NoAnswer> {
    let request = build_request(upstream, token)?;
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

fn build_request(upstream: &Upstream, token: &str) -> Result<Request<UpstreamBody>, NoAnswer> {
    let uri = upstream
        .uri_for(INTROSPECT_PATH, None)
        .map_err(|_| NoAnswer::Request)?;
    let mut form = String::with_capacity(token.len() + 48);
    form.push_str("token=");
    form_encode_into(&mut form, token);
    form.push_str("&token_type_hint=access_token");
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(ACCEPT, "application/json")
        .body(UpstreamBody::Full(Some(Bytes::from(form))))
        .map_err(|_| NoAnswer::Request)
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): `*-._` and alphanumerics as is,
/// space as `+`, every other byte of the UTF-8 as `%XX`.
pub(super) fn form_encode_into(out: &mut String, value: &str) {
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
