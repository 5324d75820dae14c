//! Steps 3 and 5, back-off gates: when an upstream answers 429, 503 (or 500 with `Retry-After`),
//! the gateway learns it once and answers every matching request locally until the window
//! ends, then lets exactly one probe through and reopens gradually (`fxa-reference.md` §2.3,
//! issue 7).
//!
//! Never lets a request reach the upstream while its window is open, never grants two live
//! probes for one scope, and never shortens a window. Time is always passed in (`now`), so the
//! whole module is deterministic under a manual clock. State is in-process; with `[redis]`
//! ([`BackoffGate::shared`], see `shared`) windows are mirrored to and from the fleet, judged
//! on this replica's monotonic clock against deadlines set on Redis's clock, and the probe
//! and ramp are the fleet's ([`BackoffGate::admit`]).
//!
//! Which answer opens which window ([`classify`]):
//!
//! | upstream answer | window scope | local answer |
//! |---|---|---|
//! | 503 errno 202/204 + wait | that OAuth client (else the upstream) | 503, same errno |
//! | 503 (errno 201, other or none) + wait | the upstream | 503, errno as given else 201 |
//! | 500 + `Retry-After`/`retryAfter` | the upstream | 503 errno 201 (a local 500 would read as a gateway bug) |
//! | 429 (errno 114 or none) + wait | the caller's identity (else the upstream) | 429, errno as given else 114 |
//! | `Backoff`/`X-Backoff` (only if enabled) | the upstream | 503 errno 201 |
//!
//! "wait" is `Retry-After`, else body `retryAfter`; a 503 with neither uses
//! [`BackoffPolicy::default_503_window`] (none by default: lone load-balancer 503s are common).
//! Every wait is clamped to [`BackoffPolicy::max_window`]; the probe after it asks again.

mod retry_after;
mod scoped;
mod shared;
mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_carry;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::StatusCode;

pub use retry_after::{
    DEFAULT_MAX_RETRY_AFTER, clamp_retry_after, parse_retry_after, whole_seconds_up,
};
use scoped::ScopedWindows;
use window::Window;

/// Upstream indexes above this are refused (a config bug, not a reason to allocate).
const MAX_UPSTREAMS: usize = 4096;

/// Operator knobs. The lead maps `gateway.toml` onto this.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// Longest window kept, whatever the upstream asked (default 300 s).
    pub max_window: Duration,
    /// Window for a 503 that carries no wait at all (default none).
    pub default_503_window: Option<Duration>,
    /// Whether a token-server `Backoff`/`X-Backoff` opens an upstream window (default off).
    pub honour_backoff_header: bool,
    /// How long a probe may stay unanswered before another caller may probe; set it to the
    /// upstream response timeout (default 30 s).
    pub probe_lease: Duration,
    /// Gradual reopening of an upstream after a successful probe; `None` reopens at once.
    pub ramp: Option<RampPolicy>,
    /// Most per-client and per-identity windows held at once (default 10,000).
    pub max_scoped_windows: usize,
}

/// After a successful probe, admit `base_rate_per_sec` × a percentage that rises in `steps`
/// equal steps from `start_percent` to 100 over `period`; then admit everything. Counting is
/// per whole second since the probe succeeded; requests over the count get 503 errno 201,
/// `Retry-After: 1` (nothing is queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RampPolicy {
    pub period: Duration,
    pub steps: u32,
    pub start_percent: u8,
    pub base_rate_per_sec: u32,
}

/// Whose traffic a window stops. Identities and client ids are only hashed, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    /// Everything sent to the upstream (index into the config's upstream list).
    Upstream(usize),
    /// One OAuth client (503 errno 202 "client disabled" / 204).
    Client { upstream: usize, client_id: &'a str },
    /// One caller (429 errno 114): the token's user id, else the AMO issuer, else the OAuth
    /// client id. Prefix by kind (`uid:`, `iss:`, `client:`) if the spaces could overlap.
    Identity { upstream: usize, identity: &'a str },
}

/// What the gateway knows about who sent a request; `None` fields widen a window to the whole
/// upstream (behind the gateway FxA sees one address). A route that wants 429s to close the
/// whole upstream passes no identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller<'a> {
    pub upstream: usize,
    pub client_id: Option<&'a str>,
    pub identity: Option<&'a str>,
}

/// The parts of an upstream answer that matter to back-off. `retry_after` and `backoff` are
/// parsed but not yet clamped (see [`parse_retry_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamAnswer {
    pub status: StatusCode,
    pub errno: Option<u16>,
    pub retry_after: Option<Duration>,
    pub backoff: Option<Duration>,
}

