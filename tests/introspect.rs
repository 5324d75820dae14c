//! `Introspector` against a fake OAuth server on a real socket: the request it sends, the cache
//! (hits, single-flight, negative entries, expiry on the injected clock), and how failures of
//! the OAuth server are answered (breaker, back-off gate, 4xx refusals).

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fxa_gateway::auth::introspect::{IntrospectError, IntrospectSettings, Introspector};
use fxa_gateway::backoff::{BackoffGate, BackoffPolicy, Gate as _};
use fxa_gateway::clock::ManualClock;
use fxa_gateway::config::UpstreamConfig;
use fxa_gateway::upstream::Upstream;
use serde_json::{Value, json};
use support::fake::{FakeUpstream, RecordedRequest, Reply};

const PATH: &str = "/v1/introspect";

/// The fake OAuth server's answers by token; unknown tokens are `{"active": false}`.
type Answers = Arc<Mutex<HashMap<String, Reply>>>;

struct Harness {
    fake: FakeUpstream,
    answers: Answers,
    clock: Arc<ManualClock>,
    gate: Arc<BackoffGate>,
    introspector: Arc<Introspector>,
}

impl Harness {
    async fn start() -> Harness {
        Self::with(|_| {}).await
    }

    async fn with(tune: impl FnOnce(&mut UpstreamConfig)) -> Harness {
        let fake = FakeUpstream::start().await;
        let answers: Answers = Arc::default();
        let script = Arc::clone(&answers);
        fake.on_fn(PATH, move |req| {
            let token = token_of(req);
            let answers = script.lock().unwrap();
            answers
                .get(&token)
                .cloned()
                .unwrap_or_else(|| Reply::new().json(json!({"active": false})))
        });
        let mut config = upstream_config(&fake.url());
        tune(&mut config);
        let clock = ManualClock::new(SystemTime::now());
        let gate = Arc::new(BackoffGate::new(BackoffPolicy::default()));
        let introspector = Arc::new(Introspector::new(
            Arc::new(Upstream::new(&config).unwrap()),
            0,
            Arc::clone(&gate),
            clock.clone(),
            IntrospectSettings::default(),
        ));
        Harness {
            fake,
            answers,
            clock,
            gate,
            introspector,
        }
    }

    fn answer(&self, token: &str, reply: Reply) {
        self.answers.lock().unwrap().insert(token.to_owned(), reply);
    }

    /// An FxA-shaped active answer expiring `ttl` after the clock's now (milliseconds).
    fn answer_active(&self, token: &str, ttl: Duration) {
        let now = self.clock_ms();
        let exp = now + ttl.as_millis() as u64;
        self.answer(
            token,
            Reply::new().json(json!({
                "active": true, "scope": "profile", "client_id": "5882386c6d801776",
                "token_type": "access_token", "sub": "0123456789abcdef0123456789abcdef",
                "iat": now, "exp": exp, "jti": "ab", "fxa-lastUsedAt": now,
            })),
        );
    }

    fn clock_ms(&self) -> u64 {
        use fxa_gateway::clock::Clock as _;
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    }

    fn calls(&self) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.path() == PATH)
            .count()
    }

    async fn introspect(
        &self,
        token: &str,
    ) -> Result<Arc<fxa_gateway::auth::introspect::TokenInfo>, IntrospectError> {
        self.introspector.introspect(token).await
    }
}

fn upstream_config(url: &str) -> UpstreamConfig {
    UpstreamConfig {
        name: "oauth".into(),
        url: url.parse().unwrap(),
        ca_pem: None,
        ca_only: false,
        connect_timeout: Duration::from_secs(1),
        response_timeout: Duration::from_secs(2),
        max_connections: 64,
        pool_idle_timeout: Duration::from_secs(30),
        http2: false,
        rate_limit: None,
    }
}

/// The `token` field of an introspection request.
fn token_of(req: &RecordedRequest) -> String {
    req.form_field("token").unwrap_or_default()
}

/// "Unavailable" during an outage: every failure opens the breaker (1 s by default), so the
/// wait is known.
fn unavailable() -> IntrospectError {
    IntrospectError::Unavailable {
        retry_after: Some(1),
    }
}

