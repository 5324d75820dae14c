//! Back-off windows shared by the fleet (`[redis]`). Every request is still decided in memory:
//! a window a replica opens is applied here at once and published (one script call, off the
//! request path); the other replicas receive it by pub/sub and apply it with the same deadline
//! (set on Redis's clock, mapped onto their own monotonic clock). Only the rare moments where
//! the fleet must agree ask Redis on the request path: taking the one probe lease when a
//! window ends, and counting the ramp after it against the fleet's rate.
//!
//! Table entries and messages are `origin field event at status errno`, where `field` is
//! `u:<upstream name>` or `s:<keyed hash>` (a client or identity window: ids never reach
//! Redis), `event` is `block`, `ramp`, `close` or `release`, and `at` is Redis's clock in ms
//! (the window's end, or the ramp's start).
//!
//! Redis down: the gate keeps working on this replica's own windows (it stops learning the
//! others'); a half-open window probes from this replica; the ramp counts only here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Admission, BackoffGate, BackoffPolicy, Gate as _, Scope, Target, WindowSpec, window};
use crate::shared::{Store, TableListener};

pub(super) struct Share {
    store: Arc<Store>,
    /// Upstream names by config index: fields name upstreams, indexes may differ by replica.
    names: Vec<String>,
}

// === impl Share ===

impl Share {
    pub(super) fn now(&self) -> SystemTime {
        self.store.now()
    }

    /// The same key on every replica for a client or identity scope.
    pub(super) fn scoped_key(&self, scope: &Scope<'_>) -> super::scoped::Key {
        let (kind, upstream, id) = match scope {
            Scope::Upstream(i) => ("u", *i, ""),
            Scope::Client {
                upstream,
                client_id,
            } => ("c", *upstream, *client_id),
            Scope::Identity { upstream, identity } => ("i", *upstream, *identity),
        };
        let name = self.names.get(upstream).map_or("", String::as_str);
        let digest = self
            .store
            .hash_u64("backoff-scope", format!("{kind}\0{name}\0{id}").as_bytes());
        (super::scoped::SHARED, digest)
    }

    fn field(&self, scope: &Scope<'_>) -> Option<String> {
        match scope {
            Scope::Upstream(i) => Some(format!("u:{}", self.names.get(*i)?)),
            _ => Some(format!("s:{:016x}", self.scoped_key(scope).1)),
        }
    }

    fn target_of(&self, field: &str) -> Option<Target> {
        if let Some(name) = field.strip_prefix("u:") {
            return self
                .names
                .iter()
                .position(|n| n == name)
                .map(Target::Upstream);
        }
        let hex = field.strip_prefix("s:")?;
        u64::from_str_radix(hex, 16)
            .ok()
            .map(|digest| Target::Scoped((super::scoped::SHARED, digest)))
    }

    pub(super) fn opened(&self, scope: &Scope<'_>, spec: &WindowSpec<'_>) {
        let length_ms = u64::try_from(spec.length.as_millis()).unwrap_or(u64::MAX);
        self.publish(scope, "block", length_ms, spec.status.as_u16(), spec.errno);
    }

    /// A probe from this replica succeeded: the fleet ramps up (or reopens at once).
    pub(super) fn reopened(&self, scope: &Scope<'_>, ramps: bool) {
        let event = if ramps { "ramp" } else { "close" };
        self.publish(scope, event, 0, 0, 0);
    }

    /// This replica's probe will not report: the next replica may probe now.
    pub(super) fn released(&self, scope: &Scope<'_>) {
        self.publish(scope, "release", 0, 0, 0);
    }

    fn publish(
        &self,
        scope: &Scope<'_>,
        event: &'static str,
        length_ms: u64,
        status: u16,
        errno: u16,
    ) {
        let (Some(field), Ok(runtime)) = (self.field(scope), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            store
                .window_event(&field, event, length_ms, status, errno)
                .await
        });
    }
}

// === impl BackoffGate: shared ===

