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

use arc_swap::ArcSwap;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::auth::outcome::AuthOutcome;
use crate::auth::policy::{self, AuthRuntime, Caller};
use crate::body::{
    Body, BodyWatch, BufferError, InFlight, LimitedIncoming, ResponseBody, TrackedBody,
    UpstreamBody, UpstreamWatch, buffer_for_replay,
};
use crate::clock::SharedClock;
use crate::config::{AuthPolicy, Config, IpNet, Limits};
use crate::errno::{Fault, GatewayError};
use crate::gates::Gates;
use crate::headers::{self, Origin};
use crate::metrics::{Metrics, Name};
use crate::request_id::{self, IdGenerator};
use crate::respond::{self, MatchView, Outcome};
use crate::routing::{RouteMatch, Router};
use crate::shared::Store;
use crate::upstream::{CallError, Resolver, Upstream};

mod carry;
mod refresh_step;
pub(crate) mod target;

pub use carry::ConfigVersion;

use refresh_step::{Handover, RefreshContext, Replay, Step};
use target::{
    check_h2_field_values, check_host, check_target, declared_length, h2_header_list_size,
    host_header_value, request_host,
};

/// Everything one configuration needs at request time, swapped atomically as a whole.
pub struct Snapshot {
    pub router: Router,
    pub upstreams: Vec<Arc<Upstream>>,
    pub limits: Limits,
    pub trusted_proxies: Vec<IpNet>,
    pub access_log: bool,
    pub auth: AuthRuntime,
    pub gates: Gates,
    /// The fleet's shared state (`[redis]`), if configured.
    pub store: Option<Arc<Store>>,
    /// Metric label values: route names by config index, upstream names, and "-" (no route).
    pub route_names: Vec<Name>,
    pub upstream_names: Vec<Name>,
    pub no_route: Name,
    /// The configuration this was built from (a reload compares against it).
    pub config: Arc<Config>,
    /// Which configuration this is, for `/__version__` and `/metrics`.
    pub version: ConfigVersion,
}

impl Snapshot {
    pub fn new(config: &Config, clock: &SharedClock) -> anyhow::Result<Snapshot> {
        Self::with_store(config, clock, None)
    }

