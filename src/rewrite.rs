//! Rewrites foreign upstream error responses into FxA's errno shape (DESIGN.md step 8).
//!
//! Upstream errors that already carry `{code, errno, …}` pass through byte for byte. Everything
//! else (token server Cornice `{status, errors}`, AMO/DRF `{detail}` and field errors, AMO's
//! read-only `{"error"}`, HTML and text from load balancers and WAFs, bare JSON values, empty
//! bodies) becomes `{code, errno, error, message, info, …}` with the errno chosen by status and
//! the upstream's detail kept in extra fields. Everything here is pure: no I/O, no panics on any
//! input, and decompression never produces more than the caller's cap.

use std::borrow::Cow;
use std::io::Read;

use bytes::Bytes;
use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};
use http::StatusCode;
use serde_json::{Map, Value};

use crate::errno::{errno_body, insert_retry_after};

/// Longest text (in bytes, cut on a char boundary) kept from HTML or plain-text bodies.
pub const MAX_TEXT: usize = 512;

/// An upstream error response as the pipeline sees it.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamError<'a> {
    pub status: StatusCode,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    /// The body, read up to the gateway's cap; None when it was larger than the cap (detail dropped).
    pub body: Option<&'a [u8]>,
    /// Route authenticates bearer tokens (403 then means missing scope: errno 100, else 999).
    pub bearer_route: bool,
    /// Upstream name, reported as `service` on 502/504 (errno 203).
    pub upstream: &'a str,
    /// Parsed `Retry-After` seconds from the upstream response, if any.
    pub retry_after: Option<u64>,
}

/// What the caller sends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Already errno-shaped: send the original bytes and headers (incl. `Content-Encoding`).
    PassThrough,
    /// A new plain `application/json` body; the caller drops `Content-Encoding`.
    Rewritten(Bytes),
}

/// The errno a foreign error with this status gets (DESIGN.md "Foreign upstream errors").
pub fn errno_for_status(status: StatusCode, bearer_route: bool) -> u16 {
    match status.as_u16() {
        401 => 110,
        403 if bearer_route => 100,
        429 => 114,
        503 => 201,
        502 | 504 => 203,
        _ => 999,
    }
}

/// True when `body` (already decoded) is a JSON object with integer `errno` and `code`.
pub fn is_errno_shaped(body: &[u8]) -> bool {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(strip_bom(body)) else {
        return false;
    };
    let integer = |key: &str| map.get(key).is_some_and(|v| v.is_i64() || v.is_u64());
    integer("errno") && integer("code")
}

/// Decides what to do with an upstream error; `max_decoded` caps decompressed output.
pub fn rewrite(e: &UpstreamError<'_>, max_decoded: usize) -> Verdict {
    let decoded = match e.body {
        None => Decoded::OverCap,
        Some(raw) => decode(raw, e.content_encoding, max_decoded),
    };
    if let Decoded::Bytes(bytes) = &decoded
        && is_errno_shaped(bytes)
    {
        return Verdict::PassThrough;
    }
    let errno = errno_for_status(e.status, e.bearer_route);
    let detail = match &decoded {
        Decoded::Bytes(bytes) => classify(bytes, e.content_type),
        Decoded::OverCap => Detail::flagged("detailTruncated"),
        Decoded::Unavailable => Detail::default(),
    };
    let body = assemble(e, errno, detail);
    Verdict::Rewritten(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

/// The default message for an errno when the upstream body offers nothing better.
fn default_message(errno: u16, status: StatusCode) -> &'static str {
    match errno {
        110 => "Invalid authentication token",
        100 => "Unauthorized",
        114 => "Client has sent too many requests",
        201 => "Service unavailable",
        203 => "System unavailable, try again soon",
        _ => status.canonical_reason().unwrap_or("Unspecified error"),
    }
}

/// Builds the final errno body from the status, errno and whatever detail was recovered.
fn assemble(e: &UpstreamError<'_>, errno: u16, detail: Detail) -> Map<String, Value> {
    let message = detail
        .message
        .as_deref()
        .map(truncate)
        .filter(|m| !m.is_empty());
    let message = message.unwrap_or_else(|| default_message(errno, e.status));
    let mut body = errno_body(e.status, errno, message);
    for (key, value) in detail.extras {
        body.entry(key).or_insert(value);
    }
    if errno == 203 {
        body.insert("service".into(), Value::String(e.upstream.to_owned()));
    }
    let header_secs = e
        .retry_after
        .filter(|_| matches!(e.status.as_u16(), 429 | 500 | 503));
    if let Some(secs) = detail.retry_after.or(header_secs) {
        insert_retry_after(&mut body, secs);
        if let (Some(_), Some(localized)) = (detail.retry_after, detail.retry_after_localized) {
            body.insert("retryAfterLocalized".into(), Value::String(localized));
        }
    }
    body
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// The body after undoing `Content-Encoding`.
enum Decoded<'a> {
    Bytes(Cow<'a, [u8]>),
    /// Larger than the gateway's read cap or the decompression cap.
    OverCap,
    /// Unknown encoding or corrupt compressed data.
    Unavailable,
}

/// Undoes gzip / deflate (zlib, then raw) with an output cap; identity passes through.
fn decode<'a>(raw: &'a [u8], encoding: Option<&str>, cap: usize) -> Decoded<'a> {
    let encoding = encoding.map(str::trim).unwrap_or("");
    if encoding.is_empty() || encoding.eq_ignore_ascii_case("identity") {
        return Decoded::Bytes(Cow::Borrowed(raw));
    }
    if encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip") {
        return inflate(GzDecoder::new(raw), cap);
    }
    if encoding.eq_ignore_ascii_case("deflate") {
        return match inflate(ZlibDecoder::new(raw), cap) {
            Decoded::Unavailable => inflate(DeflateDecoder::new(raw), cap),
            other => other,
        };
    }
    Decoded::Unavailable
}

