//! The request pipeline, top to bottom (DESIGN.md "Request pipeline"). This is the one place
//! to read what happens to a request; each step is a call into the stage that owns it.
//!
//! Never forwards a gateway-only header, never re-serialises a successful upstream body, and
//! never answers an error outside the errno shape.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::auth::bearer;
use crate::auth::policy::{self, AuthRuntime, Caller, RefreshRequest, Rejected};
use crate::auth::refresh::{self, Grant};
use crate::body::{
    Body, BufferError, InFlight, LimitedIncoming, TrackedBody, UpstreamBody, buffer_for_replay,
};
use crate::clock::SharedClock;
use crate::config::{Config, IpNet, Limits};
use crate::errno::{Fault, GatewayError};
use crate::gates::Gates;
use crate::headers::{self, Origin};
use crate::metrics::{Metrics, Name};
use crate::request_id::{self, IdGenerator};
use crate::respond;
use crate::routing::{RouteMatch, Router};
use crate::upstream::{CallError, Upstream};

/// Everything one configuration needs at request time, swapped atomically as a whole.
pub struct Snapshot {
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    pub limits: Limits,
    pub trusted_proxies: Vec<IpNet>,
    pub access_log: bool,
    pub auth: AuthRuntime,
    pub gates: Gates,
    /// Metric label values: route names by config index, upstream names, and "-" (no route).
    pub route_names: Vec<Name>,
    pub upstream_names: Vec<Name>,
    pub no_route: Name,
}

impl Snapshot {
    pub fn new(config: &Config, clock: &SharedClock) -> anyhow::Result<Snapshot> {
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let gates = Gates::new(config)?;
        let auth = AuthRuntime::new(config, &upstreams, &gates.backoff, clock)?;
        Ok(Snapshot {
            router: Router::new(&config.routes),
            upstreams,
            limits: config.limits.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            access_log: config.server.log.access_log,
            auth,
            gates,
            route_names: config
                .routes
                .iter()
                .map(|r| Name(Arc::from(r.name.as_str())))
                .collect(),
            upstream_names: config
                .upstreams
                .iter()
                .map(|u| Name(Arc::from(u.name.as_str())))
                .collect(),
            no_route: Name(Arc::from("-")),
        })
    }
}

/// Process-wide state shared by every connection.
pub struct State {
    pub snapshot: ArcSwap<Snapshot>,
    pub clock: SharedClock,
    pub ids: Arc<IdGenerator>,
    pub draining: AtomicBool,
    pub metrics: Arc<Metrics>,
    via: HeaderValue,
}

impl State {
    pub fn new(snapshot: Snapshot, clock: SharedClock) -> State {
        State {
            snapshot: ArcSwap::from_pointee(snapshot),
            clock,
            ids: Arc::new(IdGenerator::new()),
            draining: AtomicBool::new(false),
            metrics: Arc::new(Metrics::new()),
            via: HeaderValue::from_static("1.1 fxa-gateway"),
        }
    }

    pub fn limits(&self) -> Limits {
        self.snapshot.load().limits.clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// Facts about the client connection a request arrived on.
#[derive(Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: bool,
    pub listener: Arc<str>,
    /// The listener accepts `X-FxA-Refresh-Token`.
    pub accept_refresh_token: bool,
    /// Requests on this connection still being answered.
    pub in_flight: Arc<InFlight>,
    /// `peer`'s address as an `X-Forwarded-For` value, rendered once per connection.
    pub peer_header: HeaderValue,
}

/// The hyper service: one per connection.
#[derive(Clone)]
pub struct GatewayService {
    state: Arc<State>,
    conn: Arc<ConnInfo>,
}

impl GatewayService {
    pub fn new(state: Arc<State>, conn: Arc<ConnInfo>) -> Self {
        GatewayService { state, conn }
    }
}

impl hyper::service::Service<Request<Incoming>> for GatewayService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let state = self.state.clone();
        let conn = self.conn.clone();
        let guard = conn.in_flight.enter();
        Box::pin(async move {
            let response = handle(&state, &conn, req).await;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _guard: guard,
            }))
        })
    }
}

