//! Prometheus metrics, served on the admin listener at `/metrics` (OpenMetrics text).
//!
//! Label values are bounded: route and upstream names from the config, status codes, errno
//! numbers and static reason labels. Never a path, a request's host, or a token.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A config name (route, upstream) as a label value: cheap to clone, never from a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Name(pub Arc<str>);

impl EncodeLabelValue for Name {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// An errno, or `none` for answers without one.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Errno(pub Option<u16>);

impl EncodeLabelValue for Errno {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        match self.0 {
            Some(n) => write!(encoder, "{n}"),
            None => encoder.write_str("none"),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Name,
    pub status: u16,
    pub errno: Errno,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub route: Name,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub route: Name,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: Name,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: Name,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `applied` or `refused`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConfigLabels {
    /// SHA-256 of the config file and the non-secret files it names (`none`: not from a file).
    pub hash: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FallbackLabels {
    pub state: &'static str,
    pub outcome: &'static str,
}

/// The shared-state (`[redis]`) series; registered only when Redis is configured.
#[derive(Clone, Default)]
pub struct RedisMetrics {
    /// 1 while Redis answers, 0 while this replica runs on its own state.
    pub up: Gauge,
    fallbacks: Family<FallbackLabels, Counter>,
}

impl RedisMetrics {
    /// A decision made without Redis: on local state (`local`) or refused (`refused`).
    pub fn fallback(&self, state: &'static str, outcome: &'static str) {
        self.fallbacks
            .get_or_create(&FallbackLabels { state, outcome })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthOutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `password_change`, `delete_user`, `profile_change`, `subscription_state_change`,
    /// `other`, or `unknown` (a SET refused before its events could be trusted).
    pub event: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// `local` (an event this replica verified) or `remote` (another replica's, via Redis).
    pub source: &'static str,
}

/// The local-JWT and security-event series. One per process, handed to every configuration's
/// auth runtime (a reload keeps counting into the same series). Labels are static words:
/// never a token, a `kid`, a uid or a `jti`.
#[derive(Clone, Default)]
pub struct AuthMetrics {
    verifications: Family<AuthOutcomeLabels, Counter>,
    claim_cache_hits: Counter,
    jwks_fetches: Family<AuthOutcomeLabels, Counter>,
    rechecks: Family<AuthOutcomeLabels, Counter>,
    events: Family<EventLabels, Counter>,
    revocations: Family<SourceLabels, Counter>,
}

impl AuthMetrics {
    /// A JWT access token checked locally (RS256 and claims): `verified`, `refused_<class>`,
    /// or `no_keys` (introspected instead).
    pub fn verification(&self, outcome: &'static str) {
        self.verifications
            .get_or_create(&AuthOutcomeLabels { outcome })
            .inc();
    }

    /// A JWT access token served from the verified-claims cache.
    pub fn claim_cache_hit(&self) {
        self.claim_cache_hits.inc();
    }

    /// One `/v1/jwks` fetch: `ok`, `failed` or `backed_off`.
    pub fn jwks_fetch(&self, outcome: &'static str) {
        self.jwks_fetches
            .get_or_create(&AuthOutcomeLabels { outcome })
            .inc();
    }

    /// One revocation-window recheck: `active`, `revoked` or `failed` (kept for a window).
    pub fn recheck(&self, outcome: &'static str) {
        self.rechecks
            .get_or_create(&AuthOutcomeLabels { outcome })
            .inc();
    }

    /// One security event received.
    pub fn security_event(&self, event: &'static str, outcome: &'static str) {
        self.events
            .get_or_create(&EventLabels { event, outcome })
            .inc();
    }

    /// One revocation applied to this replica's cached state.
    pub fn revocation_applied(&self, source: &'static str) {
        self.revocations
            .get_or_create(&SourceLabels { source })
            .inc();
    }

    fn register(&self, registry: &mut Registry) {
        registry.register(
            "jwt_local_verifications",
            "JWT access tokens checked locally (signature and claims), by outcome: verified, \
             refused_format, refused_signature (alg, kid, signature), refused_claims (iss, aud, \
             claims), refused_revoked (at a revocation-window recheck), no_keys (introspected \
             instead)",
            self.verifications.clone(),
        );
        registry.register(
            "jwt_claim_cache_hits",
            "JWT access tokens served from the verified-claims cache (no signature check)",
            self.claim_cache_hits.clone(),
        );
        registry.register(
            "jwks_fetches",
            "Fetches of the OAuth server's /v1/jwks, by outcome: ok, failed, backed_off (not \
             sent: the OAuth server is in a back-off window)",
            self.jwks_fetches.clone(),
        );
        registry.register(
            "jwt_rechecks",
            "Revocation-window rechecks of locally verified JWTs (introspection), by outcome: \
             active, revoked, failed (the verified state kept for another window)",
            self.rechecks.clone(),
        );
        registry.register(
            "security_events",
            "Security Event Tokens received on security-events routes, by event type and \
             outcome: accepted (verified, forwarded to the RP), replayed (jti delivered \
             before), refused (401 errno 110), unavailable (no JWK set yet), busy (jti ledger \
             full)",
            self.events.clone(),
        );
        registry.register(
            "revocations_applied",
            "Security-event revocations applied to this replica's cached tokens, by source: \
             local (verified here) or remote (another replica's, through Redis)",
            self.revocations.clone(),
        );
    }
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// Handles into the request families (shared with them: the same series), per thread.
struct HotSeries {
    metrics: u64,
    route: Name,
    status: u16,
    errno: Option<u16>,
    requests: Counter,
    duration: Histogram,
}

/// Enough for the routes and answers a worker thread sees most; the oldest entry makes room.
const HOT_ENTRIES: usize = 32;

thread_local! {
    static HOT: RefCell<Vec<HotSeries>> = const { RefCell::new(Vec::new()) };
}

/// Every series the gateway exports.
pub struct Metrics {
    /// Tells this instance's entries apart in the per-thread handle cache.
    id: u64,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    errors: Family<ReasonLabels, Counter>,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub open_connections: Gauge,
    /// Connections closed at once because their peer address had its share open.
    pub refused_connections: Counter,
    pub in_flight: Gauge,
    /// Tokio tasks alive, read from the runtime at each scrape.
    pub tasks: Gauge,
    backoff_remaining: Family<UpstreamLabels, Gauge>,
    backoff_header: Family<UpstreamLabels, Gauge>,
    refreshes: Family<OutcomeLabels, Counter>,
    replays: Family<OutcomeLabels, Counter>,
    config: ConfigSeries,
    redis: Option<RedisMetrics>,
}

/// Which configuration is live, and how reloads went.
struct ConfigSeries {
    reloads: Family<ReloadLabels, Counter>,
    info: Family<ConfigLabels, Gauge>,
    loaded: Gauge,
}

impl ConfigSeries {
    fn register(registry: &mut Registry) -> ConfigSeries {
        let series = ConfigSeries {
            reloads: Family::default(),
            info: Family::default(),
            loaded: Gauge::default(),
        };
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP, POST /__reload__, a watched file changed), by \
             outcome: applied, or refused (the previous configuration kept serving)",
            series.reloads.clone(),
        );
        registry.register(
            "config_info",
            "The configuration serving now (1), labelled with its hash",
            series.info.clone(),
        );
        registry.register(
            "config_loaded_timestamp_seconds",
            "When the configuration serving now was loaded (Unix seconds)",
            series.loaded.clone(),
        );
        series
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    /// Every series, plus the shared-state ones (a gateway with `[redis]`).
    pub fn with_redis() -> Metrics {
        let mut metrics = Metrics::new();
        let redis = RedisMetrics::default();
        metrics.registry.register(
            "redis_up",
            "1 while Redis answers; 0 while this replica decides on its own state",
            redis.up.clone(),
        );
        metrics.registry.register(
            "redis_fallbacks",
            "Decisions made without Redis, by kind of state and outcome: local (on this \
             replica's own state) or refused (on_redis_down = \"refuse\")",
            redis.fallbacks.clone(),
        );
        metrics.redis = Some(redis);
        metrics
    }

    /// Registers the local-JWT and security-event series (the auth runtime counts into them).
    pub fn with_auth(mut self, auth: &AuthMetrics) -> Metrics {
        auth.register(&mut self.registry);
        self
    }

    /// The shared-state series, when registered.
    pub fn redis(&self) -> Option<RedisMetrics> {
        self.redis.clone()
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fxa_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let errors = Family::<ReasonLabels, Counter>::default();
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        let open_connections = Gauge::default();
        let refused_connections = Counter::default();
        let in_flight = Gauge::default();
        let tasks = Gauge::default();
        let backoff_remaining = Family::<UpstreamLabels, Gauge>::default();
        let backoff_header = Family::<UpstreamLabels, Gauge>::default();
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        let replays = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route, status and errno",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the response head, by route",
            duration.clone(),
        );
        registry.register(
            "gateway_errors",
            "Errors the gateway made itself, by route and reason",
            errors.clone(),
        );
        registry.register(
            "upstream_errors",
            "Upstream connect failures, timeouts and broken answers; body_broken and body_stalled: \
         a response body that failed or stalled after its head went out (the client sees the \
         connection close or the stream reset)",
            upstream_errors.clone(),
        );
        registry.register(
            "open_connections",
            "Client connections open",
            open_connections.clone(),
        );
        registry.register(
            "refused_connections",
            "Client connections closed at once: their peer address had \
             limits.max_connections_per_peer open",
            refused_connections.clone(),
        );
        registry.register(
            "in_flight_requests",
            "Requests being handled",
            in_flight.clone(),
        );
        registry.register(
            "tasks",
            "Tokio tasks alive (connections, streams, upstream connections, sweepers), read at \
             each scrape",
            tasks.clone(),
        );
        registry.register(
            "backoff_window_seconds",
            "Seconds left in an upstream's back-off window (0 when half-open or ramping)",
            backoff_remaining.clone(),
        );
        registry.register(
            "backoff_header_seconds",
            "Last Backoff/X-Backoff value an upstream sent",
            backoff_header.clone(),
        );
        registry.register(
            "refreshes",
            "Requests that needed a token refresh, by route and outcome: refreshed (this request \
             made the token endpoint call), reused (another request's result), reauth (refresh \
             token rejected), misconfigured (the OAuth server refused the gateway's client), \
             unavailable (OAuth server down or backed off)",
            refreshes.clone(),
        );
        registry.register(
            "refresh_replays",
            "Requests sent again with a refreshed token after an upstream 401 (replayed), or \
             answered with the 401 because their body could not be replayed (not_replayed)",
            replays.clone(),
        );
        let config = ConfigSeries::register(&mut registry);
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        Metrics {
            config,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            registry,
            refreshes,
            replays,
            requests,
            duration,
            errors,
            upstream_errors,
            open_connections,
            refused_connections,
            in_flight,
            tasks,
            backoff_remaining,
            backoff_header,
            redis: None,
        }
    }

    /// One answered request.
    pub fn request(&self, route: &Name, status: u16, errno: Option<u16>, elapsed: Duration) {
        // The series of the last few (route, status, errno) seen on this thread, so the usual
        // request does not hash its labels into the families' maps twice.
        HOT.with_borrow_mut(|hot| {
            let found = hot.iter().find(|e| {
                e.metrics == self.id
                    && Arc::ptr_eq(&e.route.0, &route.0)
                    && e.status == status
                    && e.errno == errno
            });
            let entry = match found {
                Some(entry) => entry,
                None => {
                    if hot.len() >= HOT_ENTRIES {
                        hot.remove(0);
                    }
                    hot.push(HotSeries {
                        metrics: self.id,
                        route: route.clone(),
                        status,
                        errno,
                        requests: self
                            .requests
                            .get_or_create(&RequestLabels {
                                route: route.clone(),
                                status,
                                errno: Errno(errno),
                            })
                            .clone(),
                        duration: self
                            .duration
                            .get_or_create(&RouteLabels {
                                route: route.clone(),
                            })
                            .clone(),
                    });
                    &hot[hot.len() - 1]
                }
            };
            entry.requests.inc();
            entry.duration.observe(elapsed.as_secs_f64());
        });
    }

    /// One reload attempt: `applied` or `refused`.
    pub fn config_reload(&self, outcome: &'static str) {
        self.config
            .reloads
            .get_or_create(&ReloadLabels { outcome })
            .inc();
    }

    /// The configuration now serving (replaces the previous info series).
    pub fn config_loaded(&self, hash: Option<&str>, loaded_at: std::time::SystemTime) {
        self.config.info.clear();
        let hash = hash.unwrap_or("none").to_owned();
        self.config
            .info
            .get_or_create(&ConfigLabels { hash })
            .set(1);
        let secs = loaded_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.config
            .loaded
            .set(i64::try_from(secs).unwrap_or(i64::MAX));
    }

    /// An error the gateway made itself.
    pub fn gateway_error(&self, route: &Name, reason: &'static str) {
        self.errors
            .get_or_create(&ReasonLabels {
                route: route.clone(),
                reason,
            })
            .inc();
    }

    pub fn upstream_error(&self, upstream: &Name, kind: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                upstream: upstream.clone(),
                kind,
            })
            .inc();
    }

