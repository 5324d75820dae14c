//! Header hygiene for both directions: hop-by-hop headers never cross the gateway, the
//! gateway-only `X-FxA-*` namespace never leaks upstream or back out, and the forwarding
//! headers say truthfully where the request came from.
//!
//! Never forwards a caller's `X-FxA-*` header: later features put identity and refresh tokens
//! there, so a caller-supplied one would be a spoof or a leaked credential.

use std::net::IpAddr;

use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

use crate::config::IpNet;

/// Headers defined as hop-by-hop by RFC 9110 §7.6.1 plus the legacy ones proxies still see, and
/// `Transfer-Encoding`: hyper frames bodies itself on each hop. `Connection` comes first.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// FxA's back-off hints on any answer (seconds), read by the back-off gate.
pub const BACKOFF: HeaderName = HeaderName::from_static("backoff");
pub const X_BACKOFF: HeaderName = HeaderName::from_static("x-backoff");

/// Prefix of the gateway-only header namespace.
const GATEWAY_PREFIX: &[u8] = b"x-fxa-";

/// Request headers the gateway sets, reads or strips on the way upstream, besides the
/// `X-FxA-*` namespace and [`HOP_BY_HOP`]: an underscore spelling of one is never forwarded.
const GATEWAY_OWNED: [HeaderName; 9] = [
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    crate::request_id::HEADER,
    header::VIA,
    header::HOST,
    header::AUTHORIZATION,
    header::COOKIE,
    header::CONTENT_LENGTH,
];

/// Removes hop-by-hop headers, including every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present (usually none, or `Connection` alone):
    // cheaper than a hashed removal for each of them.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0
        && let Some(conn) = headers.get(header::CONNECTION)
    {
        let named: Vec<HeaderName> = conn
            .to_str()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            // `keep-alive` and the like go below anyway; no need to parse them.
            .filter(|n| {
                !HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(n))
            })
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// The index of `name` in [`HOP_BY_HOP`]: a `match` on the name's text (length first) rather
/// than nine `HeaderName` comparisons per header, on every request and response.
fn hop_by_hop_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "proxy-authenticate" => 3,
        "proxy-authorization" => 4,
        "te" => 5,
        "trailer" => 6,
        "upgrade" => 7,
        "transfer-encoding" => 8,
        _ => return None,
    })
}