/// Reads a decoder to its end through `take(cap + 1)`, never holding more than `cap` bytes.
fn inflate<'a>(decoder: impl Read, cap: usize) -> Decoded<'a> {
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = decoder.take(limit);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Decoded::Bytes(Cow::Owned(out)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Decoded::Unavailable,
        };
        if out.len().saturating_add(n) > cap {
            return Decoded::OverCap;
        }
        if out.capacity() - out.len() < n {
            let want = out.len().saturating_mul(2).max(out.len() + n).min(cap);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

// ---------------------------------------------------------------------------------------------
// Classifying the upstream body

/// What was recovered from an upstream body.
#[derive(Debug, Default)]
struct Detail {
    message: Option<String>,
    extras: Map<String, Value>,
    /// `retryAfter` the upstream body carried itself (wins over the header).
    retry_after: Option<u64>,
    retry_after_localized: Option<String>,
}

impl Detail {
    fn flagged(flag: &str) -> Detail {
        let mut detail = Detail::default();
        detail.extras.insert(flag.into(), Value::Bool(true));
        detail
    }

    fn with(message: Option<String>, extras: Map<String, Value>) -> Detail {
        Detail {
            message,
            extras,
            ..Detail::default()
        }
    }
}

/// Recognises the body's shape (JSON of several dialects, HTML, text, empty).
fn classify(body: &[u8], content_type: Option<&str>) -> Detail {
    let body = strip_bom(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Detail::default();
    }
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        return classify_json(value);
    }
    let text = String::from_utf8_lossy(body);
    if looks_like_html(&text, content_type) {
        classify_html(&text)
    } else {
        classify_text(&text)
    }
}

fn classify_json(value: Value) -> Detail {
    let Value::Object(map) = value else {
        let message = value.as_str().map(|s| truncate(&collapse(s)).to_owned());
        return Detail::with(message, extra("detail", value));
    };
    let (retry_after, retry_after_localized) = upstream_retry_after(&map);
    let mut detail = if is_cornice(&map) {
        cornice(map)
    } else if is_drf_detail(&map) {
        drf_detail(map)
    } else if is_amo_error(&map) {
        amo_error(map)
    } else if is_field_errors(&map) {
        field_errors(map)
    } else {
        other_object(map)
    };
    detail.retry_after = retry_after;
    detail.retry_after_localized = retry_after_localized;
    detail
}

fn extra(key: &str, value: Value) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(key.into(), value);
    map
}

/// A numeric `retryAfter` (and string `retryAfterLocalized`) at the top of the upstream body.
fn upstream_retry_after(map: &Map<String, Value>) -> (Option<u64>, Option<String>) {
    let secs = map.get("retryAfter").and_then(|v| {
        v.as_u64().or_else(|| {
            let f = v.as_f64()?;
            (f.is_finite() && f >= 0.0).then(|| f.ceil().min(u64::MAX as f64) as u64)
        })
    });
    let localized = map
        .get("retryAfterLocalized")
        .and_then(Value::as_str)
        .map(str::to_owned);
    (secs, localized)
}

fn only_keys(map: &Map<String, Value>, allowed: &[&str]) -> bool {
    map.keys().all(|k| allowed.contains(&k.as_str()))
}