/// What the access log records about one request.
#[derive(Default)]
pub struct Outcome {
    pub route: Option<usize>,
    pub upstream: Option<usize>,
    pub errno: Option<u16>,
    pub reason: Option<&'static str>,
    /// The upstream's own errno and `retryAfter` on a 429/500/503 body, for back-off.
    pub upstream_errno: Option<u16>,
    pub body_retry_after: Option<f64>,
}

/// Handles one request, always producing a response.
pub async fn handle(state: &State, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let snapshot = state.snapshot.load();
    let request_id = match req.headers().get(request_id::HEADER) {
        Some(v) if request_id::is_well_formed(v) => v.clone(),
        _ => state.ids.next(),
    };
    let method = req.method().clone();
    let mut outcome = Outcome::default();
    state.metrics.in_flight.inc();
    let mut response = match proxy(state, &snapshot, conn, req, &request_id, &mut outcome).await {
        Ok(response) => response,
        Err(err) => {
            let parts = err.parts();
            outcome.errno = Some(parts.errno);
            outcome.reason = Some(parts.reason);
            if parts.fault != crate::errno::Fault::Client {
                tracing::warn!(request_id = ?request_id, error = %err, "request failed");
            }
            record_error_metrics(state, &snapshot, &outcome, parts.reason, parts.fault);
            err.into_response(&request_id, &method)
        }
    };
    state.metrics.in_flight.dec();
    let route_name = outcome
        .route
        .and_then(|i| snapshot.route_names.get(i))
        .unwrap_or(&snapshot.no_route);
    state.metrics.request(
        route_name,
        response.status().as_u16(),
        outcome.errno,
        started.elapsed(),
    );
    response
        .headers_mut()
        .insert(request_id::HEADER, request_id.clone());
    if snapshot.access_log {
        crate::logging::access(
            &snapshot,
            &method,
            &response,
            &outcome,
            &request_id,
            started.elapsed(),
        );
    }
    response
}

fn record_error_metrics(
    state: &State,
    snapshot: &Snapshot,
    outcome: &Outcome,
    reason: &'static str,
    fault: Fault,
) {
    let route = outcome
        .route
        .and_then(|i| snapshot.route_names.get(i))
        .unwrap_or(&snapshot.no_route);
    state.metrics.gateway_error(route, reason);
    if fault == Fault::Upstream
        && let Some(upstream) = outcome
            .upstream
            .and_then(|i| snapshot.upstream_names.get(i))
    {
        state.metrics.upstream_error(upstream, reason);
    }
}