#[tokio::test]
async fn introspect_sends_an_rfc7662_form_post() {
    let h = Harness::start().await;
    h.answer_active("a1b2", Duration::from_secs(3600));
    h.introspect("a1b2").await.unwrap();
    let weird = "a b+c/d=&é";
    assert!(!h.introspect(weird).await.unwrap().active);

    let requests = h.fake.requests();
    let req = &requests[0];
    assert_eq!(req.method, http::Method::POST);
    assert_eq!(req.path(), PATH);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(req.header("accept"), Some("application/json"));
    assert_eq!(req.body_str(), "token=a1b2&token_type_hint=access_token");
    assert_eq!(
        requests[1].body_str(),
        "token=a+b%2Bc%2Fd%3D%26%C3%A9&token_type_hint=access_token"
    );
}

#[tokio::test]
async fn introspect_active_token_is_parsed_with_millisecond_times() {
    let h = Harness::start().await;
    h.answer_active("tok", Duration::from_secs(3600));
    let info = h.introspect("tok").await.unwrap();
    assert!(info.is_active_access_token());
    assert_eq!(info.scope, "profile");
    assert_eq!(info.client_id.as_deref(), Some("5882386c6d801776"));
    let exp = info.exp.unwrap();
    let now = SystemTime::now();
    assert!(
        exp > now && exp < now + Duration::from_secs(3700),
        "{exp:?}"
    );
}

#[tokio::test]
async fn introspect_cache_hit_one_call_for_100_lookups() {
    let h = Harness::start().await;
    h.answer_active("tok", Duration::from_secs(3600));
    for _ in 0..100 {
        assert!(h.introspect("tok").await.unwrap().active);
    }
    assert_eq!(h.calls(), 1);
    assert_eq!(h.introspector.cached_entries(), 1);
}

#[tokio::test]
async fn introspect_single_flight_100_concurrent_first_lookups_one_call() {
    let h = Harness::start().await;
    let now = h.clock_ms();
    h.answer(
        "tok",
        Reply::new()
            .json(json!({"active": true, "scope": "profile", "exp": now + 3_600_000}))
            .delay(Duration::from_millis(200)),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let introspector = Arc::clone(&h.introspector);
        tasks.spawn(async move { introspector.introspect("tok").await });
    }
    while let Some(result) = tasks.join_next().await {
        assert!(result.unwrap().unwrap().active);
    }
    assert_eq!(h.calls(), 1);
}

#[tokio::test]
/// moka hands the lookup to a waiter when the leading caller is dropped; the dropped caller's
/// call still finishes in its own task (so breaker and back-off bookkeeping complete).
async fn introspect_waiters_survive_the_leader_going_away() {
    let h = Harness::start().await;
    let now = h.clock_ms();
    h.answer(
        "tok",
        Reply::new()
            .json(json!({"active": true, "exp": now + 3_600_000}))
            .delay(Duration::from_millis(300)),
    );
    let leader = {
        let introspector = Arc::clone(&h.introspector);
        tokio::spawn(async move { introspector.introspect("tok").await })
    };
    assert!(h.fake.wait_for_requests(1, Duration::from_secs(2)).await);
    let follower = {
        let introspector = Arc::clone(&h.introspector);
        tokio::spawn(async move { introspector.introspect("tok").await })
    };
    leader.abort();
    assert!(follower.await.unwrap().unwrap().active);
    assert!(h.introspect("tok").await.unwrap().active);
    assert!(h.calls() <= 2, "at most one extra call: {}", h.calls());
    assert!(!h.introspector.breaker_open());
}

#[tokio::test]
async fn introspect_inactive_answers_are_cached_for_the_negative_ttl() {
    let h = Harness::start().await;
    for _ in 0..20 {
        assert!(!h.introspect("guess").await.unwrap().active);
    }
    assert_eq!(h.calls(), 1);
    h.clock.advance(Duration::from_secs(4));
    assert!(!h.introspect("guess").await.unwrap().active);
    assert_eq!(h.calls(), 1);
    h.clock.advance(Duration::from_secs(1));
    assert!(!h.introspect("guess").await.unwrap().active);
    assert_eq!(
        h.calls(),
        2,
        "negative entries last 5 s on the gateway's clock"
    );
}