impl BackoffGate {
    /// A gate whose windows the fleet shares through `store`. `upstream_names` in config order.
    pub fn shared(
        policy: BackoffPolicy,
        store: Arc<Store>,
        upstream_names: Vec<String>,
    ) -> Arc<Self> {
        let mut gate = BackoffGate::new(policy);
        gate.share = Some(Share {
            store: store.clone(),
            names: upstream_names,
        });
        let gate = Arc::new(gate);
        let listener: Arc<dyn TableListener> = gate.clone();
        store.set_table_listener(Arc::downgrade(&listener));
        gate
    }

    /// The shared store, when there is one.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.share.as_ref().map(|s| &s.store)
    }

    /// [`Gate::check`], and with `[redis]` the fleet's part: one probe lease for the whole
    /// fleet, and the ramp counted against the fleet's rate. Without Redis (or while it is
    /// down) this is `check`.
    pub async fn admit(&self, scope: Scope<'_>, now: SystemTime) -> Admission {
        let decision = self.check(scope, now);
        let Some(share) = &self.share else {
            return decision;
        };
        match decision {
            Admission::Probe => self.claim_probe(share, scope).await,
            Admission::Allow => match scope {
                Scope::Upstream(index) => self.take_ramp(share, index).await,
                _ => Admission::Allow,
            },
            deny => deny,
        }
    }

    async fn claim_probe(&self, share: &Share, scope: Scope<'_>) -> Admission {
        let Some(field) = share.field(&scope) else {
            return Admission::Probe;
        };
        let lease_ms = u64::try_from(self.policy.probe_lease.as_millis()).unwrap_or(u64::MAX);
        match share.store.claim_probe(&field, lease_ms).await {
            // Ours, or Redis is down (this replica probes for itself).
            Some(None) | None => Admission::Probe,
            Some(Some(ttl_ms)) => {
                let now = share.now();
                let until = now + Duration::from_millis(ttl_ms);
                let target = self.target(&scope);
                self.update(target, now, |state| window::lease_elsewhere(state, until))
                    .map_or(Admission::Allow, Admission::Deny)
            }
        }
    }

    async fn take_ramp(&self, share: &Share, index: usize) -> Admission {
        let now = share.now();
        let ramp = self.policy.ramp.as_ref();
        let Some((second, rate)) = self
            .existing_at(Target::Upstream(index), now, |state| {
                window::ramp_slot(state, now, ramp)
            })
            .flatten()
        else {
            return Admission::Allow;
        };
        let Some(field) = share.field(&Scope::Upstream(index)) else {
            return Admission::Allow;
        };
        match share.store.ramp_take(&field, second, rate).await {
            Some(false) => Admission::Deny(super::Denial {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                errno: window::RAMP_ERRNO,
                retry_after_secs: 1,
            }),
            // Fits, or Redis is down (the local count already applied).
            _ => Admission::Allow,
        }
    }
}

