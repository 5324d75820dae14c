//! Entry points for the fuzz targets in `fuzz/` into parsers that are private to their stage.
//! Not an API: hidden from the docs and free to change with the stages. Each function runs the
//! stage's own code, unchanged; every other parser the targets drive is public already.

use http::{HeaderMap, HeaderValue, Request};

use crate::errno::GatewayError;
use crate::pipeline::target;

/// What the request-head checks make of a request that passes them.
#[derive(Debug)]
pub struct Head<'a> {
    /// The size HTTP/2 counts for the header list (0 for other versions).
    pub h2_header_list_size: usize,
    /// The host routed by, without port.
    pub host: Option<&'a str>,
    pub declared_length: Option<u64>,
    /// The host as forwarded in `X-Forwarded-Host`.
    pub forwarded_host: Option<HeaderValue>,
}

/// The pipeline's request-head checks in its order (`pipeline::proxy`): target, then host;
/// then the host it routes by, the declared body length and the host it forwards.
pub fn request_head<B: hyper::body::Body>(req: &Request<B>) -> Result<Head<'_>, GatewayError> {
    let h2_header_list_size = target::h2_header_list_size(req);
    target::check_target(req)?;
    target::check_host(req)?;
    Ok(Head {
        h2_header_list_size,
        host: target::request_host(req),
        declared_length: target::declared_length(req)?,
        forwarded_host: target::host_header_value(req),
    })
}

/// `errno` and `retryAfter` from an upstream error body, as the back-off gate reads them.
pub fn backoff_fields(body: Option<&[u8]>, headers: &HeaderMap) -> (Option<u16>, Option<f64>) {
    crate::respond::backoff_fields(body, headers)
}
