//! The admin listener: Dockerflow endpoints. `/__lbheartbeat__` says whether this process is
//! serving (503 once draining), `/__heartbeat__` whether each upstream answers, `/__version__`
//! what is running and which configuration (its hash and load time); `POST /__reload__`
//! reloads the configuration, for loopback peers only unless `[admin] reload_token` is set
//! (then for callers sending it as a bearer token). Never exposes configuration or secrets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::backoff::Gate as _;
use crate::body::{Body, UpstreamBody};
use crate::config::Secret;
use crate::errno::{BearerChallenge, GatewayError};
use crate::pipeline::{ConfigVersion, State};
use crate::reload::{ReloadHandle, Trigger};
use crate::upstream::Upstream;

pub struct AdminServer {
    tcp: TcpListener,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr) -> anyhow::Result<AdminServer> {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("admin listener: cannot bind {addr}: {e}"))?;
        Ok(AdminServer { tcp })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    pub async fn serve(
        self,
        state: Arc<State>,
        reload: ReloadHandle,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let (stream, peer) = tokio::select! {
                r = self.tcp.accept() => match r { Ok(p) => p, Err(_) => continue },
                _ = stop.changed() => return,
            };
            let state = state.clone();
            let reload = reload.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let reload = reload.clone();
                    async move { Ok::<_, Infallible>(answer(&state, &reload, peer, req).await) }
                });
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10));
                let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    }
}

async fn answer(
    state: &State,
    reload: &ReloadHandle,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let rid = state.ids.next();
    if req.uri().path() == "/__reload__" {
        return match reload_request(state, reload, peer, &req).await {
            Ok(response) => response,
            Err(e) => e.into_response(&rid, req.method()),
        };
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let allow = HeaderValue::from_static("GET, HEAD");
        return GatewayError::MethodNotAllowed { allow }.into_response(&rid, req.method());
    }
    match req.uri().path() {
        "/__lbheartbeat__" if state.is_draining() => json(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "draining"}),
        ),
        "/__lbheartbeat__" => json(StatusCode::OK, json!({"status": "ok"})),
        "/__heartbeat__" => heartbeat(state).await,
        "/__version__" => {
            let mut v = version();
            v["config"] = config_version(&state.snapshot.load().version);
            json(StatusCode::OK, v)
        }
        "/metrics" => metrics(state),
        _ => GatewayError::RouteNotFound.into_response(&rid, req.method()),
    }
}

/// Prometheus scrape: refreshes the back-off gauges, then encodes every series.
fn metrics(state: &State) -> Response<Body> {
    let snapshot = state.snapshot.load();
    let now = state.clock.now();
    for (index, name) in snapshot.upstream_names.iter().enumerate() {
        let left = snapshot
            .gates
            .backoff
            .upstream_window(index, now)
            .map_or(0, |w| w.remaining.as_secs_f64().ceil() as u64);
        state.metrics.backoff_window(name, left);
    }
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    state
        .metrics
        .tasks
        .set(i64::try_from(tasks).unwrap_or(i64::MAX));
    let text = state.metrics.encode();
    let len = text.len();
    let mut resp = Response::new(Body::full(text.into()));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// Dockerflow `version.json` fields. `source` (the repository's URL) is only what the build
/// said (`FXA_GATEWAY_SOURCE`), and left out when it said nothing: a guessed URL would send
/// readers to a repository that may not exist.
pub fn version() -> Value {
    let mut v = json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "commit": option_env!("FXA_GATEWAY_COMMIT").unwrap_or("unknown"),
        "build": option_env!("FXA_GATEWAY_BUILD").unwrap_or("local"),
    });
    if let Some(source) = option_env!("FXA_GATEWAY_SOURCE").filter(|s| !s.is_empty()) {
        v["source"] = Value::from(source);
    }
    v
}

