//! Soak driver for `benches/soak.sh`: a fake FxA (OAuth introspection and token endpoints, a
//! resource API, a flaky API that opens and closes back-off windows, AMO) and a mixed-traffic
//! client that exercises every feature of the gateway and checks every answer.
//!
//! ```text
//! soak fake PORT                       # the fake FxA on 127.0.0.1:PORT, until killed
//! soak drive GATEWAY_ADDR SECONDS RATE # mixed traffic at RATE requests/s for SECONDS
//! ```
//!
//! `drive` prints a line every 10 s and a summary per kind of request; it exits with 1 when any
//! answer was not one the kind allows (an "unexpected error").

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The AMO issuer the gateway verifies (`[[amo_issuers]]` in soak.sh's config).
const ISSUER: &str = "soak:1";
const ISSUER_SECRET: &str = "soak-issuer-secret-0123456789abcdef";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match args.first().map(String::as_str) {
        Some("fake") => {
            let port: u16 = args.get(1).and_then(|p| p.parse().ok()).expect("PORT");
            rt.block_on(fake(port));
        }
        Some("drive") => {
            let addr: SocketAddr = args.get(1).and_then(|a| a.parse().ok()).expect("ADDR");
            let secs: u64 = args.get(2).and_then(|s| s.parse().ok()).expect("SECONDS");
            let rate: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
            let ok = rt.block_on(drive(addr, Duration::from_secs(secs), rate));
            std::process::exit(if ok { 0 } else { 1 });
        }
        _ => {
            eprintln!("usage: soak fake PORT | soak drive ADDR SECONDS [RATE]");
            std::process::exit(2);
        }
    }
}

// === the fake FxA ===

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Serves every fake service on one port, told apart by the first path segment (each gateway
/// upstream has its own base path).
async fn fake(port: u16) {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the fake FxA");
    let minted = Arc::new(AtomicU64::new(0));
    println!("FAKE ready on {port}");
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let minted = minted.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let minted = minted.clone();
                async move { Ok::<_, Infallible>(answer(req, &minted).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), service)
                .await;
        });
    }
}

fn json(status: u16, value: serde_json::Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(value.to_string())))
        .unwrap()
}

fn fxa_error(status: u16, errno: u16, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({"code": status, "errno": errno, "error": "Error", "message": message}),
    )
}

/// A form body's field (the values here need no percent-decoding: letters, digits, `-`, `_`).
fn field(body: &[u8], name: &str) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn answer(req: Request<Incoming>, minted: &AtomicU64) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    match path.as_str() {
        // Introspection: `good-*`, `stale-*` (the API refuses it: refresh), `fresh-*` (minted
        // by a refresh) are active with scope `profile`; `narrow-*` has another scope; the rest
        // is inactive.
        "/oauth/v1/introspect" => {
            let token = field(&body, "token").unwrap_or_default();
            let scope = if token.starts_with("narrow-") {
                "openid"
            } else {
                "profile"
            };
            let active = ["good-", "stale-", "fresh-", "narrow-"]
                .iter()
                .any(|p| token.starts_with(p));
            if !active {
                return json(200, serde_json::json!({"active": false}));
            }
            let uid = format!(
                "{:032x}",
                token.len() as u64 * 7919 + token.as_bytes()[token.len() - 1] as u64
            );
            json(
                200,
                serde_json::json!({
                    "active": true, "scope": scope, "client_id": "5882386c6d801776",
                    "token_type": "access_token", "sub": uid,
                    "iat": now_ms() - 1000, "exp": now_ms() + 60_000,
                }),
            )
        }
        // Refresh (tokens are 64 hex characters): one starting with `a` mints a new access
        // token, any other is refused (reauth).
        "/oauth/v1/token" => {
            let refresh = field(&body, "refresh_token").unwrap_or_default();
            if field(&body, "grant_type").as_deref() != Some("refresh_token") {
                return fxa_error(400, 109, "Invalid request parameter");
            }
            if !refresh.starts_with('a') {
                return fxa_error(400, 108, "Invalid token");
            }
            let n = minted.fetch_add(1, Ordering::Relaxed);
            json(
                200,
                serde_json::json!({
                    "access_token": format!("fresh-{n:016x}"), "token_type": "bearer",
                    "scope": "profile", "expires_in": 60,
                }),
            )
        }
        // The resource API: refuses `stale-*` tokens like an expired one.
        p if p.starts_with("/api/") => {
            if bearer.starts_with("stale-") {
                return fxa_error(401, 110, "Invalid authentication token");
            }
            match p {
                "/api/v1/error" => Response::builder()
                    .status(500)
                    .header("content-type", "text/html")
                    .body(Full::new(Bytes::from_static(
                        b"<html>internal error</html>",
                    )))
                    .unwrap(),
                "/api/v1/missing" => fxa_error(404, 999, "Not Found"),
                "/api/v1/slow" => {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    json(200, serde_json::json!({"slow": true}))
                }
                _ => json(
                    200,
                    serde_json::json!({"ok": true, "method": parts.method.as_str(), "len": body.len()}),
                ),
            }
        }
        // A service with outages: 503 + Retry-After: 2 for 3 s of every 20 s.
        p if p.starts_with("/flaky/") => {
            if (now_ms() / 1000) % 20 < 3 {
                Response::builder()
                    .status(503)
                    .header("retry-after", "2")
                    .header("content-type", "text/html")
                    .body(Full::new(Bytes::from_static(b"<html>maintenance</html>")))
                    .unwrap()
            } else {
                json(200, serde_json::json!({"ok": true}))
            }
        }
        // AMO: wants a JWT minted by the gateway.
        p if p.starts_with("/amo/") => {
            let jwt = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("JWT "))
                .is_some_and(|t| t.split('.').count() == 3);
            if jwt {
                json(200, serde_json::json!({"results": []}))
            } else {
                json(
                    401,
                    serde_json::json!({"detail": "Authentication credentials were not provided."}),
                )
            }
        }
        // Behind `amo-jwt-verify`: the gateway says who the issuer was.
        p if p.starts_with("/verified/") => json(200, serde_json::json!({"ok": true})),
        _ => fxa_error(404, 999, "Not Found"),
    }
}

