//! Micro-benchmarks of the hot pure functions: route selection, header hygiene and error
//! rewriting. Run with `cargo bench`. Figures are for comparing changes on one machine, in one
//! run; the side-by-side load benchmark against nginx is separate.

use std::hint::black_box;
use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use fxa_gateway::config::{AuthPolicy, RouteConfig};
use fxa_gateway::headers;
use fxa_gateway::rewrite::{self, UpstreamError};
use fxa_gateway::routing::Router;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

fn route(name: &str, prefix: &str, versions: &[&str]) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        host: None,
        path_prefix: prefix.into(),
        upstream: 0,
        strip_prefix: true,
        methods: Some(vec![Method::GET, Method::POST]),
        versions: versions.iter().map(|v| v.to_string()).collect(),
        deprecated_versions: vec![],
        rewrite_errors: true,
        auth: AuthPolicy::None,
        quota: None,
        backoff_scope: Default::default(),
        refresh: None,
    }
}

fn bench_routing(c: &mut Criterion) {
    let routes = vec![
        route("profile", "/profile", &["v1"]),
        route("oauth", "/oauth", &["v1"]),
        route("token", "/token", &["1.0"]),
        route("amo", "/amo/api", &["v5", "v4"]),
        route("root", "/", &[]),
    ];
    let router = Router::new(&routes);
    let now = SystemTime::now();
    c.bench_function("route_select_profile", |b| {
        b.iter(|| {
            router
                .select(
                    black_box(Some("gw.example")),
                    black_box("/profile/v1/profile"),
                    &Method::GET,
                    now,
                )
                .is_ok()
        })
    });
}

fn bench_headers(c: &mut Criterion) {
    let mut base = HeaderMap::new();
    for (k, v) in [
        ("accept", "application/json"),
        ("user-agent", "bench/1.0"),
        ("authorization", "Bearer 0123456789abcdef"),
        ("connection", "keep-alive"),
        ("x-fxa-uid", "spoof"),
        ("accept-encoding", "gzip"),
    ] {
        base.insert(k, HeaderValue::from_static(v));
    }
    let host = HeaderValue::from_static("gw.example");
    let via = HeaderValue::from_static("1.1 fxa-gateway");
    let peer = HeaderValue::from_static("127.0.0.1");
    c.bench_function("header_hygiene_request", |b| {
        b.iter(|| {
            let mut h = base.clone();
            headers::strip_hop_by_hop(&mut h);
            headers::strip_gateway_namespace(&mut h);
            let origin = headers::Origin {
                peer: "127.0.0.1".parse().unwrap(),
                tls: false,
                host: Some(&host),
                peer_header: Some(&peer),
            };
            headers::set_forwarding(&mut h, &origin, &[], &via);
            black_box(h)
        })
    });
}

fn bench_rewrite(c: &mut Criterion) {
    let cornice = br#"{"status":"invalid-credentials","errors":[{"location":"body","name":"","description":"Unauthorized"}]}"#;
    let errno = br#"{"code":401,"errno":110,"error":"Unauthorized","message":"Invalid authentication token"}"#;
    let html = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>";
    let cases: [(&str, StatusCode, &[u8]); 3] = [
        ("rewrite_cornice_401", StatusCode::UNAUTHORIZED, cornice),
        ("passthrough_errno_401", StatusCode::UNAUTHORIZED, errno),
        ("rewrite_html_502", StatusCode::BAD_GATEWAY, html),
    ];
    for (name, status, body) in cases {
        c.bench_function(name, |b| {
            b.iter(|| {
                let e = UpstreamError {
                    status,
                    content_type: Some("application/json"),
                    content_encoding: None,
                    body: Some(black_box(body)),
                    bearer_route: false,
                    upstream: "tokenserver",
                    retry_after: None,
                };
                black_box(rewrite::rewrite(&e, 65536))
            })
        });
    }
}

criterion_group!(benches, bench_routing, bench_headers, bench_rewrite);
criterion_main!(benches);