/// Token server: `{status, errors: [{location, name, description, …}]}`.
fn is_cornice(map: &Map<String, Value>) -> bool {
    map.get("errors").is_some_and(Value::is_array) && only_keys(map, &["status", "errors"])
}

fn cornice(mut map: Map<String, Value>) -> Detail {
    let errors = map.remove("errors").unwrap_or(Value::Array(Vec::new()));
    let message = errors
        .get(0)
        .and_then(|first| first.get("description"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut extras = extra("errors", errors);
    if let Some(status) = map.remove("status") {
        extras.insert("upstreamStatus".into(), status);
    }
    Detail::with(message, extras)
}

/// DRF: `{detail, code?}` (AMO auth failures, throttling, 404s).
fn is_drf_detail(map: &Map<String, Value>) -> bool {
    map.contains_key("detail") && only_keys(map, &["detail", "code"])
}

fn drf_detail(mut map: Map<String, Value>) -> Detail {
    let detail = map.remove("detail").unwrap_or(Value::Null);
    let message = detail.as_str().map(str::to_owned);
    let mut extras = extra("detail", detail);
    if let Some(code) = map.remove("code") {
        extras.insert("upstreamCode".into(), code);
    }
    Detail::with(message, extras)
}

/// AMO read-only mode: `{"error": "<localized message>"}`.
fn is_amo_error(map: &Map<String, Value>) -> bool {
    map.len() == 1 && map.get("error").is_some_and(Value::is_string)
}

fn amo_error(mut map: Map<String, Value>) -> Detail {
    let message = map
        .remove("error")
        .and_then(|v| v.as_str().map(str::to_owned));
    Detail::with(
        message.clone(),
        extra("detail", message.map_or(Value::Null, Value::String)),
    )
}

/// DRF validation errors: `{field: ["msg", …], non_field_errors: [...]}` (nested objects allowed).
fn is_field_errors(map: &Map<String, Value>) -> bool {
    !map.is_empty()
        && map.values().all(|v| v.is_array() || v.is_object())
        && map.values().any(|v| first_string(v).is_some())
}

fn field_errors(map: Map<String, Value>) -> Detail {
    let message = match map.get("non_field_errors").and_then(first_string) {
        Some(msg) => Some(msg.to_owned()),
        None => map
            .iter()
            .find_map(|(field, v)| first_string(v).map(|m| format!("{field}: {m}"))),
    };
    Detail::with(message, extra("fieldErrors", Value::Object(map)))
}

/// The first string in a DRF error list (looking one level into nested serializers).
fn first_string(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        Value::Array(items) => items.iter().find_map(Value::as_str),
        Value::Object(map) => map.values().find_map(|v| match v {
            Value::Array(items) => items.iter().find_map(Value::as_str),
            _ => v.as_str(),
        }),
        _ => None,
    }
}

/// Any other JSON object: kept whole under `detail`; a message-like string becomes `message`.
fn other_object(map: Map<String, Value>) -> Detail {
    const MESSAGE_KEYS: [&str; 6] = [
        "message",
        "error_description",
        "description",
        "detail",
        "error",
        "reason",
    ];
    let message = MESSAGE_KEYS
        .iter()
        .find_map(|key| map.get(*key).and_then(Value::as_str))
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    Detail::with(message, extra("detail", Value::Object(map)))
}

fn classify_text(text: &str) -> Detail {
    let snippet = truncate(&collapse(text)).to_owned();
    if snippet.is_empty() {
        return Detail::default();
    }
    Detail::with(
        Some(snippet.clone()),
        extra("detail", Value::String(snippet)),
    )
}

fn classify_html(html: &str) -> Detail {
    let text = truncate(&collapse(&strip_tags(html))).to_owned();
    let title = html_title(html).filter(|t| !t.is_empty());
    let message = title.or_else(|| (!text.is_empty()).then(|| text.clone()));
    let extras = if text.is_empty() {
        Map::new()
    } else {
        extra("detail", Value::String(text))
    };
    Detail::with(message, extras)
}

// ---------------------------------------------------------------------------------------------
// Text helpers

/// HTML by content type, or by a leading doctype / `<html` / `<head` / `<body` / `<title` tag.
fn looks_like_html(text: &str, content_type: Option<&str>) -> bool {
    if content_type.is_some_and(|ct| ct.to_ascii_lowercase().contains("html")) {
        return true;
    }
    let head = prefix(text.trim_start(), 1024).to_ascii_lowercase();
    ["<!doctype html", "<html", "<head", "<body", "<title"]
        .iter()
        .any(|tag| head.contains(tag))
}

/// Collapses every run of whitespace to one space and trims the ends.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest prefix of at most `MAX_TEXT` bytes that ends on a char boundary, end-trimmed.
fn truncate(text: &str) -> &str {
    prefix(text, MAX_TEXT).trim_end()
}

/// The longest prefix of at most `max` bytes that ends on a char boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

/// The text of the first `<title>` element, entities decoded and whitespace collapsed.
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start
        + lower[start..]
            .find("</title")
            .unwrap_or(lower.len() - start);
    let inner = html.get(start..end)?;
    Some(truncate(&collapse(&decode_entities(inner))).to_owned())
}