// === the traffic ===

/// One kind of request and the answers it may get.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Bearer route, one of a few thousand tokens (the cache holds fewer: churn).
    Bearer,
    BearerInactive,
    BearerNarrow,
    BearerMissing,
    /// The API refuses the token; the gateway refreshes it and replays.
    Refresh,
    /// The refresh token is dead: 401 errno 110 (reauth).
    RefreshDead,
    /// Opens and closes back-off windows.
    Flaky,
    /// A quota of 5 per second per `X-Client` value, some clients busy.
    Quota,
    AmoSign,
    AmoVerify,
    AmoReplay,
    Post,
    UpstreamError,
    UpstreamMissing,
    UpstreamSlow,
    NoRoute,
    WrongMethod,
    BadVersion,
    Sunset,
    BodyTooLarge,
    DotSegment,
    HeadersTooLarge,
    HeaderTimeout,
}

/// A (status, errno) answer; errno 0: none (or not checked).
type Answer = (u16, u16);

/// (kind, weight per 1000, the answers it allows).
type Share = (Kind, u32, &'static [Answer]);

const MIX: &[Share] = &[
    (Kind::Bearer, 300, &[(200, 0)]),
    (Kind::BearerInactive, 30, &[(401, 110)]),
    (Kind::BearerNarrow, 20, &[(403, 100)]),
    (Kind::BearerMissing, 20, &[(401, 110)]),
    (Kind::Refresh, 60, &[(200, 0)]),
    (Kind::RefreshDead, 20, &[(401, 110)]),
    (Kind::Flaky, 120, &[(200, 0), (503, 201)]),
    (Kind::Quota, 100, &[(200, 0), (429, 114)]),
    (Kind::AmoSign, 60, &[(200, 0)]),
    (Kind::AmoVerify, 60, &[(200, 0)]),
    (Kind::AmoReplay, 15, &[(401, 110)]),
    (Kind::Post, 40, &[(200, 0)]),
    (Kind::UpstreamError, 20, &[(500, 999)]),
    (Kind::UpstreamMissing, 20, &[(404, 999)]),
    (Kind::UpstreamSlow, 5, &[(504, 203)]),
    (Kind::NoRoute, 20, &[(404, 999)]),
    (Kind::WrongMethod, 15, &[(405, 999)]),
    (Kind::BadVersion, 15, &[(404, 999)]),
    (Kind::Sunset, 15, &[(410, 116)]),
    (Kind::BodyTooLarge, 10, &[(413, 113)]),
    (Kind::DotSegment, 15, &[(400, 999)]),
    (Kind::HeadersTooLarge, 10, &[(431, 999)]),
    (Kind::HeaderTimeout, 2, &[(408, 999)]),
];

#[derive(Default)]
struct Tally {
    /// kind → (status, errno) → count
    seen: Mutex<BTreeMap<Kind, BTreeMap<Answer, u64>>>,
    unexpected: AtomicU64,
    samples: Mutex<Vec<String>>,
    requests: AtomicU64,
}

impl Tally {
    fn record(&self, kind: Kind, got: (u16, u16), detail: &str) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let allowed = MIX
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map_or(&[][..], |m| m.2);
        let ok = allowed
            .iter()
            .any(|(s, e)| *s == got.0 && (*e == 0 || *e == got.1));
        // The status alone for successes; errno for errors.
        let key = if got.0 < 400 { (got.0, 0) } else { got };
        *self
            .seen
            .lock()
            .unwrap()
            .entry(kind)
            .or_default()
            .entry(key)
            .or_default() += 1;
        if !ok {
            self.unexpected.fetch_add(1, Ordering::Relaxed);
            let mut samples = self.samples.lock().unwrap();
            if samples.len() < 20 {
                samples.push(format!("{kind:?}: {} errno {}: {detail}", got.0, got.1));
            }
        }
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A small xorshift generator (no extra crate); seeded per worker.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

async fn drive(addr: SocketAddr, duration: Duration, rate: u64) -> bool {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers = 16u64;
    let per_worker = Duration::from_secs_f64(workers as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, tally, stop) = (client.clone(), tally.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
            let mut ticks = tokio::time::interval(per_worker);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                ticks.tick().await;
                let kind = pick(&mut rng);
                let (got, detail) = one(kind, &client, addr, &mut rng).await;
                tally.record(kind, got, &detail);
            }
        }));
    }
    let started = tokio::time::Instant::now();
    let mut report = tokio::time::interval(Duration::from_secs(10));
    report.tick().await;
    while started.elapsed() < duration {
        report.tick().await;
        println!(
            "SOAK t={}s requests={} unexpected={}",
            started.elapsed().as_secs(),
            tally.requests.load(Ordering::Relaxed),
            tally.unexpected.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    println!("SOAK summary (kind: status/errno=count)");
    for (kind, answers) in tally.seen.lock().unwrap().iter() {
        let list: Vec<String> = answers
            .iter()
            .map(|((s, e), n)| {
                if *e == 0 {
                    format!("{s}={n}")
                } else {
                    format!("{s}/{e}={n}")
                }
            })
            .collect();
        println!("SOAK   {kind:?}: {}", list.join(" "));
    }
    let unexpected = tally.unexpected.load(Ordering::Relaxed);
    for s in tally.samples.lock().unwrap().iter() {
        println!("SOAK unexpected: {s}");
    }
    println!(
        "SOAK total requests={} unexpected={unexpected}",
        tally.requests.load(Ordering::Relaxed)
    );
    unexpected == 0
}

fn pick(rng: &mut Rng) -> Kind {
    let total: u32 = MIX.iter().map(|m| m.1).sum();
    let mut r = rng.below(u64::from(total)) as u32;
    for (kind, weight, _) in MIX {
        if r < *weight {
            return *kind;
        }
        r -= weight;
    }
    Kind::Bearer
}

/// Sends one request of `kind`; its (status, errno) and a detail for the report.
async fn one(
    kind: Kind,
    client: &HttpClient,
    addr: SocketAddr,
    rng: &mut Rng,
) -> ((u16, u16), String) {
    let base = format!("http://{addr}");
    let n = rng.next();
    let mut headers: Vec<(&str, String)> = Vec::new();
    let mut method = Method::GET;
    let mut body = Bytes::new();
    let path = match kind {
        Kind::Bearer => {
            // 4,000 tokens for a cache of 500: most look-ups miss, entries churn.
            headers.push(("authorization", format!("Bearer good-{:04}", n % 4000)));
            "/profile/v1/ok".to_owned()
        }
        Kind::BearerInactive => {
            headers.push(("authorization", format!("Bearer revoked-{n:x}")));
            "/profile/v1/ok".to_owned()
        }
        Kind::BearerNarrow => {
            headers.push(("authorization", format!("Bearer narrow-{}", n % 100)));
            "/profile/v1/ok".to_owned()
        }
        Kind::BearerMissing => "/profile/v1/ok".to_owned(),
        Kind::Refresh => {
            headers.push(("authorization", format!("Bearer stale-{n:x}")));
            headers.push(("x-fxa-refresh-token", format!("a{n:063x}")));
            "/profile/v1/ok".to_owned()
        }
        Kind::RefreshDead => {
            headers.push(("authorization", format!("Bearer stale-{n:x}")));
            headers.push(("x-fxa-refresh-token", format!("d{n:063x}")));
            "/profile/v1/ok".to_owned()
        }
        Kind::Flaky => "/flaky/v1/thing".to_owned(),
        Kind::Quota => {
            // 5 busy clients (over their quota) share most of the traffic; 10,000 others come
            // once in a while (the limiter's key map grows, and must be trimmed).
            let client = if n.is_multiple_of(4) {
                n % 10_000
            } else {
                n % 5
            };
            headers.push(("x-client", format!("client-{client}")));
            "/quota/v1/ok".to_owned()
        }
        Kind::AmoSign => "/amo/v5/addons/search/".to_owned(),
        Kind::AmoVerify | Kind::AmoReplay => {
            let jwt = amo_jwt(n);
            if kind == Kind::AmoReplay {
                // Used once (accepted), then replayed: the replay is the request checked.
                let first = send(
                    client,
                    &format!("{base}/verify/v1/ok"),
                    Method::GET,
                    &[("authorization", format!("JWT {jwt}"))],
                    Bytes::new(),
                )
                .await;
                if first.0.0 != 200 {
                    return (
                        (first.0.0, first.0.1),
                        format!("first use failed: {}", first.1),
                    );
                }
            }
            headers.push(("authorization", format!("JWT {jwt}")));
            "/verify/v1/ok".to_owned()
        }
        Kind::Post => {
            method = Method::POST;
            headers.push(("content-type", "application/json".to_owned()));
            body = Bytes::from(format!(
                "{{\"n\":{n},\"pad\":\"{}\"}}",
                "x".repeat((n % 2000) as usize)
            ));
            "/open/v1/echo".to_owned()
        }
        Kind::UpstreamError => "/open/v1/error".to_owned(),
        Kind::UpstreamMissing => "/open/v1/missing".to_owned(),
        Kind::UpstreamSlow => "/open/v1/slow".to_owned(),
        Kind::NoRoute => format!("/nowhere/{n:x}"),
        Kind::WrongMethod => {
            method = Method::DELETE;
            "/open/v1/ok".to_owned()
        }
        Kind::BadVersion => "/open/v9/ok".to_owned(),
        Kind::Sunset => "/open/v0/ok".to_owned(),
        Kind::BodyTooLarge => {
            method = Method::POST;
            body = Bytes::from(vec![b'a'; 80 * 1024]);
            "/open/v1/echo".to_owned()
        }
        Kind::DotSegment => {
            return raw(
                addr,
                "GET /open/v1/../v1/ok HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
                    .to_owned(),
                false,
            )
            .await;
        }
        Kind::HeadersTooLarge => {
            let big = "b".repeat(20 * 1024);
            return raw(addr, format!("GET /open/v1/ok HTTP/1.1\r\nhost: localhost\r\nx-big: {big}\r\nconnection: close\r\n\r\n"), false).await;
        }
        Kind::HeaderTimeout => {
            return raw(
                addr,
                "GET /open/v1/ok HTTP/1.1\r\nhost: local".to_owned(),
                true,
            )
            .await;
        }
    };
    send(client, &format!("{base}{path}"), method, &headers, body).await
}

async fn send(
    client: &HttpClient,
    url: &str,
    method: Method,
    headers: &[(&str, String)],
    body: Bytes,
) -> ((u16, u16), String) {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(body)).unwrap();
    let resp = match tokio::time::timeout(Duration::from_secs(10), client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return ((0, 0), format!("request failed: {e}")),
        Err(_) => return ((0, 0), "no answer within 10 s".to_owned()),
    };
    let status = resp.status();
    let bytes =
        match tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            _ => return ((status.as_u16(), 0), "body failed".to_owned()),
        };
    errno_of(status, &bytes)
}

