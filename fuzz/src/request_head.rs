//! Request heads as the gateway sees them after hyper: the bytes are an HTTP/1.1 head, read by
//! httparse (hyper's parser) and turned into a `Request` as hyper does; the first byte picks
//! the version (HTTP/2 requests reach the pipeline as the same `Request`, absolute-form target
//! = `:scheme` + `:authority` + `:path`) and the connection's facts. Then the pipeline's steps
//! up to the upstream call: head checks, routing, the route's scope requirement, the caller's
//! refresh token and bearer token, and header hygiene with the forwarding headers.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use fxa_gateway::auth::{bearer, refresh, scheme};
use fxa_gateway::config::{self, AuthPolicy, IpNet};
use fxa_gateway::headers::{self, Origin};
use fxa_gateway::routing::Router;
use fxa_gateway::upstream::Upstream;
use fxa_gateway::{fuzzing, request_id};
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Uri, Version};
use http_body_util::Empty;

/// Routes of every kind the router tells apart: host-bound, versioned, deprecated with and
/// without sunset, method-restricted, prefix kept and stripped, bearer presets and endpoint
/// tables, and a catch-all.
const ROUTES: &str = r#"
trusted_proxies = ["10.0.0.0/8"]
[[listeners]]
name = "edge"
addr = "127.0.0.1:8080"
[admin]
addr = "127.0.0.1:8081"
[bearer]
oauth_upstream = "fxa"
[[upstreams]]
name = "fxa"
url = "https://fxa.example/base"
[[upstreams]]
name = "api"
url = "http://127.0.0.1:9000"
[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "fxa"
versions = ["v1"]
auth = { policy = "bearer", preset = "profile" }
[[routes]]
name = "oauth"
host = "oauth.example"
path_prefix = "/"
upstream = "fxa"
strip_prefix = false
auth = { policy = "bearer", preset = "oauth" }
[[routes]]
name = "token"
path_prefix = "/token"
upstream = "fxa"
versions = ["1.0"]
auth = { policy = "bearer", preset = "tokenserver" }
[[routes]]
name = "amo"
path_prefix = "/amo/api"
upstream = "api"
versions = ["v5", "v4", "v3"]
methods = ["GET", "POST"]
[[routes.deprecated_versions]]
version = "v4"
deprecation = "2021-02-01"
[[routes.deprecated_versions]]
version = "v3"
deprecation = "2021-02-01"
sunset = "2021-12-31"
[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
[routes.auth]
policy = "bearer"
scopes = ["profile", "https://identity.mozilla.com/apps/oldsync"]
identity_headers = true
[[routes.auth.endpoints]]
path = "/v1/public"
methods = ["GET"]
[[routes.auth.endpoints]]
path = "/v1/email"
scopes = ["profile:email"]
[[routes]]
name = "all"
path_prefix = "/"
upstream = "api"
"#;

struct World {
    router: Router,
    upstreams: Vec<Arc<Upstream>>,
    trusted: Vec<IpNet>,
    via: HeaderValue,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    fxa_gateway::install_crypto_provider();
    let config = config::parse_with_env(ROUTES, Path::new("fuzz.toml"), Path::new("."), &|_| None)
        .unwrap_or_else(|e| panic!("the fuzz routes do not load: {e}"));
    let upstreams = config
        .upstreams
        .iter()
        .map(|u| Upstream::new(u).map(Arc::new).expect("upstream"))
        .collect();
    World {
        router: Router::new(&config.routes),
        trusted: config.trusted_proxies.clone(),
        upstreams,
        via: HeaderValue::from_static("1.1 fxa-gateway"),
    }
});

/// Makes sure the fixed world builds before AFL starts forking (and before the first input).
pub fn init() {
    LazyLock::force(&WORLD);
}

pub fn run(data: &[u8]) {
    let Some((&flags, head)) = data.split_first() else {
        return;
    };
    let Some(mut req) = hyper_request(head, flags & 1 != 0) else {
        return;
    };
    let allow_underscore = flags & 2 != 0;
    let peer = if flags & 4 != 0 {
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)) // a trusted proxy
    } else {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))
    };
    let tls = flags & 8 != 0;
    let accepts_refresh = flags & 16 != 0;
    let world = &*WORLD;

    let Ok(head) = fuzzing::request_head(&req) else {
        return;
    };
    let path = req.uri().path();
    assert_no_dot_segments(path);
    let forwarded_host = head.forwarded_host.clone();
    let Ok(matched) = world
        .router
        .select(head.host, path, req.method(), crate::now())
    else {
        return;
    };
    let rest = &path[matched.rest_start..];
    assert!(rest.is_empty() || rest.starts_with('/'), "rest {rest:?}");
    let route = &matched.route.config;
    let upstream = &world.upstreams[route.upstream];
    let sent_path = if route.strip_prefix { rest } else { path };
    if let Ok(uri) = upstream.uri_for(sent_path, req.uri().query()) {
        assert_no_dot_segments(uri.path());
    }
    let _ = request_id::is_well_formed(
        req.headers()
            .get(request_id::HEADER)
            .unwrap_or(&HeaderValue::from_static("")),
    );
    let _ = refresh::caller_refresh_token(req.headers(), accepts_refresh, route.refresh.is_some());
    if let AuthPolicy::Bearer(policy) = &route.auth {
        let _ = bearer::required_scopes(policy, req.method(), rest, req.headers());
    }
    if let Ok(token) = scheme::bearer_token(req.headers()) {
        assert!(scheme::bearer_value(token).is_ok());
    }
    scheme::canonicalize(req.headers_mut());

    let hs = req.headers_mut();
    headers::strip_hop_by_hop(hs);
    headers::strip_gateway_namespace(hs);
    headers::strip_underscore_names(hs, allow_underscore);
    headers::join_cookies(hs);
    hs.remove(header::HOST);
    let origin = Origin {
        peer,
        tls,
        host: forwarded_host.as_ref(),
        peer_header: None,
    };
    headers::set_forwarding(hs, &origin, &world.trusted, &world.via);
    assert_hygienic(hs, allow_underscore, flags & 4 != 0, tls);
}