/// Visible text of an HTML document: tags, comments, `<script>` and `<style>` removed.
fn strip_tags(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len().min(4096));
    let mut pos = 0;
    while let Some(offset) = lower[pos..].find('<') {
        let lt = pos + offset;
        out.push_str(&decode_entities(&html[pos..lt]));
        out.push(' ');
        pos = skip_markup(&lower, lt);
    }
    out.push_str(&decode_entities(&html[pos..]));
    out
}

/// Given `lower[lt] == '<'`, the index just past the comment, tag or script/style element.
fn skip_markup(lower: &str, lt: usize) -> usize {
    let rest = &lower[lt..];
    let past = |needle: &str| {
        rest.find(needle)
            .map_or(lower.len(), |i| lt + i + needle.len())
    };
    if rest.starts_with("<!--") {
        return past("-->");
    }
    let tail = &rest[1..];
    for element in ["script", "style"] {
        let opens = tail.strip_prefix(element).is_some_and(|after| {
            after.starts_with(|c: char| c == '>' || c == '/' || c.is_ascii_whitespace())
        });
        if opens {
            return after_close(lower, lt, element);
        }
    }
    past(">")
}

/// Index just past `</element …>` searched from `lt`, or the end of the document.
fn after_close(lower: &str, lt: usize, element: &str) -> usize {
    let close = format!("</{element}");
    let Some(i) = lower[lt..].find(&close) else {
        return lower.len();
    };
    let from = lt + i;
    lower[from..]
        .find('>')
        .map_or(lower.len(), |j| from + j + 1)
}