    pub fn backoff_header(&self, upstream: &Name, seconds: u64) {
        let value = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.backoff_header
            .get_or_create(&UpstreamLabels {
                upstream: upstream.clone(),
            })
            .set(value);
    }

    pub fn backoff_window(&self, upstream: &Name, seconds: u64) {
        let value = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.backoff_remaining
            .get_or_create(&UpstreamLabels {
                upstream: upstream.clone(),
            })
            .set(value);
    }

    pub fn refresh(&self, route: &Name, outcome: &'static str) {
        self.refreshes
            .get_or_create(&OutcomeLabels {
                route: route.clone(),
                outcome,
            })
            .inc();
    }

    pub fn replay(&self, route: &Name, outcome: &'static str) {
        self.replays
            .get_or_create(&OutcomeLabels {
                route: route.clone(),
                outcome,
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(metrics: &Metrics, line_start: &str) -> Option<String> {
        metrics
            .encode()
            .lines()
            .find(|l| l.starts_with(line_start))
            .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
    }

    #[test]
    fn the_per_thread_handles_are_the_exported_series_and_kept_apart_per_instance() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let route = Name(Arc::from("api"));
        let other = Name(Arc::from("api")); // same text, another config: its own entry
        for _ in 0..3 {
            a.request(&route, 200, None, Duration::from_millis(1));
        }
        a.request(&other, 200, None, Duration::from_millis(1));
        a.request(&route, 503, Some(201), Duration::from_millis(1));
        b.request(&route, 200, None, Duration::from_millis(1));
        assert_eq!(
            count(
                &a,
                "fxa_gateway_requests_total{route=\"api\",status=\"200\""
            )
            .as_deref(),
            Some("4")
        );
        assert_eq!(
            count(
                &a,
                "fxa_gateway_requests_total{route=\"api\",status=\"503\",errno=\"201\""
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            count(
                &b,
                "fxa_gateway_requests_total{route=\"api\",status=\"200\""
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            count(
                &a,
                "fxa_gateway_request_duration_seconds_count{route=\"api\"}"
            )
            .as_deref(),
            Some("5")
        );
    }

    #[test]
    fn more_series_than_the_cache_holds_are_all_counted() {
        let metrics = Metrics::new();
        let route = Name(Arc::from("r"));
        for round in 0..2 {
            for status in 200..(200 + 2 * HOT_ENTRIES as u16) {
                metrics.request(&route, status, None, Duration::ZERO);
            }
            let line = "fxa_gateway_requests_total{route=\"r\",status=\"200\"";
            assert_eq!(count(&metrics, line), Some((round + 1).to_string()));
        }
    }
}