/// Steps 2 to 8 of the pipeline (DESIGN.md), in order.
async fn proxy(
    state: &State,
    snapshot: &Snapshot,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
    request_id: &HeaderValue,
    outcome: &mut Outcome,
) -> Result<Response<Body>, GatewayError> {
    // Malformed targets are refused before routing, so no route sees an ambiguous path.
    check_target(&req)?;
    // Route first: everything after depends on the route's policy.
    let path = req.uri().path();
    let host = request_host(&req);
    let matched = match snapshot
        .router
        .select(host, path, req.method(), state.clock.now())
    {
        Ok(m) => m,
        Err(e) => {
            // A version or method refusal still belongs to its route in logs and metrics.
            outcome.route = snapshot.router.find(host, path).map(|r| r.index);
            return Err(e);
        }
    };
    outcome.route = Some(matched.route.index);
    let route = &matched.route.config;
    let upstream = &snapshot.upstreams[route.upstream];
    outcome.upstream = Some(route.upstream);

    // Body size before any upstream work: a declared length over the cap never leaves.
    let limit = snapshot.limits.max_body_bytes;
    let declared = declared_length(&req)?;
    if declared.is_some_and(|len| len > limit) {
        return Err(GatewayError::BodyTooLarge { limit });
    }

    let now = state.clock.now();
    // Upstream back-off gate before authentication: an upstream in a window gets no traffic,
    // and authenticating a request that cannot be sent would be wasted work.
    let upstream_ticket = snapshot.gates.upstream_gate(route.upstream, now)?;

    // The caller's refresh token: refused on a listener that does not take refresh tokens,
    // used only where the route refreshes, never forwarded (hygiene strips every X-FxA-*).
    let refresh_token = refresh::caller_refresh_token(
        req.headers(),
        conn.accept_refresh_token,
        route.refresh.is_some(),
    )?;
    let refresh = match (&route.refresh, refresh_token.as_deref()) {
        (Some(options), Some(token)) => Some(RefreshRequest {
            refresh_token: token,
            scope: options.scope.as_deref(),
        }),
        _ => None,
    };
    // What a replay after an upstream 401 needs: the token that 401 was about.
    let sent_token = refresh
        .as_ref()
        .and_then(|_| bearer::bearer_token(req.headers()).ok())
        .map(str::to_owned);

    // Authenticate before any upstream traffic: a refused caller costs the upstream nothing.
    // Reads the caller's headers before hygiene strips the `X-FxA-*` selection header.
    let rest_path = &path[matched.rest_start..];
    let caller = Caller {
        listener: &conn.listener,
        peer: conn.peer.ip(),
        method: req.method(),
        path: rest_path,
    };
    let auth = snapshot
        .auth
        .authenticate(&route.auth, req.headers(), &caller, now, refresh.as_ref())
        .await
        .inspect_err(|e| note_refresh_error(state, snapshot, matched.route.index, e))?;
    let identity = auth.identity.clone();
    let client_id = auth.client_id.clone();
    let mut refreshed = auth.refreshed.clone();
    let mut refresh_note = if auth.refreshed.is_some() {
        Some(RefreshNote::Refreshed)
    } else {
        None
    };
    if let Some(r) = &auth.refreshed {
        note_refresh(state, snapshot, matched.route.index, r.source.into());
    } else if auth.refresh_deferred {
        note_refresh(state, snapshot, matched.route.index, "unavailable");
    }

    // Per-identity gates once the caller is known: a 429 from FxA is about one account, and
    // quotas count per caller.
    let ([client_ticket, identity_ticket], quota_headers) = snapshot.gates.caller_gates(
        route,
        matched.route.index,
        identity.as_deref(),
        client_id.as_deref(),
        conn.peer.ip(),
        req.headers(),
        now,
    )?;
    // The cap all callers share comes last, so refused requests never use it up.
    snapshot.gates.upstream_cap(route.upstream)?;

    let upstream_uri = {
        let rest = if route.strip_prefix { rest_path } else { path };
        upstream.uri_for(rest, req.uri().query())?
    };
    let method = req.method().clone();
    // A replay after a 401 re-checks the new token on the same endpoint.
    let replay_target = refresh.as_ref().map(|_| rest_path.to_owned());
    let origin_host = host_header_value(&req);
    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    headers::strip_gateway_namespace(headers);
    headers.remove(header::HOST);
    headers.insert(request_id::HEADER, request_id.clone());
    let origin = Origin {
        peer: conn.peer.ip(),
        tls: conn.tls,
        host: origin_host.as_ref(),
        peer_header: Some(&conn.peer_header),
    };
    headers::set_forwarding(headers, &origin, &snapshot.trusted_proxies, &state.via);
    // The policy's credential goes on last, after the caller's `X-FxA-*` headers are gone.
    policy::apply(auth, &route.auth, headers);

    let exceeded = declared.is_none().then(|| Arc::new(AtomicBool::new(false)));
    let (mut parts, incoming) = req.into_parts();
    parts.uri = upstream_uri;
    // Where a refresh may follow, bodies up to the replay limit are buffered so the request
    // can be sent again; larger or endless ones stream and are never replayed.
    let replay_max = refresh
        .as_ref()
        .and(snapshot.auth.refresher())
        .map(|r| r.max_replay_body().min(limit));
    let body = if declared == Some(0)
        || (declared.is_none() && hyper::body::Body::is_end_stream(&incoming))
    {
        UpstreamBody::Empty
    } else if let Some(max) = replay_max
        && declared.is_none_or(|len| len <= max)
    {
        let read = buffer_for_replay(incoming, max, limit, exceeded.clone());
        match tokio::time::timeout(upstream.response_timeout(), read).await {
            Err(_) => return Err(GatewayError::BodyTimeout),
            Ok(Err(BufferError::TooLarge)) => return Err(GatewayError::BodyTooLarge { limit }),
            Ok(Err(BufferError::Broken)) => {
                return Err(GatewayError::BadRequest("request body ended early"));
            }
            Ok(Ok(body)) => body,
        }
    } else {
        UpstreamBody::Stream(LimitedIncoming::new(incoming, limit, exceeded.clone()))
    };
    let replay = match (&body, &refresh) {
        (UpstreamBody::Empty, Some(_)) => Some(None),
        (UpstreamBody::Full(bytes), Some(_)) => Some(bytes.clone()),
        _ => None,
    };
    let replay_headers = replay.as_ref().map(|_| parts.headers.clone());
    let replay_uri = replay.as_ref().map(|_| parts.uri.clone());
    let upstream_req = Request::from_parts(parts, body);

    let mut permit = upstream.acquire().await?;
    let mut response = send(upstream, upstream_req, &exceeded, limit).await?;

    // Step 7, refresh after a 401: the upstream refused the token the caller holds. Refresh
    // once, replay once with the new token; a 401 after that goes back as it is.
    if response.status() == StatusCode::UNAUTHORIZED
        && refreshed.is_none()
        && let (Some(refresh), Some(old_token), Some(target)) =
            (&refresh, &sent_token, &replay_target)
    {
        let caller = Caller {
            listener: &conn.listener,
            peer: conn.peer.ip(),
            method: &method,
            path: target,
        };
        let check_headers = replay_headers.clone().unwrap_or_default();
        let refresh_for = |replayable: bool| async move {
            snapshot
                .auth
                .refresh_rejected(
                    &route.auth,
                    &check_headers,
                    &caller,
                    Rejected {
                        old_token,
                        replay: replayable,
                    },
                    refresh,
                    state.clock.now(),
                )
                .await
                .inspect_err(|e| note_refresh_error(state, snapshot, matched.route.index, e))
        };
        match (replay, replay_headers, replay_uri) {
            (Some(body), Some(mut headers), Some(uri)) => {
                // The refused answer is not the caller's: let its connection slot go.
                drop(response);
                drop(permit);
                let new_auth = refresh_for(true).await?;
                refreshed = new_auth.refreshed.clone();
                for name in [
                    bearer::UID_HEADER,
                    bearer::CLIENT_ID_HEADER,
                    bearer::SCOPE_HEADER,
                ] {
                    headers.remove(name);
                }
                policy::apply(new_auth, &route.auth, &mut headers);
                let mut again = Request::new(match body {
                    Some(bytes) => UpstreamBody::Full(Some(bytes)),
                    None => UpstreamBody::Empty,
                });
                *again.method_mut() = method.clone();
                *again.uri_mut() = uri;
                *again.headers_mut() = headers;
                permit = upstream.acquire().await?;
                response = send(upstream, again, &None, limit).await?;
                refresh_note = Some(RefreshNote::Replayed);
                note_replay(state, snapshot, matched.route.index, "replayed");
            }
            _ => {
                // The body is gone upstream: the caller gets the 401 and the new token.
                refreshed = refresh_for(false).await?.refreshed;
                refresh_note = Some(RefreshNote::NotReplayed);
                note_replay(state, snapshot, matched.route.index, "not_replayed");
            }
        }
        if let Some(r) = &refreshed {
            note_refresh(state, snapshot, matched.route.index, r.source.into());
        }
    }

    let view = matched_view(&matched);
    let mut response = respond::finish(
        response,
        permit,
        &view,
        upstream,
        &snapshot.limits,
        &method,
        outcome,
    )
    .await?;
    // Every real answer feeds the back-off gate: a 429/503 closes the window for all callers.
    let backoff_header = snapshot.gates.record(
        route,
        identity.as_deref(),
        client_id.as_deref(),
        response.status(),
        response.headers(),
        outcome.upstream_errno,
        outcome.body_retry_after,
        [upstream_ticket, client_ticket, identity_ticket],
        state.clock.now(),
    );
    if let (Some(secs), Some(name)) = (backoff_header, snapshot.upstream_names.get(route.upstream))
    {
        state.metrics.backoff_header(name, secs);
    }
    quota_headers.apply(response.headers_mut());
    if let (Some(r), Some(note)) = (&refreshed, refresh_note) {
        hand_over_token(response.headers_mut(), &r.grant, note, state.clock.now());
    }
    Ok(response)
}