fn errno_of(status: StatusCode, body: &[u8]) -> ((u16, u16), String) {
    let errno = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errno"].as_u64())
        .unwrap_or(0) as u16;
    let detail = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    ((status.as_u16(), errno), detail)
}

/// A request on its own connection, written as is (`stall`: never finish the head, wait for
/// the gateway's 408).
async fn raw(addr: SocketAddr, request: String, stall: bool) -> ((u16, u16), String) {
    let Ok(mut sock) = TcpStream::connect(addr).await else {
        return ((0, 0), "connect failed".to_owned());
    };
    if sock.write_all(request.as_bytes()).await.is_err() && !stall {
        return ((0, 0), "write failed".to_owned());
    }
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), sock.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return ((0, 0), format!("no answer: {text:?}"));
    };
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    errno_of(
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        body.as_bytes(),
    )
}

/// An AMO-style HS256 JWT from [`ISSUER`]: fresh `jti`, `iat` now, 60 s to live.
fn amo_jwt(n: u64) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = b64.encode(
        serde_json::json!({"iss": ISSUER, "jti": format!("{n:016x}-{now}"), "iat": now, "exp": now + 60})
            .to_string(),
    );
    let signing = format!("{header}.{claims}");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, ISSUER_SECRET.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, signing.as_bytes());
    format!("{signing}.{}", b64.encode(tag.as_ref()))
}