/// The configuration serving: its hash and when it was loaded.
fn config_version(version: &ConfigVersion) -> Value {
    json!({
        "hash": version.hash.as_deref(),
        "loadedAt": crate::config::format_rfc3339(version.loaded_at),
    })
}

/// `POST /__reload__`: reload now and say how it went (200 with the configuration now serving,
/// or the errno answer listing every problem, the previous configuration still serving).
async fn reload_request(
    state: &State,
    reload: &ReloadHandle,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Result<Response<Body>, GatewayError> {
    if req.method() != Method::POST {
        let allow = HeaderValue::from_static("POST");
        return Err(GatewayError::MethodNotAllowed { allow });
    }
    let config = state.snapshot.load().config.clone();
    let token = config.admin.as_ref().and_then(|a| a.reload_token.as_ref());
    allowed(token, peer, req.headers())?;
    let report = reload
        .reload(Trigger::Admin)
        .await
        .ok_or(GatewayError::Internal("the gateway is shutting down"))?;
    if !report.applied {
        return Err(GatewayError::ConfigRefused {
            problems: report.problems,
        });
    }
    let version = ConfigVersion {
        hash: report.hash,
        loaded_at: report.loaded_at,
    };
    Ok(json(
        StatusCode::OK,
        json!({"status": "applied", "config": config_version(&version)}),
    ))
}

/// With a reload token, the caller must send it (`Authorization: Bearer <token>`); without one,
/// only a loopback peer may reload.
fn allowed(
    token: Option<&Secret>,
    peer: SocketAddr,
    headers: &http::HeaderMap,
) -> Result<(), GatewayError> {
    let Some(token) = token else {
        if peer.ip().to_canonical().is_loopback() {
            return Ok(());
        }
        return Err(GatewayError::EndpointNotAllowed);
    };
    let sent = crate::auth::scheme::bearer_token(headers)?;
    match aws_lc_rs::constant_time::verify_slices_are_equal(sent.as_bytes(), token.expose()) {
        Ok(()) => Ok(()),
        Err(_) => Err(GatewayError::InvalidToken(BearerChallenge::InvalidToken)),
    }
}

/// Asks every upstream for its root page: any HTTP answer means reachable.
async fn heartbeat(state: &State) -> Response<Body> {
    let snapshot = state.snapshot.load_full();
    let mut checks = JoinSet::new();
    let mut detail = Map::new();
    let mut warning = false;
    let now = state.clock.now();
    for (index, upstream) in snapshot.upstreams.iter().cloned().enumerate() {
        // An upstream in a back-off window is not probed: report the window instead.
        if let Some(window) = snapshot.gates.backoff.upstream_window(index, now) {
            warning = true;
            detail.insert(
                upstream.name.clone(),
                json!({
                    "status": "backoff",
                    "httpStatus": window.status.as_u16(),
                    "errno": window.errno,
                    "retryAfter": crate::backoff::whole_seconds_up(window.remaining),
                    "halfOpen": window.half_open,
                    "rampPercent": window.ramp_percent,
                }),
            );
            continue;
        }
        checks.spawn(async move {
            let result = probe(&upstream).await;
            (upstream.name.clone(), result)
        });
    }
    // Redis down is degraded, not failed: every replica keeps serving on its own state.
    let redis = snapshot.store.as_ref().map(|store| {
        let (status, up) = match (store.is_up(), store.is_subscribed()) {
            (true, true) => ("ok", true),
            (true, false) => ("degraded", true),
            (false, _) => ("degraded", false),
        };
        if status != "ok" {
            warning = true;
        }
        json!({"status": status, "reachable": up, "subscribed": store.is_subscribed()})
    });
    let mut healthy = !state.is_draining();
    while let Some(Ok((name, result))) = checks.join_next().await {
        let entry = match result {
            Ok(status) => json!({"status": "ok", "httpStatus": status}),
            Err(reason) => {
                healthy = false;
                json!({"status": "error", "error": reason})
            }
        };
        detail.insert(name, entry);
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let overall = match (healthy, warning) {
        (false, _) => "error",
        (true, true) => "warning",
        (true, false) => "ok",
    };
    let mut body = json!({"status": overall, "draining": state.is_draining(), "upstreams": detail});
    if let Some(redis) = redis {
        body["redis"] = redis;
    }
    json(status, body)
}

async fn probe(upstream: &Upstream) -> Result<u16, &'static str> {
    let uri = upstream.base_uri().map_err(|_| "invalid upstream URL")?;
    let mut req = Request::new(UpstreamBody::Empty);
    *req.method_mut() = Method::HEAD;
    *req.uri_mut() = uri;
    let _permit = upstream
        .acquire()
        .await
        .map_err(|_| "at its connection cap")?;
    match upstream.send(req).await {
        Ok(resp) => Ok(resp.status().as_u16()),
        Err(crate::upstream::CallError::Gateway(e)) => Err(e.parts().reason),
        Err(crate::upstream::CallError::RequestBody) => Err("request failed"),
    }
}

/// `fxa-gateway healthcheck`: asks `url` (plain HTTP, e.g. the admin listener's
/// `/__lbheartbeat__`) and returns its status, within `timeout`. For a container `HEALTHCHECK`
/// in an image that has no shell or curl.
pub async fn check_health(url: &str, timeout: Duration) -> anyhow::Result<StatusCode> {
    let uri: http::Uri = url.parse()?;
    anyhow::ensure!(
        uri.scheme_str() == Some("http"),
        "{url}: only http:// URLs are checked"
    );
    let authority = uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("{url}: no host"))?
        .clone();
    let ask = async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str()).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        anyhow::Ok(sender.send_request(req).await?.status())
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no answer within {timeout:?}"))?
}

