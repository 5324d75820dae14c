//! Reading the request target and head: refusals of ambiguous targets and hosts, the declared
//! body length, and the host the client asked for. Generic over the body, which only
//! `declared_length` looks at, so the fuzz targets (`crate::fuzzing`) run the same checks.

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};
use hyper::body::Body;

use crate::errno::GatewayError;

/// Refuses request targets that could mean different paths to the gateway and the upstream.
pub(crate) fn check_target<B>(req: &Request<B>) -> Result<(), GatewayError> {
    if req.method() == Method::CONNECT {
        return Err(GatewayError::BadRequest("CONNECT is not supported"));
    }
    let path = req.uri().path();
    if !path.starts_with('/') {
        return Err(GatewayError::BadRequest("request target must be a path"));
    }
    // Fast path: nothing that could hide a dot segment or a separator.
    if !path.bytes().any(|b| matches!(b, b'.' | b'%' | b'\\')) {
        return Ok(());
    }
    for segment in path.split('/') {
        let dots = segment.len() <= 6
            && [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."]
                .iter()
                .any(|d| segment.eq_ignore_ascii_case(d));
        if dots {
            return Err(GatewayError::BadRequest(
                "dot segments are not allowed in the path",
            ));
        }
        let encoded_separator = segment.contains('\\')
            || segment.as_bytes().windows(3).any(|w| {
                w[0] == b'%'
                    && (w[1..].eq_ignore_ascii_case(b"2f")
                        || w[1..].eq_ignore_ascii_case(b"5c")
                        || &w[1..] == b"00")
            });
        if encoded_separator {
            return Err(GatewayError::BadRequest(
                "encoded separators are not allowed in the path",
            ));
        }
    }
    Ok(())
}

/// Refuses a host that is missing (HTTP/1.1, RFC 9112 §3.2), given twice, given as `:authority`
/// and `host` that disagree (RFC 9113 §8.3.1), or that carries userinfo (RFC 9110 §4.2.4): the
/// gateway and the upstream could each take a different one for the host.
pub(crate) fn check_host<B>(req: &Request<B>) -> Result<(), GatewayError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    let authority = req.uri().authority().map(|a| a.as_str());
    if authority.is_some_and(|a| a.contains('@'))
        || host.is_some_and(|h| h.as_bytes().contains(&b'@'))
    {
        return Err(GatewayError::BadRequest("userinfo in the host"));
    }
    match (authority, host) {
        (_, None) if req.version() == Version::HTTP_11 => {
            Err(GatewayError::BadRequest("Host header missing"))
        }
        (Some(authority), Some(host))
            if req.version() == Version::HTTP_2
                && !authority.as_bytes().eq_ignore_ascii_case(host.as_bytes()) =>
        {
            Err(GatewayError::BadRequest(":authority and host disagree"))
        }
        _ => Ok(()),
    }
}

/// The declared body length, if any; an unparsable one is a malformed request.
pub(crate) fn declared_length<B: Body>(req: &Request<B>) -> Result<Option<u64>, GatewayError> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(req.body().size_hint().exact()),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(GatewayError::BadRequest("invalid Content-Length")),
    }
}

/// Host the client asked for, without port: `:authority` (h2) or `Host`. Any case.
pub(crate) fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let raw = match req.uri().host() {
        Some(h) => h,
        None => strip_port(req.headers().get(header::HOST)?.to_str().ok()?),
    };
    Some(raw.trim_end_matches('.'))
}

/// The host as the client sent it, port included, for `X-Forwarded-Host`: the same one
/// [`request_host`] routes by (an absolute-form target's authority wins over `Host`).
pub(crate) fn host_header_value<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    // A trailing `:digits` (or a bare `:`) is the port.
    let bytes = host.as_bytes();
    let digits = bytes
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    match bytes.len().checked_sub(digits + 1) {
        Some(colon) if bytes[colon] == b':' => &host[..colon],
        _ => host,
    }
}

/// Refuses an HTTP/2 field value that starts or ends with a space or a tab: RFC 9113 §8.2.1
/// makes such a request malformed, and HTTP/1.1 (which trims them, RFC 9112 §5) would carry a
/// different value upstream. h2 checks the other §8.2.1 rules (CR, LF, NUL, names) itself.
pub(super) fn check_h2_field_values<B>(req: &Request<B>) -> Result<(), GatewayError> {
    if req.version() != Version::HTTP_2 {
        return Ok(());
    }
    let padded = |v: &[u8]| {
        matches!(v.first(), Some(b' ' | b'\t')) || matches!(v.last(), Some(b' ' | b'\t'))
    };
    if req.headers().values().any(|v| padded(v.as_bytes())) {
        return Err(GatewayError::BadRequest(
            "a field value starts or ends with whitespace",
        ));
    }
    Ok(())
}

/// The size of a request's header list as HTTP/2 counts it (RFC 9113 §6.5.2: name and value
/// lengths plus 32 per field, pseudo-header fields included); 0 for other versions.
pub(crate) fn h2_header_list_size<B>(req: &Request<B>) -> usize {
    if req.version() != http::Version::HTTP_2 {
        return 0;
    }
    let field = |name: &str, value: usize| name.len() + value + 32;
    let uri = req.uri();
    let pseudo = field(":method", req.method().as_str().len())
        + field(":scheme", uri.scheme_str().map_or(0, str::len))
        + field(
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        )
        + field(
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        );
    let fields: usize = req
        .headers()
        .iter()
        .map(|(name, value)| field(name.as_str(), value.len()))
        .sum();
    pseudo + fields
}

#[cfg(test)]
mod tests {
    use super::{check_h2_field_values, h2_header_list_size, strip_port};
    use http::Request;

    #[test]
    fn the_port_is_a_trailing_colon_and_digits() {
        for (host, bare) in [
            ("gw.example:8443", "gw.example"),
            ("gw.example", "gw.example"),
            ("gw.example:", "gw.example"),
            ("gw.example:80x", "gw.example:80x"),
            ("8443", "8443"),
            (":80", ""),
            ("a:b:80", "a:b"),
            ("[::1]:8443", "::1"),
            ("[::1]", "::1"),
        ] {
            assert_eq!(strip_port(host), bare, "{host}");
        }
    }

    #[test]
    fn h2_field_values_with_outer_whitespace_are_refused() {
        let h2 = |value: &str| {
            Request::builder()
                .version(http::Version::HTTP_2)
                .uri("https://a.example/")
                .header("x-a", value)
                .body(())
                .unwrap()
        };
        assert!(check_h2_field_values(&h2("in side")).is_ok());
        for bad in [" lead", "trail ", "\ttab", "tab\t"] {
            assert!(check_h2_field_values(&h2(bad)).is_err(), "{bad:?}");
        }
        let h1 = Request::builder()
            .uri("/")
            .header("x-a", " x")
            .body(())
            .unwrap();
        assert!(check_h2_field_values(&h1).is_ok());
    }

    #[test]
    fn h2_header_list_size_counts_pseudo_fields_and_is_zero_for_http1() {
        let req = Request::builder()
            .version(http::Version::HTTP_2)
            .uri("https://a.example/p?q")
            .header("x", "yy")
            .body(())
            .unwrap();
        let expected = (7 + 3 + 32) + (7 + 5 + 32) + (10 + 9 + 32) + (5 + 4 + 32) + (1 + 2 + 32);
        assert_eq!(h2_header_list_size(&req), expected);
        let h1 = Request::builder().uri("/").body(()).unwrap();
        assert_eq!(h2_header_list_size(&h1), 0);
    }
}
