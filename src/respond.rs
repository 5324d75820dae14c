//! Step 8, respond: successful upstream answers stream back untouched; error answers leave in
//! the errno shape (passed through when already in it, rewritten otherwise, unless the route
//! turned rewriting off).
//!
//! Never re-serialises a success body, and never buffers more of an error body than the cap.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response};
use http_body_util::BodyExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::body::{Body, ResponseBody};
use crate::config::Limits;
use crate::errno::GatewayError;
use crate::headers;
use crate::rewrite::{self, UpstreamError, Verdict};
use crate::upstream::Upstream;

const DEPRECATION: HeaderName = HeaderName::from_static("deprecation");
const SUNSET: HeaderName = HeaderName::from_static("sunset");

/// Upstream headers a rewritten error keeps: what clients need to retry or re-authenticate,
/// and (with every `Access-Control-*` header) what a browser needs to read the answer at all.
const KEPT_ON_REWRITE: [HeaderName; 6] = [
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    headers::BACKOFF,
    headers::X_BACKOFF,
    header::CACHE_CONTROL,
    header::VARY,
];

/// What the access log, the metrics and the back-off gate learn about one request, and the
/// headers every answer to it carries.
#[derive(Default)]
pub struct Outcome {
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub errno: Option<u16>,
    pub reason: Option<&'static str>,
    /// The upstream's own errno and `retryAfter` on a 429/500/503 body, for back-off.
    pub upstream_errno: Option<u16>,
    pub body_retry_after: Option<f64>,
    /// `Deprecation` and `Sunset` of a deprecated API version: on every answer for it.
    pub deprecation: Option<(HeaderValue, Option<HeaderValue>)>,
}

impl Outcome {
    /// Marks an answer (the upstream's, or the gateway's own error) for a deprecated version.
    pub fn mark_deprecated(&self, headers: &mut HeaderMap) {
        if let Some((deprecation, sunset)) = &self.deprecation {
            headers.insert(DEPRECATION, deprecation.clone());
            if let Some(sunset) = sunset {
                headers.insert(SUNSET, sunset.clone());
            }
        }
    }
}

/// The parts of a route match the response stage needs.
pub struct MatchView {
    pub rewrite_errors: bool,
    /// The route authenticates bearer tokens: a foreign 403 means a missing scope (errno 100).
    pub bearer_route: bool,
}

pub async fn finish(
    response: Response<ResponseBody>,
    permit: OwnedSemaphorePermit,
    view: &MatchView,
    upstream: &Upstream,
    limits: &Limits,
    method: &Method,
    outcome: &mut Outcome,
) -> Result<Response<Body>, GatewayError> {
    let (mut parts, incoming) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::strip_gateway_namespace(&mut parts.headers);
    if !parts.status.is_client_error() && !parts.status.is_server_error() || !view.rewrite_errors {
        return Ok(Response::from_parts(
            parts,
            Body::upstream(incoming, Some(permit)),
        ));
    }
    let body = if method == Method::HEAD {
        Some(Bytes::new())
    } else {
        read_capped(
            incoming,
            &parts.headers,
            limits.max_error_body_bytes,
            upstream,
        )
        .await?
    };
    drop(permit);
    if matches!(parts.status.as_u16(), 429 | 500 | 503) {
        let (errno, retry_after) = backoff_fields(body.as_deref(), &parts.headers);
        outcome.upstream_errno = errno;
        outcome.body_retry_after = retry_after;
    }
    let retry_after = parts
        .headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let error = UpstreamError {
        status: parts.status,
        content_type: str_header(&parts.headers, header::CONTENT_TYPE),
        content_encoding: str_header(&parts.headers, header::CONTENT_ENCODING),
        body: body.as_deref(),
        bearer_route: view.bearer_route,
        upstream: &upstream.name,
        retry_after,
    };
    match rewrite::rewrite(&error, limits.max_error_body_bytes) {
        Verdict::PassThrough => {
            let bytes = body.unwrap_or_default();
            outcome.errno = crate::errno::errno_in(&bytes);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            // The body is errno JSON whatever the upstream labelled it; FxA clients check the type.
            let labelled_json =
                str_header(&parts.headers, header::CONTENT_TYPE).is_some_and(|ct| {
                    ct.trim_start()
                        .to_ascii_lowercase()
                        .starts_with("application/json")
                });
            if !labelled_json {
                parts.headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::full(bytes)
            };
            Ok(Response::from_parts(parts, body))
        }
        Verdict::Rewritten(json) => {
            outcome.errno = crate::errno::errno_in(&json);
            let mut out = Response::new(if method == Method::HEAD {
                Body::empty()
            } else {
                Body::full(json.clone())
            });
            *out.status_mut() = parts.status;
            let headers = out.headers_mut();
            let kept = parts.headers.iter().filter(|(name, _)| {
                KEPT_ON_REWRITE.contains(name)
                    || name.as_str().starts_with("access-control-")
                    || *name == DEPRECATION
                    || *name == SUNSET
            });
            for (name, value) in kept {
                headers.append(name.clone(), value.clone());
            }
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(json.len()));
            Ok(out)
        }
    }
}

/// Reads an error body up to `cap` bytes (None when larger: the rest is dropped, not
/// buffered), within the upstream's response timeout.
async fn read_capped(
    mut incoming: ResponseBody,
    headers: &HeaderMap,
    cap: usize,
    upstream: &Upstream,
) -> Result<Option<Bytes>, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > cap as u64) {
        return Ok(None);
    }
    let read = async {
        let mut buf = BytesMut::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > cap {
                    return Ok(None);
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok::<_, String>(Some(buf.freeze()))
    };
    match tokio::time::timeout(upstream.response_timeout(), read).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(cause)) => Err(GatewayError::UpstreamBadResponse {
            upstream: upstream.name.clone(),
            cause,
        }),
        Err(_) => Err(GatewayError::UpstreamTimeout {
            upstream: upstream.name.clone(),
            after: upstream.response_timeout(),
        }),
    }
}

fn str_header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `errno` and `retryAfter` from an uncompressed JSON error body, for the back-off gate.
pub(crate) fn backoff_fields(
    body: Option<&[u8]>,
    headers: &HeaderMap,
) -> (Option<u16>, Option<f64>) {
    #[derive(serde::Deserialize)]
    struct Fields {
        errno: Option<u16>,
        #[serde(rename = "retryAfter")]
        retry_after: Option<f64>,
    }
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    match body {
        Some(b) if !encoded => serde_json::from_slice::<Fields>(b)
            .map(|f| (f.errno, f.retry_after))
            .unwrap_or((None, None)),
        _ => (None, None),
    }
}