/// Sends one request upstream; a body over the cap is 413, not a 502.
async fn send(
    upstream: &Upstream,
    req: Request<UpstreamBody>,
    exceeded: &Option<Arc<AtomicBool>>,
    limit: u64,
) -> Result<Response<Incoming>, GatewayError> {
    match upstream.send(req).await {
        Ok(r) => Ok(r),
        Err(CallError::Gateway(e)) => Err(over_limit(exceeded, limit).unwrap_or(e)),
        Err(CallError::RequestBody) => Err(over_limit(exceeded, limit)
            .unwrap_or(GatewayError::BadRequest("request body ended early"))),
    }
}

/// What refresh did to the request, for `X-FxA-Refresh`.
#[derive(Debug, Clone, Copy)]
enum RefreshNote {
    Refreshed,
    Replayed,
    NotReplayed,
}

/// Gives the caller its new access token: it must store it (and it must not be cached).
fn hand_over_token(headers: &mut HeaderMap, grant: &Grant, note: RefreshNote, now: SystemTime) {
    if let Ok(mut token) = HeaderValue::from_str(grant.access_token()) {
        token.set_sensitive(true);
        headers.insert(refresh::ACCESS_TOKEN_HEADER, token);
        headers.insert(
            refresh::EXPIRES_IN_HEADER,
            HeaderValue::from(grant.expires_in(now)),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            refresh::REFRESH_HEADER,
            HeaderValue::from_static(match note {
                RefreshNote::Refreshed => "refreshed",
                RefreshNote::Replayed => "replayed",
                RefreshNote::NotReplayed => "not-replayed",
            }),
        );
    }
}