/// A window an answer opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec<'a> {
    pub scope: Scope<'a>,
    /// Already clamped to the policy's maximum; never zero.
    pub length: Duration,
    /// Status and errno of the local answers while it is open.
    pub status: StatusCode,
    pub errno: u16,
}

/// The gate's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// The window just ended and this request is the one probe: send it, then `record` its
    /// answer (or `release_probe` if it never reached the upstream).
    Probe,
    Deny(Denial),
}

/// The local answer: `status`, `errno`, `Retry-After`/`retryAfter` = `retry_after_secs` (whole
/// seconds left, rounded up, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub status: StatusCode,
    pub errno: u16,
    pub retry_after_secs: u64,
}

/// An upstream's back-off state for metrics and `/__heartbeat__`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowInfo {
    /// Zero once half-open or ramping.
    pub remaining: Duration,
    pub status: StatusCode,
    pub errno: u16,
    pub half_open: bool,
    pub probe_in_flight: bool,
    /// Percent of the ramp's base rate admitted now, while ramping.
    pub ramp_percent: Option<u8>,
}

/// The back-off gate as the pipeline sees it. Synchronous on purpose: a shared version keeps
/// this in-process gate as its cache and mirrors windows in the background.
pub trait Gate: Send + Sync + 'static {
    /// Step 3 (with `Scope::Upstream`) and step 5 (client and identity scopes).
    fn check(&self, scope: Scope<'_>, now: SystemTime) -> Admission;
    /// The request that got [`Admission::Probe`] for `scope` will not reach the upstream
    /// (a later gate denied it, the connection failed, the client went away).
    fn release_probe(&self, scope: Scope<'_>, now: SystemTime);
    /// Every real upstream answer: opens or extends the window it calls for and counts as a
    /// successful probe for the caller's other scopes.
    fn record(&self, caller: &Caller<'_>, answer: &UpstreamAnswer, now: SystemTime);
    fn upstream_window(&self, upstream: usize, now: SystemTime) -> Option<WindowInfo>;
}

/// The in-process [`Gate`], shared by all requests.
pub struct BackoffGate {
    policy: BackoffPolicy,
    /// Indexed by upstream; grown on the first window of an upstream, never evicted.
    upstreams: ArcSwap<Vec<Arc<UpstreamSlot>>>,
    scoped: ScopedWindows,
    /// With `[redis]`: windows are mirrored to and from the fleet (see `shared`).
    share: Option<shared::Share>,
}

/// Where a scope's state lives: an upstream slot, or a key of the scoped map.
#[derive(Clone, Copy)]
enum Target {
    Upstream(usize),
    Scoped(scoped::Key),
}

#[derive(Default)]
struct UpstreamSlot {
    /// False while `state` is `None`: the usual, lock-free path.
    active: AtomicBool,
    state: Mutex<Option<Window>>,
}

// === impl BackoffPolicy ===

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            max_window: DEFAULT_MAX_RETRY_AFTER,
            default_503_window: None,
            honour_backoff_header: false,
            probe_lease: Duration::from_secs(30),
            ramp: Some(RampPolicy::default()),
            max_scoped_windows: 10_000,
        }
    }
}

impl Default for RampPolicy {
    /// 25 %, 50 %, 75 %, 100 % of 100 requests/s, 5 s each.
    fn default() -> Self {
        RampPolicy {
            period: Duration::from_secs(20),
            steps: 4,
            start_percent: 25,
            base_rate_per_sec: 100,
        }
    }
}

// === impl Caller ===

impl<'a> Caller<'a> {
    /// The scopes this caller's requests fall in, widest first (the order to check them in).
    pub fn scopes(&self) -> impl Iterator<Item = Scope<'a>> + use<'a> {
        let upstream = self.upstream;
        [
            Some(Scope::Upstream(upstream)),
            self.client_id.map(|client_id| Scope::Client {
                upstream,
                client_id,
            }),
            self.identity
                .map(|identity| Scope::Identity { upstream, identity }),
        ]
        .into_iter()
        .flatten()
    }
}