/// A request as hyper's HTTP/1.1 server makes it from `head` (`h2`: with version HTTP/2).
fn hyper_request(head: &[u8], h2: bool) -> Option<Request<Empty<Bytes>>> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut fields);
    parsed.parse(head).ok()?;
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri: Uri = parsed.path?.parse().ok()?;
    let version = match (h2, parsed.version?) {
        (true, _) => Version::HTTP_2,
        (false, 0) => Version::HTTP_10,
        (false, _) => Version::HTTP_11,
    };
    let mut req = Request::builder().method(method).uri(uri).version(version);
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(field.value).ok()?;
        req = req.header(name, value);
    }
    req.body(Empty::new()).ok()
}

/// A target the checks let through has no dot segment, also once percent-decoded (the upstream
/// may decode it) and with `\` read as `/`.
fn assert_no_dot_segments(path: &str) {
    let decoded = percent_decode(path.as_bytes());
    for segment in decoded.split(|b| *b == b'/' || *b == b'\\') {
        assert!(
            segment != b"." && segment != b"..",
            "dot segment in accepted path {path:?}"
        );
    }
    assert!(!decoded.contains(&0), "NUL in accepted path {path:?}");
}

fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// What hygiene promises for the headers that go upstream.
fn assert_hygienic(hs: &http::HeaderMap, allow_underscore: bool, trusted: bool, tls: bool) {
    const HOP_BY_HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ];
    for name in hs.keys() {
        let name = name.as_str();
        assert!(!name.starts_with("x-fxa-"), "{name} went upstream");
        assert!(!HOP_BY_HOP.contains(&name), "{name} went upstream");
        let dashed = name.replace('_', "-");
        assert!(!dashed.starts_with("x-fxa-"), "{name} went upstream");
        if !allow_underscore {
            assert!(!name.contains('_'), "{name} went upstream");
        }
    }
    assert!(hs.get(header::HOST).is_none());
    assert!(hs.get_all(header::COOKIE).iter().count() <= 1);
    if !trusted {
        assert_eq!(hs.get(headers::X_FORWARDED_FOR).unwrap(), "192.0.2.7");
        let proto = if tls { "https" } else { "http" };
        assert_eq!(hs.get(headers::X_FORWARDED_PROTO).unwrap(), proto);
    }
    assert_eq!(hs.get_all(headers::X_FORWARDED_FOR).iter().count(), 1);
}