#[tokio::test]
async fn introspect_expiry_is_honoured_on_the_injected_clock() {
    let h = Harness::start().await;
    h.answer_active("tok", Duration::from_secs(60));
    assert!(h.introspect("tok").await.unwrap().active);
    h.clock.advance(Duration::from_secs(59));
    assert!(h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 1);
    // Past exp: the server below still claims the token is active with the old exp; the
    // gateway asks again but never serves it as active.
    h.clock.advance(Duration::from_secs(2));
    assert!(!h.introspect("tok").await.unwrap().active);
    assert!(!h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 2, "the expired answer is cached negatively");
}

#[tokio::test]
async fn introspect_active_answers_are_reused_at_most_max_ttl() {
    let h = Harness::start().await;
    h.answer_active("tok", Duration::from_secs(86_400));
    assert!(h.introspect("tok").await.unwrap().active);
    h.clock.advance(Duration::from_secs(299));
    assert!(h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 1);
    // Revoked at FxA meanwhile: seen once max_ttl has passed.
    h.answer("tok", Reply::new().json(json!({"active": false})));
    h.clock.advance(Duration::from_secs(1));
    assert!(!h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn introspect_refresh_tokens_come_back_marked() {
    let h = Harness::start().await;
    h.answer(
        "rt",
        Reply::new()
            .json(json!({"active": true, "token_type": "refresh_token", "scope": "profile"})),
    );
    let info = h.introspect("rt").await.unwrap();
    assert!(info.active);
    assert!(!info.is_active_access_token());
}

#[tokio::test]
async fn introspect_4xx_is_refused_not_an_outage() {
    let h = Harness::start().await;
    h.answer(
        "rt",
        Reply::new().status(400).json(json!({
            "code": 400, "errno": 116, "error": "Bad Request", "message": "Not a public client",
        })),
    );
    assert_eq!(h.introspect("rt").await, Err(IntrospectError::Refused));
    assert_eq!(h.introspect("rt").await, Err(IntrospectError::Refused));
    assert_eq!(h.calls(), 1, "refusals are cached like inactive answers");
    assert!(!h.introspector.breaker_open());
    // Other tokens are still looked up.
    h.answer_active("ok", Duration::from_secs(60));
    assert!(h.introspect("ok").await.unwrap().active);
}

#[tokio::test]
async fn introspect_oauth_server_down_is_unavailable_at_once() {
    let addr = FakeUpstream::refusing();
    let config = upstream_config(&format!("http://{addr}"));
    let clock = ManualClock::new(SystemTime::now());
    let introspector = Introspector::new(
        Arc::new(Upstream::new(&config).unwrap()),
        0,
        Arc::new(BackoffGate::new(BackoffPolicy::default())),
        clock.clone(),
        IntrospectSettings::default(),
    );
    let started = Instant::now();
    assert_eq!(introspector.introspect("tok").await, Err(unavailable()));
    assert_eq!(introspector.introspect("other").await, Err(unavailable()));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(introspector.breaker_open());
}

#[tokio::test]
async fn introspect_breaker_answers_without_calling_then_probes_and_recovers() {
    let h = Harness::with(|c| c.response_timeout = Duration::from_millis(300)).await;
    h.answer(
        "slow",
        Reply::new()
            .json(json!({"active": true}))
            .delay(Duration::from_secs(5)),
    );
    let started = Instant::now();
    assert_eq!(h.introspect("slow").await, Err(unavailable()));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(h.calls(), 1);

    // While open: no call at all, and no waiting.
    h.answer_active("tok", Duration::from_secs(60));
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(h.introspect("tok").await, Err(unavailable()));
    }
    assert!(started.elapsed() < Duration::from_millis(200));
    assert_eq!(
        h.calls(),
        1,
        "failures are not cached, but the breaker holds calls back"
    );

    // After the breaker time one probe goes; the server is back.
    h.clock.advance(Duration::from_secs(1));
    assert!(h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 2);
    assert!(!h.introspector.breaker_open());
}

#[tokio::test]
async fn introspect_5xx_and_garbage_are_unavailable_and_never_cached() {
    let h = Harness::start().await;
    h.answer("tok", Reply::new().status(500).body("oops"));
    assert_eq!(h.introspect("tok").await, Err(unavailable()));
    h.clock.advance(Duration::from_secs(1));
    h.answer("tok", Reply::new().body("<html>not json</html>"));
    assert_eq!(h.introspect("tok").await, Err(unavailable()));
    h.clock.advance(Duration::from_secs(1));
    h.answer("tok", Reply::new().body(vec![b' '; 70 * 1024]));
    assert_eq!(
        h.introspect("tok").await,
        Err(unavailable()),
        "answer over 64 KiB"
    );
    h.clock.advance(Duration::from_secs(1));
    h.answer_active("tok", Duration::from_secs(60));
    assert!(h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 4);
}

#[tokio::test]
async fn introspect_503_retry_after_opens_the_gate_for_everyone() {
    let h = Harness::start().await;
    h.answer(
        "tok",
        Reply::new()
            .status(503)
            .header("retry-after", "30")
            .json(json!({
                "code": 503, "errno": 201, "error": "Service Unavailable",
                "message": "Service unavailable", "retryAfter": 30,
            })),
    );
    assert_eq!(
        h.introspect("tok").await,
        Err(IntrospectError::Unavailable {
            retry_after: Some(30)
        })
    );
    use fxa_gateway::clock::Clock as _;
    assert!(h.gate.upstream_window(0, h.clock.now()).is_some());

    // Past the breaker but inside the window: the gate answers, nothing reaches the server.
    h.answer_active("other", Duration::from_secs(3600));
    h.clock.advance(Duration::from_secs(2));
    assert_eq!(
        h.introspect("other").await,
        Err(IntrospectError::Unavailable {
            retry_after: Some(28)
        })
    );
    assert_eq!(h.calls(), 1);

    // The window ends: one probe goes through and succeeds.
    h.clock.advance(Duration::from_secs(28));
    assert!(h.introspect("other").await.unwrap().active);
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn introspect_429_is_unavailable_with_retry_after() {
    let h = Harness::start().await;
    h.answer(
        "tok",
        Reply::new()
            .status(429)
            .header("retry-after", "7")
            .json(json!({
                "code": 429, "errno": 114, "error": "Too Many Requests", "retryAfter": 7,
            })),
    );
    assert_eq!(
        h.introspect("tok").await,
        Err(IntrospectError::Unavailable {
            retry_after: Some(7)
        })
    );
}

#[tokio::test]
async fn introspect_invalidate_and_seed() {
    let h = Harness::start().await;
    h.answer_active("tok", Duration::from_secs(3600));
    assert!(h.introspect("tok").await.unwrap().active);
    h.introspector.invalidate("tok").await;
    assert!(h.introspect("tok").await.unwrap().active);
    assert_eq!(h.calls(), 2);

    let mut info = (*h.introspect("tok").await.unwrap()).clone();
    info.scope = "profile:email".into();
    h.introspector.seed("seeded", info).await;
    assert_eq!(h.introspect("seeded").await.unwrap().scope, "profile:email");
    assert_eq!(h.calls(), 2);
}

#[tokio::test]
async fn introspect_refuses_oversized_tokens_without_a_call() {
    let h = Harness::start().await;
    let huge = "a".repeat(5000);
    assert!(!h.introspect(&huge).await.unwrap().active);
    assert!(!h.introspect("").await.unwrap().active);
    assert_eq!(h.calls(), 0);
}

#[tokio::test]
async fn introspect_debug_output_carries_no_token() {
    let h = Harness::start().await;
    h.answer_active(
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        Duration::from_secs(60),
    );
    let info = h
        .introspect("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
        .await
        .unwrap();
    let shown = format!("{info:?} {:?}", h.introspector);
    assert!(
        !shown.contains("0123456789abcdef0123456789abcdef0123456789abcdef"),
        "{shown}"
    );
    let _: Value = json!(shown);
}