fn note_refresh(state: &State, snapshot: &Snapshot, route: usize, outcome: &'static str) {
    if let Some(name) = snapshot.route_names.get(route) {
        state.metrics.refresh(name, outcome);
    }
}

fn note_replay(state: &State, snapshot: &Snapshot, route: usize, outcome: &'static str) {
    if let Some(name) = snapshot.route_names.get(route) {
        state.metrics.replay(name, outcome);
    }
}

/// Counts a refresh that ended the request.
fn note_refresh_error(state: &State, snapshot: &Snapshot, route: usize, e: &GatewayError) {
    let outcome = match e {
        GatewayError::ReauthRequired => "reauth",
        GatewayError::RefreshMisconfigured { .. } => "misconfigured",
        GatewayError::RefreshUnavailable { .. } => "unavailable",
        _ => return,
    };
    note_refresh(state, snapshot, route, outcome);
}

/// The parts of a route match the response stage needs.
pub struct MatchView<'a> {
    pub rewrite_errors: bool,
    pub bearer_route: bool,
    pub deprecation: Option<(&'a HeaderValue, Option<&'a HeaderValue>)>,
}

fn matched_view<'a>(m: &RouteMatch<'a>) -> MatchView<'a> {
    MatchView {
        rewrite_errors: m.route.config.rewrite_errors,
        bearer_route: false,
        deprecation: m.deprecation,
    }
}

fn over_limit(flag: &Option<Arc<AtomicBool>>, limit: u64) -> Option<GatewayError> {
    flag.as_ref()
        .filter(|f| f.load(Ordering::Acquire))
        .map(|_| GatewayError::BodyTooLarge { limit })
}

/// Refuses request targets that could mean different paths to the gateway and the upstream.
fn check_target(req: &Request<Incoming>) -> Result<(), GatewayError> {
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

/// The declared body length, if any; an unparsable one is a malformed request.
fn declared_length(req: &Request<Incoming>) -> Result<Option<u64>, GatewayError> {
    match req.headers().get(header::CONTENT_LENGTH) {
        None => Ok(hyper::body::Body::size_hint(req.body()).exact()),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or(GatewayError::BadRequest("invalid Content-Length")),
    }
}

/// Host the client asked for, without port: `:authority` (h2) or `Host`. Any case.
fn request_host(req: &Request<Incoming>) -> Option<&str> {
    let raw = match req.uri().host() {
        Some(h) => h,
        None => strip_port(req.headers().get(header::HOST)?.to_str().ok()?),
    };
    Some(raw.trim_end_matches('.'))
}

fn host_header_value(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.headers().get(header::HOST) {
        Some(h) => Some(h.clone()),
        None => req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_once(']').map(|(h, _)| &h[1..]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