fn json(status: StatusCode, value: Value) -> Response<Body> {
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    let len = bytes.len();
    let mut resp = Response::new(Body::full(bytes.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(v) = authorization {
            h.insert(
                http::header::AUTHORIZATION,
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn reason(r: Result<(), GatewayError>) -> &'static str {
        r.err().map_or("allowed", |e| e.parts().reason)
    }

    #[test]
    fn without_a_token_only_loopback_peers_may_reload() {
        let none = headers(None);
        let at = |ip: &str| SocketAddr::new(ip.parse().unwrap(), 40000);
        assert_eq!(reason(allowed(None, at("127.0.0.1"), &none)), "allowed");
        assert_eq!(reason(allowed(None, at("::1"), &none)), "allowed");
        assert_eq!(
            reason(allowed(None, at("::ffff:127.0.0.1"), &none)),
            "allowed"
        );
        assert_eq!(
            reason(allowed(None, at("10.1.2.3"), &none)),
            "endpoint-not-allowed"
        );
        let forged = headers(Some("Bearer 0123456789abcdef"));
        assert_eq!(
            reason(allowed(None, at("10.1.2.3"), &forged)),
            "endpoint-not-allowed"
        );
    }

    #[test]
    fn with_a_token_every_peer_must_send_it() {
        let token = Secret::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let remote = SocketAddr::new("10.1.2.3".parse().unwrap(), 40000);
        let local = SocketAddr::new("127.0.0.1".parse().unwrap(), 40000);
        let right = headers(Some("Bearer 0123456789abcdef0123456789abcdef"));
        assert_eq!(reason(allowed(Some(&token), remote, &right)), "allowed");
        for peer in [remote, local] {
            assert_ne!(
                reason(allowed(Some(&token), peer, &headers(None))),
                "allowed"
            );
            let wrong = headers(Some("Bearer 0123456789abcdef0123456789abcdeX"));
            assert_ne!(reason(allowed(Some(&token), peer, &wrong)), "allowed");
            let prefix = headers(Some("Bearer 0123456789abcdef"));
            assert_ne!(reason(allowed(Some(&token), peer, &prefix)), "allowed");
        }
    }
}