    /// A snapshot whose gates, refresh and AMO replay cache share state through `store`.
    pub fn with_store(
        config: &Config,
        clock: &SharedClock,
        store: Option<Arc<Store>>,
    ) -> anyhow::Result<Snapshot> {
        let resolver = Resolver::from_settings(&config.resolver);
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::with_resolver(u, resolver.clone()).map(Arc::new))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let gates = Gates::with_store(config, store.clone())?;
        let auth =
            AuthRuntime::with_store(config, &upstreams, &gates.backoff, clock, store.clone())?;
        Ok(Self::assemble(
            config,
            upstreams,
            gates,
            auth,
            store,
            ConfigVersion::now(None),
        ))
    }

    fn assemble(
        config: &Config,
        upstreams: Vec<Arc<Upstream>>,
        gates: Gates,
        auth: AuthRuntime,
        store: Option<Arc<Store>>,
        version: ConfigVersion,
    ) -> Snapshot {
        Snapshot {
            router: Router::new(&config.routes),
            upstreams,
            limits: config.limits.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            access_log: config.server.log.access_log,
            auth,
            gates,
            store,
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
            config: Arc::new(config.clone()),
            version,
        }
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
        let metrics = Metrics::new().with_auth(snapshot.auth.metrics());
        State {
            snapshot: ArcSwap::from_pointee(snapshot),
            clock,
            ids: Arc::new(IdGenerator::new()),
            draining: AtomicBool::new(false),
            metrics: Arc::new(metrics),
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
    /// The listener forwards header names with an underscore (never the gateway's own).
    pub allow_underscore_headers: bool,
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

/// Handles one request, always producing a response.
pub async fn handle(state: &State, conn: &ConnInfo, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let snapshot = state.snapshot.load();
    let request_id = match req.headers().get(request_id::HEADER) {
        Some(v) if request_id::is_well_formed(v) => v.clone(),
        _ => state.ids.next(),
    };
    let method = req.method().clone();
    let version = req.version();
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
            let unread_body = matches!(
                err,
                GatewayError::BodyTooLarge { .. } | GatewayError::BodyTimeout
            );
            let mut response = err.into_response(&request_id, &method);
            // The rest of the body is never read, so hyper closes the connection after this
            // answer: say so (RFC 9112 §9.6), or a keep-alive client sends its next request on
            // a connection that is going away (found by benches/soak.sh).
            if unread_body && version < http::Version::HTTP_2 {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            response
        }
    };
    state.metrics.in_flight.dec();
    outcome.mark_deprecated(response.headers_mut());
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
    // New on every answer: HPACK's "never indexed" form keeps it out of each HTTP/2
    // connection's header table, where it would only evict reusable entries (HTTP/1 ignores it).
    let mut echoed = request_id.clone();
    echoed.set_sensitive(true);
    response.headers_mut().insert(request_id::HEADER, echoed);
    if snapshot.access_log {
        crate::logging::access(
            outcome.route.and_then(|i| snapshot.route_names.get(i)),
            outcome
                .upstream
                .and_then(|i| snapshot.upstream_names.get(i)),
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
    // h2 enforces twice this limit itself, with a stream reset (vendor/PATCHES.md); the configured one is ours.
    let h2_limit = snapshot.limits.h2_max_header_list_size as usize;
    if h2_header_list_size(&req) > h2_limit {
        return Err(GatewayError::HeadersTooLarge);
    }
    // Malformed targets are refused before routing, so no route sees an ambiguous path.
    check_target(&req)?;
    check_host(&req)?;
    check_h2_field_values(&req)?;
    // Route first: everything after depends on the route's policy.
    let path = req.uri().path();
    let host = request_host(&req);
    let matched = match snapshot
        .router
        .select(host, path, req.method(), state.clock.now())
    {
        Ok(m) => m,
        Err(e) => {
            // A version or method refusal still belongs to its route in logs and metrics, and
            // still says that its version is deprecated.
            let route = snapshot.router.find(host, path);
            outcome.route = route.map(|r| r.index);
            outcome.deprecation = route.and_then(|r| r.deprecation(path)).map(owned);
            return Err(e);
        }
    };
    outcome.route = Some(matched.route.index);
    outcome.deprecation = matched.deprecation.map(owned);
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
    let upstream_ticket = snapshot.gates.upstream_gate(route.upstream, now).await?;

    // The caller's refresh token is read (or refused) before authentication, which may
    // already need it: an expired token is refreshed before anything is forwarded.
    let refresh =
        RefreshContext::from_request(req.headers(), conn, route, &path[matched.rest_start..])?;
    let step = Step {
        state,
        snapshot,
        route,
        route_index: matched.route.index,
        conn,
    };

    // Authenticate before any upstream traffic: a refused caller costs the upstream nothing.
    // Reads the caller's headers before hygiene strips the `X-FxA-*` selection header.
    let caller = Caller {
        listener: &conn.listener,
        peer: conn.peer.ip(),
        method: req.method(),
        path: &path[matched.rest_start..],
    };
    // Boxed where it runs: inline, the largest of these steps would size every request's
    // future (moved and copied with it), including the many that skip it.
    let mut auth = match route.auth {
        AuthPolicy::None => AuthOutcome::default(),
        _ => Box::pin(step.authenticate(req.headers(), &caller, now, refresh.as_ref())).await?,
    };
    // A security event counts as delivered only once the RP answered 2xx (settled below; an
    // exchange that fails or is abandoned drops the ticket: not delivered).
    let delivery = auth.delivery.take();
    let identity = auth.identity.clone();
    let client_id = auth.client_id.clone();
    let mut handover = Handover::before_forwarding(&auth);

    // Per-identity gates once the caller is known: a 429 from FxA is about one account, and
    // quotas count per caller.
    let ([client_ticket, identity_ticket], quota_headers) = snapshot
        .gates
        .caller_gates(
            route,
            matched.route.index,
            identity.as_deref(),
            client_id.as_deref(),
            conn.peer.ip(),
            req.headers(),
            now,
        )
        .await?;
    // The cap all callers share comes last, so refused requests never use it up.
    snapshot.gates.upstream_cap(route.upstream).await?;

    let upstream_uri = {
        let rest = if route.strip_prefix {
            &path[matched.rest_start..]
        } else {
            path
        };
        upstream.uri_for(rest, req.uri().query())?
    };
    let method = req.method().clone();
    let origin_host = host_header_value(&req);
    let headers = req.headers_mut();
    headers::strip_hop_by_hop(headers);
    headers::strip_gateway_namespace(headers);
    headers::strip_underscore_names(headers, conn.allow_underscore_headers);
    headers::join_cookies(headers);
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

    let has_body = declared != Some(0) && !hyper::body::Body::is_end_stream(req.body());
    let watch = has_body.then(|| Arc::new(BodyWatch::default()));
    let (mut parts, incoming) = req.into_parts();
    parts.uri = upstream_uri;
    // Where a refresh may follow, small bodies are buffered so the request can be replayed.
    let replay_max = refresh.as_ref().and_then(|_| step.replay_max(limit));
    let body = match &watch {
        None => UpstreamBody::Empty,
        Some(w) => {
            let limits = &snapshot.limits;
            request_body(incoming, declared, replay_max, w.clone(), limits, upstream).await?
        }
    };
    let replay = refresh.as_ref().and_then(|_| Replay::keep(&parts, &body));
    let upstream_req = Request::from_parts(parts, body);

    let permit = upstream.acquire().await?;
    let response = send(upstream, upstream_req, &watch, limit).await?;
    if let Some(ticket) = delivery {
        ticket.settle(response.status().is_success());
    }
    // Step 7 after a 401: refresh once, replay once with the new token; a 401 after that (or
    // after a refresh before forwarding) goes back as it is.
    let (response, permit) = match &refresh {
        Some(ctx) if response.status() == StatusCode::UNAUTHORIZED && handover.is_none() => {
            let after =
                Box::pin(step.after_unauthorized(ctx, &method, replay, response, permit, upstream))
                    .await?;
            handover = after.handover;
            (after.response, after.permit)
        }
        _ => (response, permit),
    };

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
    // From here the head is the caller's: a body that breaks or stalls later is cut visibly
    // and counted.
    if let Some(name) = snapshot.upstream_names.get(route.upstream) {
        let stall_after = upstream.response_timeout();
        response.body_mut().watch_upstream(|| {
            UpstreamWatch::new(state.metrics.clone(), name.clone(), stall_after)
        });
    }
    quota_headers.apply(response.headers_mut());
    if let Some(handover) = handover {
        handover.apply(response.headers_mut(), state.clock.now());
    }
    Ok(response)
}

/// The body to send upstream: the client's stream under the size cap and the body read
/// timeout, or (with `replay_max`) the whole body read first when it is that small, within the
/// upstream's response timeout.
async fn request_body(
    incoming: Incoming,
    declared: Option<u64>,
    replay_max: Option<u64>,
    watch: Arc<BodyWatch>,
    limits: &Limits,
    upstream: &Upstream,
) -> Result<UpstreamBody, GatewayError> {
    let (limit, read_timeout) = (limits.max_body_bytes, limits.body_read_timeout);
    let Some(max) = replay_max.filter(|max| declared.is_none_or(|len| len <= *max)) else {
        return Ok(UpstreamBody::Stream(LimitedIncoming::new(
            incoming,
            limit,
            watch,
            read_timeout,
        )));
    };
    let read = buffer_for_replay(incoming, max, limit, watch, read_timeout);
    match tokio::time::timeout(upstream.response_timeout(), read).await {
        Err(_) | Ok(Err(BufferError::Stalled)) => Err(GatewayError::BodyTimeout),
        Ok(Err(BufferError::TooLarge)) => Err(GatewayError::BodyTooLarge { limit }),
        Ok(Err(BufferError::Broken)) => Err(GatewayError::BadRequest("request body ended early")),
        Ok(Ok(body)) => Ok(body),
    }
}

/// Sends one request upstream; a body over the cap is 413 and a body the client stalled is
/// 408 (also when the upstream's timeout runs out while waiting on the client's body), not a
/// 502 or 504.
pub(super) async fn send(
    upstream: &Upstream,
    req: Request<UpstreamBody>,
    watch: &Option<Arc<BodyWatch>>,
    limit: u64,
) -> Result<Response<ResponseBody>, GatewayError> {
    match upstream.send(req).await {
        Ok(r) => Ok(r),
        Err(CallError::Gateway(e)) => {
            let timed_out = matches!(e, GatewayError::UpstreamTimeout { .. });
            Err(body_fault(watch, limit, timed_out).unwrap_or(e))
        }
        Err(CallError::RequestBody) => Err(body_fault(watch, limit, false)
            .unwrap_or(GatewayError::BadRequest("request body ended early"))),
    }
}

fn matched_view(m: &RouteMatch<'_>) -> MatchView {
    MatchView {
        rewrite_errors: m.route.config.rewrite_errors,
        bearer_route: matches!(m.route.config.auth, AuthPolicy::Bearer(_)),
    }
}

/// The client's part in a failed exchange: its body went over the cap, or stalled (or was
/// still awaited when a timeout ran out).
fn body_fault(watch: &Option<Arc<BodyWatch>>, limit: u64, timed_out: bool) -> Option<GatewayError> {
    let watch = watch.as_ref()?;
    if watch.over_limit() {
        Some(GatewayError::BodyTooLarge { limit })
    } else if watch.stalled() || (timed_out && watch.waiting_on_client()) {
        Some(GatewayError::BodyTimeout)
    } else {
        None
    }
}

fn owned(
    (deprecation, sunset): (&HeaderValue, Option<&HeaderValue>),
) -> (HeaderValue, Option<HeaderValue>) {
    (deprecation.clone(), sunset.cloned())
}
