//! The admin listener: Dockerflow endpoints. `/__lbheartbeat__` says whether this process is
//! serving (503 once draining), `/__heartbeat__` whether each upstream answers, `/__version__`
//! what is running. Never exposes configuration or secrets.

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
use crate::errno::GatewayError;
use crate::pipeline::State;
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

    pub async fn serve(self, state: Arc<State>, mut stop: watch::Receiver<bool>) {
        loop {
            let (stream, _) = tokio::select! {
                r = self.tcp.accept() => match r { Ok(p) => p, Err(_) => continue },
                _ = stop.changed() => return,
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(&state, req).await) }
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

async fn answer(state: &State, req: Request<Incoming>) -> Response<Body> {
    let rid = state.ids.next();
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
        "/__version__" => json(StatusCode::OK, version()),
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