/// Decodes the handful of entities error pages use; others stay as written.
fn decode_entities(text: &str) -> Cow<'_, str> {
    if !text.contains('&') {
        return Cow::Borrowed(text);
    }
    let mut out = text.to_owned();
    for (entity, ch) in [
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&apos;", "'"),
        ("&nbsp;", " "),
    ] {
        out = out.replace(entity, ch);
    }
    Cow::Owned(out.replace("&amp;", "&"))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::errno::INFO_URL;

    const CAP: usize = 64 * 1024;

    fn err(status: u16, body: &[u8]) -> UpstreamError<'_> {
        UpstreamError {
            status: StatusCode::from_u16(status).expect("test status"),
            content_type: Some("application/json"),
            content_encoding: None,
            body: Some(body),
            bearer_route: false,
            upstream: "tokenserver",
            retry_after: None,
        }
    }

    fn rewritten(e: &UpstreamError<'_>) -> Value {
        match rewrite(e, CAP) {
            Verdict::Rewritten(bytes) => serde_json::from_slice(&bytes).expect("valid JSON"),
            Verdict::PassThrough => panic!("expected a rewrite"),
        }
    }

    fn assert_base(v: &Value, code: u16, errno: u16) {
        assert_eq!(v["code"], json!(code), "{v}");
        assert_eq!(v["errno"], json!(errno), "{v}");
        assert_eq!(v["info"], json!(INFO_URL));
        assert!(v["error"].is_string() && v["message"].is_string(), "{v}");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(data).expect("gzip");
        enc.finish().expect("gzip")
    }

    #[test]
    fn cornice_401_invalid_credentials() {
        let body = br#"{"status": "invalid-credentials", "errors": [{"location": "body", "name": "", "description": "Unauthorized"}]}"#;
        let v = rewritten(&err(401, body));
        assert_base(&v, 401, 110);
        assert_eq!(v["error"], "Unauthorized");
        assert_eq!(v["message"], "Unauthorized");
        assert_eq!(v["upstreamStatus"], "invalid-credentials");
        assert_eq!(v["errors"][0]["location"], "body");
        assert!(v.get("status").is_none() && v.get("retryAfter").is_none());
    }

    #[test]
    fn cornice_403_keeps_condition_urls() {
        let body = br#"{"status": "error", "errors": [{"location": "header", "name": "X-Conditions-Accepted", "description": "Need to accept conditions", "condition_urls": {"tos": "https://example.com/tos", "pp": "https://example.com/pp"}}]}"#;
        let v = rewritten(&err(403, body));
        assert_base(&v, 403, 999);
        assert_eq!(v["message"], "Need to accept conditions");
        assert_eq!(
            v["errors"][0]["condition_urls"]["tos"],
            "https://example.com/tos"
        );
        assert_eq!(v["errors"][0]["name"], "X-Conditions-Accepted");
        assert_eq!(v["upstreamStatus"], "error");
    }

    #[test]
    fn cornice_503_with_retry_after_header() {
        let body = br#"{"status": "error", "errors": [{"location": "internal", "name": "", "description": "Resource is not available"}]}"#;
        let mut e = err(503, body);
        e.retry_after = Some(120);
        let v = rewritten(&e);
        assert_base(&v, 503, 201);
        assert_eq!(v["message"], "Resource is not available");
        assert_eq!(v["retryAfter"], 120);
        assert_eq!(v["retryAfterLocalized"], "in 2 minutes");
    }

    #[test]
    fn cornice_without_description_gets_default_message() {
        let v = rewritten(&err(401, br#"{"status": "error", "errors": []}"#));
        assert_base(&v, 401, 110);
        assert_eq!(v["message"], "Invalid authentication token");
        assert_eq!(v["errors"], json!([]));
    }

    #[test]
    fn long_messages_are_cut_but_detail_is_kept() {
        let long = "x".repeat(2000);
        let body = json!({"status": "error", "errors": [{"description": long}]}).to_string();
        let v = rewritten(&err(400, body.as_bytes()));
        assert_eq!(v["message"].as_str().map(str::len), Some(MAX_TEXT));
        assert_eq!(
            v["errors"][0]["description"].as_str().map(str::len),
            Some(2000)
        );
    }

    #[test]
    fn amo_401_signature_expired_keeps_string_code_apart() {
        let body = br#"{"detail": "Signature has expired.", "code": "ERROR_SIGNATURE_EXPIRED"}"#;
        let v = rewritten(&err(401, body));
        assert_base(&v, 401, 110);
        assert_eq!(v["message"], "Signature has expired.");
        assert_eq!(v["detail"], "Signature has expired.");
        assert_eq!(v["upstreamCode"], "ERROR_SIGNATURE_EXPIRED");
    }

    #[test]
    fn drf_429_throttled_uses_header_retry_after() {
        let body = br#"{"detail": "Request was throttled. Expected available in 30 seconds."}"#;
        let mut e = err(429, body);
        e.retry_after = Some(30);
        let v = rewritten(&e);
        assert_base(&v, 429, 114);
        assert_eq!(
            v["message"],
            "Request was throttled. Expected available in 30 seconds."
        );
        assert_eq!(v["retryAfter"], 30);
        assert_eq!(v["retryAfterLocalized"], "in 30 seconds");
        assert!(v.get("upstreamCode").is_none());
    }

    #[test]
    fn drf_400_field_errors() {
        let body = br#"{"slug": ["This field must be unique."], "name": ["This field is required.", "x"]}"#;
        let v = rewritten(&err(400, body));
        assert_base(&v, 400, 999);
        assert_eq!(v["message"], "name: This field is required.");
        assert_eq!(v["fieldErrors"]["slug"][0], "This field must be unique.");
        assert_eq!(v["fieldErrors"]["name"][1], "x");
    }

    #[test]
    fn drf_400_non_field_errors_come_first() {
        let body = br#"{"a": ["field msg"], "non_field_errors": ["Version already exists."]}"#;
        let v = rewritten(&err(400, body));
        assert_eq!(v["message"], "Version already exists.");
        assert_eq!(v["fieldErrors"]["a"][0], "field msg");
    }

    #[test]
    fn amo_503_read_only() {
        let body = br#"{"error": "Some features are temporarily disabled while we perform website maintenance."}"#;
        let v = rewritten(&err(503, body));
        assert_base(&v, 503, 201);
        assert_eq!(
            v["message"],
            "Some features are temporarily disabled while we perform website maintenance."
        );
        assert_eq!(v["detail"], v["message"]);
        assert_eq!(v["error"], "Service Unavailable");
    }

    #[test]
    fn html_502_from_load_balancer() {
        let body = b"<!DOCTYPE html>\n<html><head><title>502 Bad  Gateway</title>\n<style>body{color:red}</style>\
<script type=\"text/javascript\">var x = '<b>';</script></head>\n<body><center><h1>502 Bad Gateway</h1></center>\
<!-- a comment --><hr><center>nginx &amp; friends</center></body></html>";
        let mut e = err(502, body);
        e.content_type = Some("text/html; charset=utf-8");
        e.upstream = "profile";
        let v = rewritten(&e);
        assert_base(&v, 502, 203);
        assert_eq!(v["service"], "profile");
        assert_eq!(v["message"], "502 Bad Gateway");
        assert_eq!(
            v["detail"],
            "502 Bad Gateway 502 Bad Gateway nginx & friends"
        );
    }

    #[test]
    fn html_sniffed_without_content_type_and_truncated_on_char_boundary() {
        let mut body = String::from("<html><body><p>");
        body.push_str(&"é".repeat(600));
        body.push_str("</p></body></html>");
        let mut e = err(500, body.as_bytes());
        e.content_type = None;
        let v = rewritten(&e);
        assert_base(&v, 500, 999);
        let detail = v["detail"].as_str().expect("detail");
        assert!(detail.len() <= MAX_TEXT && detail.chars().all(|c| c == 'é'));
        assert_eq!(detail.chars().count(), 256);
        assert_eq!(v["message"], detail);
    }

    #[test]
    fn waf_403_text_by_route_kind() {
        let body = b"Request forbidden by administrative rules.\n";
        let mut e = err(403, body);
        e.content_type = Some("text/plain");
        let v = rewritten(&e);
        assert_base(&v, 403, 999);
        assert_eq!(v["message"], "Request forbidden by administrative rules.");
        assert_eq!(v["detail"], "Request forbidden by administrative rules.");
        e.bearer_route = true;
        let v = rewritten(&e);
        assert_base(&v, 403, 100);
        assert_eq!(v["message"], "Request forbidden by administrative rules.");
    }

    #[test]
    fn empty_403_messages_follow_route_kind() {
        let mut e = err(403, b"");
        assert_eq!(rewritten(&e)["message"], "Forbidden");
        e.bearer_route = true;
        let v = rewritten(&e);
        assert_base(&v, 403, 100);
        assert_eq!(v["message"], "Unauthorized");
    }

    #[test]
    fn empty_504_has_no_detail() {
        let mut e = err(504, b"");
        e.upstream = "auth";
        let v = rewritten(&e);
        assert_base(&v, 504, 203);
        assert_eq!(v["message"], "System unavailable, try again soon");
        assert_eq!(v["service"], "auth");
        assert!(v.get("detail").is_none() && v.get("detailTruncated").is_none());
        assert!(v.get("retryAfter").is_none());
    }

    #[test]
    fn whitespace_only_body_is_empty() {
        let v = rewritten(&err(404, b" \r\n\t "));
        assert_base(&v, 404, 999);
        assert_eq!(v["message"], "Not Found");
        assert!(v.get("detail").is_none());
    }

    #[test]
    fn bare_json_values_become_detail() {
        let v = rewritten(&err(400, br#""bad thing happened""#));
        assert_eq!(
            (v["message"].clone(), v["detail"].clone()),
            (json!("bad thing happened"), json!("bad thing happened"))
        );
        let v = rewritten(&err(400, b"17"));
        assert_eq!(
            (v["message"].clone(), v["detail"].clone()),
            (json!("Bad Request"), json!(17))
        );
        let v = rewritten(&err(409, b"[1, \"two\"]"));
        assert_base(&v, 409, 999);
        assert_eq!(v["detail"], json!([1, "two"]));
        assert_eq!(v["message"], "Conflict");
        let v = rewritten(&err(500, b"null"));
        assert_eq!(v["detail"], Value::Null);
        assert_eq!(v["message"], "Internal Server Error");
    }

    #[test]
    fn other_json_object_kept_whole() {
        let body =
            br#"{"error": "invalid_grant", "error_description": "Token expired", "code": "x"}"#;
        let v = rewritten(&err(400, body));
        assert_base(&v, 400, 999);
        assert_eq!(v["message"], "Token expired");
        assert_eq!(v["detail"]["error"], "invalid_grant");
        assert_eq!(v["detail"]["code"], "x");
    }

    #[test]
    fn upstream_retry_after_in_body_wins() {
        let body =
            br#"{"message": "slow down", "retryAfter": 45, "retryAfterLocalized": "in a bit"}"#;
        let mut e = err(429, body);
        e.retry_after = Some(10);
        let v = rewritten(&e);
        assert_base(&v, 429, 114);
        assert_eq!(v["message"], "slow down");
        assert_eq!(v["retryAfter"], 45);
        assert_eq!(v["retryAfterLocalized"], "in a bit");
    }

    #[test]
    fn retry_after_header_only_on_429_500_503() {
        let mut e = err(404, b"");
        e.retry_after = Some(5);
        assert!(rewritten(&e).get("retryAfter").is_none());
        e.status = StatusCode::INTERNAL_SERVER_ERROR;
        assert_eq!(rewritten(&e)["retryAfter"], 5);
    }

    #[test]
    fn gzip_cornice_is_decoded() {
        let body = gzip(br#"{"status": "invalid-generation", "errors": [{"location": "body", "name": "", "description": "Unauthorized"}]}"#);
        let mut e = err(401, &body);
        e.content_encoding = Some("GZIP");
        let v = rewritten(&e);
        assert_base(&v, 401, 110);
        assert_eq!(v["upstreamStatus"], "invalid-generation");
        e.content_encoding = Some("x-gzip");
        assert_eq!(rewritten(&e)["upstreamStatus"], "invalid-generation");
    }

    #[test]
    fn deflate_zlib_and_raw_are_decoded() {
        let json = br#"{"detail": "Not found."}"#;
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(json).expect("zlib");
        let zlib = zlib.finish().expect("zlib");
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(json).expect("deflate");
        let raw = raw.finish().expect("deflate");
        for body in [zlib, raw] {
            let mut e = err(404, &body);
            e.content_encoding = Some("deflate");
            assert_eq!(rewritten(&e)["message"], "Not found.");
        }
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let bomb = gzip(&vec![b' '; 8 * 1024 * 1024]);
        assert!(bomb.len() < CAP);
        let mut e = err(500, &bomb);
        e.content_encoding = Some("gzip");
        let v = rewritten(&e);
        assert_base(&v, 500, 999);
        assert_eq!(v["detailTruncated"], true);
        assert!(v.get("detail").is_none());
        assert!(matches!(
            decode(&bomb, Some("gzip"), 1000),
            Decoded::OverCap
        ));
    }

    #[test]
    fn inflate_never_holds_more_than_the_cap() {
        let data = gzip(&[b'a'; 5000]);
        match decode(&data, Some("gzip"), 5000) {
            Decoded::Bytes(bytes) => assert!(
                bytes.len() == 5000 && matches!(bytes, Cow::Owned(ref v) if v.capacity() <= 5000)
            ),
            _ => panic!("exactly at the cap decodes"),
        }
        assert!(matches!(
            decode(&data, Some("gzip"), 4999),
            Decoded::OverCap
        ));
        assert!(matches!(decode(&data, Some("gzip"), 0), Decoded::OverCap));
    }

    #[test]
    fn corrupt_gzip_and_brotli_have_no_detail() {
        let errno_json = br#"{"code": 401, "errno": 110, "error": "Unauthorized", "message": "x"}"#;
        for (encoding, body) in [
            ("br", &errno_json[..]),
            ("zstd", &errno_json[..]),
            ("gzip", b"not gzip at all"),
            ("gzip, br", &errno_json[..]),
        ] {
            let mut e = err(401, body);
            e.content_encoding = Some(encoding);
            let v = rewritten(&e);
            assert_base(&v, 401, 110);
            assert_eq!(v["message"], "Invalid authentication token");
            assert!(
                v.get("detail").is_none() && v.get("upstreamStatus").is_none(),
                "{v}"
            );
        }
    }

    #[test]
    fn body_over_cap_is_flagged() {
        let mut e = err(503, b"");
        e.body = None;
        e.retry_after = Some(30);
        let v = rewritten(&e);
        assert_base(&v, 503, 201);
        assert_eq!(v["detailTruncated"], true);
        assert_eq!(v["retryAfter"], 30);
        assert_eq!(v["message"], "Service unavailable");
    }

    #[test]
    fn errno_shaped_bodies_pass_through() {
        let profile = br#"{"code": 401, "errno": 100, "error": "Bad Request", "message": "Unauthorized", "reason": "Bearer token not provided"}"#;
        assert_eq!(rewrite(&err(401, profile), CAP), Verdict::PassThrough);
        let auth = br#"{"code": 429, "errno": 114, "error": "Too Many Requests", "message": "Client has sent too many requests", "info": "https://x", "retryAfter": 30, "retryAfterLocalized": "in 30 seconds", "verificationMethod": "email-captcha", "somethingNew": {"a": [1]}}"#;
        let mut e = err(429, auth);
        e.retry_after = Some(30);
        assert_eq!(rewrite(&e, CAP), Verdict::PassThrough);
    }

    #[test]
    fn errno_shaped_gzip_passes_through() {
        let body = gzip(br#"{"code": 400, "errno": 107, "error": "Bad Request", "message": "Invalid parameter in request body", "validation": {}}"#);
        let mut e = err(400, &body);
        e.content_encoding = Some("gzip");
        assert_eq!(rewrite(&e, CAP), Verdict::PassThrough);
        assert!(!is_errno_shaped(&body));
    }

    #[test]
    fn errno_shape_needs_integer_errno_and_code() {
        assert!(is_errno_shaped(br#"{"code": 404, "errno": 999}"#));
        assert!(is_errno_shaped(
            b"\xEF\xBB\xBF{\"code\": 404, \"errno\": 999}"
        ));
        assert!(!is_errno_shaped(br#"{"errno": 999}"#));
        assert!(!is_errno_shaped(br#"{"code": 404, "errno": "999"}"#));
        assert!(!is_errno_shaped(br#"{"code": 404.5, "errno": 999}"#));
        assert!(!is_errno_shaped(br#"[{"code": 404, "errno": 999}]"#));
        assert!(!is_errno_shaped(b"\xff\xfe"));
        assert!(!is_errno_shaped(b""));
    }

    #[test]
    fn errno_table() {
        let s = |n| StatusCode::from_u16(n).expect("status");
        assert_eq!(errno_for_status(s(401), false), 110);
        assert_eq!(errno_for_status(s(403), true), 100);
        assert_eq!(errno_for_status(s(403), false), 999);
        assert_eq!(errno_for_status(s(429), true), 114);
        assert_eq!(errno_for_status(s(503), false), 201);
        assert_eq!(errno_for_status(s(502), false), 203);
        assert_eq!(errno_for_status(s(504), false), 203);
        for other in [400, 404, 405, 410, 413, 500, 501, 599] {
            assert_eq!(errno_for_status(s(other), true), 999);
        }
    }

    #[test]
    fn invalid_utf8_is_lossy_and_odd_statuses_work() {
        let v = rewritten(&err(599, b"bad \xff\xfe bytes"));
        assert_base(&v, 599, 999);
        assert_eq!(v["error"], "Error");
        assert_eq!(v["message"], "bad \u{fffd}\u{fffd} bytes");
    }

    #[test]
    fn unterminated_markup_does_not_panic() {
        for body in [
            "<html><script>never closed",
            "<title>t",
            "<html><!-- open",
            "<html><style",
            "<html>a<",
        ] {
            let v = rewritten(&err(500, body.as_bytes()));
            assert_base(&v, 500, 999);
        }
        assert_eq!(rewritten(&err(500, b"<title>t"))["message"], "t");
    }

    fn encodings() -> impl Strategy<Value = Option<&'static str>> {
        prop::sample::select(vec![
            None,
            Some("gzip"),
            Some("x-gzip"),
            Some("deflate"),
            Some("br"),
            Some("zstd"),
            Some("identity"),
            Some(""),
        ])
    }

    fn bodies() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..512),
            "\\{\"(errno|code|errors|detail|status|error|retryAfter)\": ?(-?[0-9]{1,25}(\\.[0-9])?|\"[a-z]*\"|\\[[^\\]]{0,20}\\]|\\{[^}]{0,20}\\}|null)[^}]{0,30}\\}?"
                .prop_map(String::into_bytes),
            "<[a-zA-Z!/ -]{0,10}>?[^<]{0,40}(<(script|style|title|!--)[^<]{0,20})?.{0,30}".prop_map(String::into_bytes),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_and_always_answers_errno_json(
            raw in bodies(),
            status in 400u16..=999,
            encoding in encodings(),
            compress in any::<bool>(),
            html in any::<bool>(),
            bearer in any::<bool>(),
            missing in prop::bool::weighted(0.05),
            retry_after in prop::option::of(any::<u64>()),
            cap in prop::sample::select(vec![0usize, 16, 4096, CAP]),
        ) {
            let body = if compress { gzip(&raw) } else { raw.clone() };
            let e = UpstreamError {
                status: StatusCode::from_u16(status).expect("status in range"),
                content_type: html.then_some("text/html"),
                content_encoding: encoding,
                body: (!missing).then_some(&body[..]),
                bearer_route: bearer,
                upstream: "up",
                retry_after,
            };
            match rewrite(&e, cap) {
                Verdict::PassThrough => {
                    let decoded = match decode(&body, encoding, cap) {
                        Decoded::Bytes(b) => b.into_owned(),
                        _ => Vec::new(),
                    };
                    prop_assert!(!missing && is_errno_shaped(&decoded));
                }
                Verdict::Rewritten(bytes) => {
                    let v: Value = serde_json::from_slice(&bytes).expect("valid JSON");
                    prop_assert_eq!(&v["code"], &json!(status));
                    prop_assert_eq!(&v["errno"], &json!(errno_for_status(e.status, bearer)));
                    prop_assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
                    prop_assert!(v["error"].is_string());
                }
            }
        }
    }
}