/// Removes every `X-FxA-*` header.
pub fn strip_gateway_namespace(headers: &mut HeaderMap) {
    if !headers.keys().any(is_gateway_header) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_gateway_header(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

fn is_gateway_header(name: &HeaderName) -> bool {
    name.as_str().as_bytes().starts_with(GATEWAY_PREFIX)
}

/// Drops request header names with an underscore: CGI and WSGI servers read `X_FxA_Uid` as
/// `X-FxA-Uid`, so one could pass for a header the gateway vouches for. With `allow`, only
/// those that read as a header the gateway sets or strips are dropped (nginx drops them all
/// unless `underscores_in_headers` is on).
pub fn strip_underscore_names(headers: &mut HeaderMap, allow: bool) {
    let dropped = |name: &HeaderName| {
        name.as_str().contains('_') && (!allow || reads_as_gateway_owned(name.as_str()))
    };
    if !headers.keys().any(dropped) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| dropped(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// `name` (lower case, as `HeaderName` keeps it) with `_` read as `-` is the gateway's own.
fn reads_as_gateway_owned(name: &str) -> bool {
    let dashed = name.replace('_', "-");
    dashed.as_bytes().starts_with(GATEWAY_PREFIX)
        || GATEWAY_OWNED
            .iter()
            .chain(&HOP_BY_HOP)
            .any(|h| h.as_str() == dashed)
}

/// Joins several `Cookie` fields into one with `"; "` (RFC 9113 §8.2.3): HTTP/2 clients send
/// each cookie as a field of its own, and an HTTP/1.1 upstream expects exactly one.
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    if values.next().is_none() || values.next().is_none() {
        return;
    }
    let mut joined = Vec::new();
    for value in headers.get_all(header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(mut value) = HeaderValue::from_bytes(&joined) {
        value.set_sensitive(true);
        headers.insert(header::COOKIE, value);
    }
}

/// Where the request came from, for the forwarding headers.
pub struct Origin<'a> {
    pub peer: IpAddr,
    pub tls: bool,
    /// Host the caller asked for (`Host` or `:authority`), if any.
    pub host: Option<&'a HeaderValue>,
    /// `peer` already rendered as a header value, when the caller has it.
    pub peer_header: Option<&'a HeaderValue>,
}

/// The peer address as a header value (computed once per connection by the listener).
pub fn peer_header(peer: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Via`. A trusted proxy's `X-Forwarded-*` are kept and
/// extended; anyone else's are replaced, so a caller cannot forge its address. The standard
/// `Forwarded` header (RFC 7239) says the same things: a trusted proxy's is passed on, anyone
/// else's is removed (the `X-Forwarded-*` set here are the gateway's account).
pub fn set_forwarding(
    headers: &mut HeaderMap,
    origin: &Origin<'_>,
    trusted: &[IpNet],
    via: &HeaderValue,
) {
    let peer_trusted = trusted.iter().any(|net| net.contains(origin.peer));
    let peer = match origin.peer_header {
        Some(v) => v.clone(),
        None => peer_header(origin.peer),
    };
    // One hashed lookup per name: an entry where the prior value is read, else insert/remove.
    match headers.entry(X_FORWARDED_FOR) {
        Entry::Occupied(mut e) => {
            let value = if peer_trusted {
                join(e.get(), &peer)
            } else {
                peer
            };
            e.insert(value);
        }
        Entry::Vacant(e) => {
            e.insert(peer);
        }
    }
    if !peer_trusted {
        headers.remove(header::FORWARDED);
    }
    let proto = HeaderValue::from_static(if origin.tls { "https" } else { "http" });
    if peer_trusted {
        headers.entry(X_FORWARDED_PROTO).or_insert(proto);
    } else {
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    match origin.host {
        Some(host) if peer_trusted => {
            headers
                .entry(X_FORWARDED_HOST)
                .or_insert_with(|| host.clone());
        }
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        None if peer_trusted => {}
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
    append_via(headers, via);
}

/// Appends our `Via` entry to any existing ones.
pub fn append_via(headers: &mut HeaderMap, via: &HeaderValue) {
    match headers.entry(header::VIA) {
        Entry::Occupied(mut e) => {
            let joined = join(e.get(), via);
            e.insert(joined);
        }
        Entry::Vacant(e) => {
            e.insert(via.clone());
        }
    }
}

fn join(prior: &HeaderValue, next: &HeaderValue) -> HeaderValue {
    let mut buf = Vec::with_capacity(prior.len() + 2 + next.len());
    buf.extend_from_slice(prior.as_bytes());
    buf.extend_from_slice(b", ");
    buf.extend_from_slice(next.as_bytes());
    HeaderValue::from_bytes(&buf).unwrap_or_else(|_| next.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str, len: u8) -> IpNet {
        IpNet {
            addr: s.parse().unwrap(),
            prefix_len: len,
        }
    }

    #[test]
    fn the_hop_by_hop_match_agrees_with_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name), Some(i), "{name}");
        }
        for other in [
            "host",
            "te-x",
            "connections",
            "x-keep-alive",
            "upgrade-insecure-requests",
        ] {
            assert_eq!(hop_by_hop_index(&HeaderName::from_static(other)), None);
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn headers_without_hop_by_hop_ones_are_left_alone() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert("x-custom", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);

        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Custom"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn gateway_namespace_is_removed_whatever_the_case() {
        let mut h = HeaderMap::new();
        h.insert("X-FxA-Uid", HeaderValue::from_static("spoof"));
        h.insert("x-fxa-refresh-token", HeaderValue::from_static("secret"));
        h.insert("x-fxaother", HeaderValue::from_static("kept"));
        strip_gateway_namespace(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-fxaother"));
    }

    #[test]
    fn underscore_names_are_dropped_and_the_gateways_own_always() {
        let names = [
            "x_fxa_uid",
            "x_forwarded_for",
            "x_request_id",
            "proxy_authorization",
            "transfer_encoding",
            "x_custom",
            "x-plain",
        ];
        let headers = || {
            let mut h = HeaderMap::new();
            for name in names {
                h.insert(name, HeaderValue::from_static("v"));
            }
            h
        };
        let mut h = headers();
        strip_underscore_names(&mut h, false);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-plain"]
        );
        let mut h = headers();
        strip_underscore_names(&mut h, true);
        let mut kept: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        kept.sort();
        assert_eq!(kept, ["x-plain", "x_custom"]);
    }

    #[test]
    fn cookie_fields_are_joined_into_one() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        join_cookies(&mut h);
        assert_eq!(h.get_all(header::COOKIE).iter().count(), 1);
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        join_cookies(&mut h);
        let all: Vec<_> = h.get_all(header::COOKIE).iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
    }

    #[test]
    fn untrusted_peer_cannot_forge_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        let host = HeaderValue::from_static("gw.example");
        let origin = Origin {
            peer: "192.0.2.7".parse().unwrap(),
            tls: false,
            host: Some(&host),
            peer_header: None,
        };
        set_forwarding(
            &mut h,
            &origin,
            &[net("10.0.0.0", 8)],
            &HeaderValue::from_static("1.1 fxa-gateway"),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "192.0.2.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_FORWARDED_HOST], "gw.example");
        assert_eq!(h[header::VIA], "1.1 fxa-gateway");
    }

    #[test]
    fn trusted_proxy_chain_is_extended() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("1.2.3.4"));
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(header::VIA, HeaderValue::from_static("1.1 lb"));
        let origin = Origin {
            peer: "10.1.2.3".parse().unwrap(),
            tls: false,
            host: None,
            peer_header: None,
        };
        set_forwarding(
            &mut h,
            &origin,
            &[net("10.0.0.0", 8)],
            &HeaderValue::from_static("1.1 fxa-gateway"),
        );
        assert_eq!(h[&X_FORWARDED_FOR], "1.2.3.4, 10.1.2.3");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[header::VIA], "1.1 lb, 1.1 fxa-gateway");
    }
}