/// Which window, if any, an upstream answer opens for this caller (table in the module doc).
pub fn classify<'a>(
    answer: &UpstreamAnswer,
    caller: &Caller<'a>,
    policy: &BackoffPolicy,
) -> Option<WindowSpec<'a>> {
    let upstream = Scope::Upstream(caller.upstream);
    let by_status = match answer.status {
        StatusCode::TOO_MANY_REQUESTS => answer.retry_after.map(|wait| {
            let scope = caller
                .identity
                .map_or(upstream, |identity| Scope::Identity {
                    upstream: caller.upstream,
                    identity,
                });
            (scope, answer.status, answer.errno.unwrap_or(114), wait)
        }),
        StatusCode::SERVICE_UNAVAILABLE => {
            let wait = answer.retry_after.or(policy.default_503_window);
            let scope = match (answer.errno, caller.client_id) {
                (Some(202 | 204), Some(client_id)) => Scope::Client {
                    upstream: caller.upstream,
                    client_id,
                },
                _ => upstream,
            };
            wait.map(|wait| (scope, answer.status, answer.errno.unwrap_or(201), wait))
        }
        StatusCode::INTERNAL_SERVER_ERROR => answer
            .retry_after
            .map(|wait| (upstream, StatusCode::SERVICE_UNAVAILABLE, 201, wait)),
        _ => None,
    };
    let by_header = || {
        let wait = answer.backoff.filter(|_| policy.honour_backoff_header)?;
        Some((upstream, StatusCode::SERVICE_UNAVAILABLE, 201, wait))
    };
    let (scope, status, errno, wait) = by_status.or_else(by_header)?;
    let length = clamp_retry_after(wait, policy.max_window);
    (!length.is_zero()).then_some(WindowSpec {
        scope,
        length,
        status,
        errno,
    })
}

// === impl BackoffGate ===

impl BackoffGate {
    pub fn new(policy: BackoffPolicy) -> Self {
        BackoffGate {
            scoped: ScopedWindows::new(policy.max_scoped_windows),
            policy,
            upstreams: ArcSwap::from_pointee(Vec::new()),
            share: None,
        }
    }

    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// A gate with `policy` that keeps this gate's windows (after a reload): `remap[old]` is
    /// the new index of the upstream at `old`, `None` when it is gone or now means another
    /// server. Kept windows keep their end, status and probe; the new policy applies from the
    /// next answer.
    pub fn carry_over(&self, policy: BackoffPolicy, remap: &[Option<usize>]) -> BackoffGate {
        let old = self.upstreams.load();
        let mut slots: Vec<Arc<UpstreamSlot>> = Vec::new();
        for (from, slot) in old.iter().enumerate() {
            let Some(Some(to)) = remap.get(from) else {
                continue;
            };
            let state = slot
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if state.is_none() {
                continue;
            }
            if slots.len() <= *to {
                slots.resize_with(to + 1, Arc::default);
            }
            slots[*to] = Arc::new(UpstreamSlot {
                active: AtomicBool::new(true),
                state: Mutex::new(state),
            });
        }
        BackoffGate {
            scoped: self.scoped.carry_over(policy.max_scoped_windows, remap),
            policy,
            upstreams: ArcSwap::from_pointee(slots),
            // Only for an in-process gate: with `[redis]` a reload builds a new shared gate.
            share: None,
        }
    }

    /// Opens (or extends) the window `spec` describes. `record` calls this; a route override
    /// may call it directly with its own scope.
    pub fn open(&self, spec: &WindowSpec<'_>, now: SystemTime) {
        let now = self.now(now);
        let until = now
            .checked_add(spec.length)
            .or_else(|| now.checked_add(self.policy.max_window))
            .unwrap_or(now);
        let target = self.target(&spec.scope);
        self.update(target, now, |state| {
            window::block(state, until, spec.status, spec.errno)
        });
        if let Some(share) = &self.share {
            share.opened(&spec.scope, spec);
        }
    }

    /// Per-client and per-identity windows held now (for a gauge).
    pub fn scoped_windows(&self) -> usize {
        self.scoped.len()
    }

    /// Drops ended per-client and per-identity windows; run it periodically.
    pub fn sweep(&self, now: SystemTime) {
        self.scoped.sweep(self.now(now));
    }

    /// The time windows are judged by: the caller's clock in-process; with `[redis]`, this
    /// replica's monotonic clock, onto which deadlines set on Redis's clock are mapped.
    fn now(&self, now: SystemTime) -> SystemTime {
        match &self.share {
            None => now,
            Some(share) => share.now(),
        }
    }

    fn target(&self, scope: &Scope<'_>) -> Target {
        match (scope, &self.share) {
            (Scope::Upstream(index), _) => Target::Upstream(*index),
            (_, Some(share)) => Target::Scoped(share.scoped_key(scope)),
            (_, None) => Target::Scoped(self.scoped.key(scope)),
        }
    }