impl TableListener for BackoffGate {
    fn apply(&self, entry: &str, redis_now_ms: u64) {
        let Some(share) = &self.share else { return };
        let mut parts = entry.split(' ');
        let (Some(_origin), Some(field), Some(event), Some(at)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return;
        };
        let status = parts.next().and_then(|s| s.parse::<u16>().ok());
        let errno = parts.next().and_then(|s| s.parse::<u16>().ok());
        let (Some(target), Ok(at)) = (share.target_of(field), at.parse::<u64>()) else {
            return;
        };
        let now = share.now();
        // The deadline on Redis's clock, as a point on this replica's clock.
        let local_at = if at >= redis_now_ms {
            now + Duration::from_millis(at - redis_now_ms)
        } else {
            now.checked_sub(Duration::from_millis(redis_now_ms - at))
                .unwrap_or(now)
        };
        let ramps = matches!(target, Target::Upstream(_)) && self.policy.ramp.is_some();
        match event {
            "block" => {
                let (Some(status), Some(errno)) = (
                    status.and_then(|s| http::StatusCode::from_u16(s).ok()),
                    errno,
                ) else {
                    return;
                };
                self.update(target, now, |state| {
                    window::block(state, local_at, status, errno)
                });
            }
            "ramp" if ramps => {
                self.update(target, now, |state| {
                    window::start_ramp(state, local_at, now)
                });
            }
            "ramp" | "close" => {
                self.existing_at(target, now, |state| *state = None);
            }
            "release" => {
                self.existing_at(target, now, window::release_probe);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::{Denial, RampPolicy};
    use crate::config::{OnRedisDown, RedisSettings, Secret};
    use http::StatusCode;

    fn store() -> Arc<Store> {
        Store::new(&RedisSettings {
            host: "127.0.0.1".into(),
            port: 1,
            db: 0,
            tls: false,
            ca_pem: None,
            username: None,
            password: None,
            key_prefix: "t:".into(),
            connect_timeout: Duration::from_millis(50),
            command_timeout: Duration::from_millis(50),
            health_interval: Duration::from_secs(1),
            hashing_key: Secret::new(vec![1; 32]),
            encryption_key: Secret::new(vec![2; 32]),
            on_down: OnRedisDown::default(),
        })
        .unwrap()
    }

    fn gate(store: &Arc<Store>) -> Arc<BackoffGate> {
        let policy = BackoffPolicy {
            ramp: Some(RampPolicy {
                period: Duration::from_secs(4),
                steps: 1,
                start_percent: 50,
                base_rate_per_sec: 4,
            }),
            ..BackoffPolicy::default()
        };
        BackoffGate::shared(policy, store.clone(), vec!["api".into(), "oauth".into()])
    }

    #[tokio::test]
    async fn a_published_window_holds_here_with_the_deadline_set_on_redis_clock() {
        let store = store();
        let gate = gate(&store);
        // Redis's clock is far from ours: only "2 s left" matters.
        let redis_now = 1_000_000;
        gate.apply(
            &format!("other u:oauth block {} 503 202", redis_now + 2_000),
            redis_now,
        );
        let any_time = SystemTime::UNIX_EPOCH;
        assert_eq!(
            gate.check(Scope::Upstream(1), any_time),
            Admission::Deny(Denial {
                status: StatusCode::SERVICE_UNAVAILABLE,
                errno: 202,
                retry_after_secs: 2,
            })
        );
        assert_eq!(gate.check(Scope::Upstream(0), any_time), Admission::Allow);
        // The probe's replica reopened it: ramping here too, then closed.
        gate.apply(&format!("other u:oauth ramp {redis_now} 0 0"), redis_now);
        let info = gate.upstream_window(1, any_time).unwrap();
        assert_eq!(info.ramp_percent, Some(50));
        gate.apply(&format!("other u:oauth close {redis_now} 0 0"), redis_now);
        assert_eq!(gate.upstream_window(1, any_time), None);
    }

    #[tokio::test]
    async fn scoped_windows_are_filed_under_the_same_keyed_hash_on_every_replica() {
        let (a, b) = (store(), store());
        let (gate_a, gate_b) = (gate(&a), gate(&b));
        let scope = Scope::Identity {
            upstream: 0,
            identity: "uid:0123",
        };
        let field = gate_a.share.as_ref().unwrap().field(&scope).unwrap();
        assert_eq!(
            Some(field.clone()),
            gate_b.share.as_ref().unwrap().field(&scope)
        );
        assert!(!field.contains("0123"), "{field}");
        gate_b.apply(&format!("other {field} block 5000 429 114"), 0);
        assert!(matches!(
            gate_b.check(scope, SystemTime::UNIX_EPOCH),
            Admission::Deny(Denial { errno: 114, .. })
        ));
        let other = Scope::Identity {
            upstream: 0,
            identity: "uid:4567",
        };
        assert_eq!(
            gate_b.check(other, SystemTime::UNIX_EPOCH),
            Admission::Allow
        );
    }

    #[tokio::test]
    async fn garbage_entries_change_nothing() {
        let store = store();
        let gate = gate(&store);
        for entry in [
            "",
            "x",
            "x u:nope block 99999 503 201",
            "x u:api block soon 503 201",
            "x u:api block 99999 999999 201",
            "x s:zz block 99999 503 201",
            "x u:api explode 99999 503 201",
        ] {
            gate.apply(entry, 0);
        }
        assert_eq!(
            gate.check(Scope::Upstream(0), SystemTime::UNIX_EPOCH),
            Admission::Allow
        );
        assert_eq!(gate.scoped_windows(), 0);
    }
}