    fn ramp_for(&self, scope: &Scope<'_>) -> Option<&RampPolicy> {
        match scope {
            // One account's or client's traffic is too small to ramp against a base rate.
            Scope::Upstream(_) => self.policy.ramp.as_ref(),
            _ => None,
        }
    }

    /// Runs `f` on the scope's state if it has one; `None` without taking any lock otherwise.
    fn existing<R>(
        &self,
        scope: &Scope<'_>,
        now: SystemTime,
        f: impl FnOnce(&mut Option<Window>) -> R,
    ) -> Option<R> {
        match scope {
            Scope::Upstream(index) => self.existing_at(Target::Upstream(*index), now, f),
            _ if self.scoped.len() == 0 => None,
            _ => self.existing_at(self.target(scope), now, f),
        }
    }

    fn existing_at<R>(
        &self,
        target: Target,
        now: SystemTime,
        f: impl FnOnce(&mut Option<Window>) -> R,
    ) -> Option<R> {
        match target {
            Target::Upstream(index) => {
                let slots = self.upstreams.load();
                let slot = slots.get(index)?;
                if !slot.active.load(Ordering::Acquire) {
                    return None;
                }
                Some(slot.with(f))
            }
            _ if self.scoped.len() == 0 => None,
            Target::Scoped(key) => Some(self.scoped.with(key, now, f)),
        }
    }

    /// Like `existing`, creating the slot when needed.
    fn update<R: Default>(
        &self,
        target: Target,
        now: SystemTime,
        f: impl FnOnce(&mut Option<Window>) -> R,
    ) -> R {
        match target {
            Target::Upstream(index) => {
                if index >= MAX_UPSTREAMS {
                    tracing::warn!(upstream = index, "back-off window for unknown upstream");
                    return R::default();
                }
                if self.upstreams.load().len() <= index {
                    self.upstreams.rcu(|slots| {
                        let mut slots = Vec::clone(slots);
                        slots.resize_with(slots.len().max(index + 1), Arc::default);
                        slots
                    });
                }
                match self.upstreams.load().get(index) {
                    Some(slot) => slot.with(f),
                    None => R::default(),
                }
            }
            Target::Scoped(key) => self.scoped.with(key, now, f),
        }
    }
}

impl Gate for BackoffGate {
    fn check(&self, scope: Scope<'_>, now: SystemTime) -> Admission {
        let now = self.now(now);
        let ramp = self.ramp_for(&scope);
        self.existing(&scope, now, |state| {
            window::admit(state, now, &self.policy, ramp)
        })
        .unwrap_or(Admission::Allow)
    }

    fn release_probe(&self, scope: Scope<'_>, now: SystemTime) {
        let now = self.now(now);
        let held = self.existing(&scope, now, |state| {
            let held = window::probe_held(state, now);
            window::release_probe(state);
            held
        });
        if let (Some(share), Some(true)) = (&self.share, held) {
            share.released(&scope);
        }
    }

    fn record(&self, caller: &Caller<'_>, answer: &UpstreamAnswer, now: SystemTime) {
        let now = self.now(now);
        let spec = classify(answer, caller, &self.policy);
        if let Some(spec) = &spec {
            self.open(spec, now);
        }
        for scope in caller.scopes() {
            if spec.is_none_or(|spec| spec.scope != scope) {
                let ramp = self.ramp_for(&scope);
                let reopened = self.existing(&scope, now, |state| {
                    let was_blocked = matches!(state, Some(window::Window::Blocked { .. }));
                    window::succeed(state, now, ramp);
                    was_blocked && !matches!(state, Some(window::Window::Blocked { .. }))
                });
                if let (Some(share), Some(true)) = (&self.share, reopened) {
                    share.reopened(&scope, ramp.is_some());
                }
            }
        }
    }

    fn upstream_window(&self, upstream: usize, now: SystemTime) -> Option<WindowInfo> {
        let now = self.now(now);
        let ramp = self.ramp_for(&Scope::Upstream(upstream));
        self.existing(&Scope::Upstream(upstream), now, |state| {
            state.as_ref().and_then(|w| window::info(w, now, ramp))
        })
        .flatten()
    }
}

// === impl UpstreamSlot ===

impl UpstreamSlot {
    fn with<R>(&self, f: impl FnOnce(&mut Option<Window>) -> R) -> R {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let out = f(&mut state);
        self.active.store(state.is_some(), Ordering::Release);
        out
    }
}
