use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;
use proptest::prelude::*;

use super::*;
use crate::clock::{Clock, ManualClock};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn start() -> SystemTime {
    UNIX_EPOCH + SECS(1_700_000_000)
}

fn answer(status: u16, errno: Option<u16>, retry_after: Option<u64>) -> UpstreamAnswer {
    UpstreamAnswer {
        status: StatusCode::from_u16(status).unwrap(),
        errno,
        retry_after: retry_after.map(SECS),
        backoff: None,
    }
}

fn caller(upstream: usize) -> Caller<'static> {
    Caller {
        upstream,
        client_id: None,
        identity: None,
    }
}

fn deny(status: u16, errno: u16, secs: u64) -> Admission {
    Admission::Deny(Denial {
        status: StatusCode::from_u16(status).unwrap(),
        errno,
        retry_after_secs: secs,
    })
}

/// A gate whose upstream 0 had a 503 `Retry-After: 30` at `clock`'s start.
fn backed_off(policy: BackoffPolicy) -> (BackoffGate, Arc<ManualClock>) {
    let clock = ManualClock::new(start());
    let gate = BackoffGate::new(policy);
    gate.record(&caller(0), &answer(503, Some(201), Some(30)), clock.now());
    (gate, clock)
}

/// Runs `checks` checks of `scope` from `threads` threads at once; counts each admission kind.
fn hammer(gate: &Arc<BackoffGate>, now: SystemTime, threads: usize, checks: usize) -> [usize; 3] {
    let counts = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (gate, counts, barrier) = (gate.clone(), counts.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..checks {
                    let i = match gate.check(Scope::Upstream(0), now) {
                        Admission::Allow => 0,
                        Admission::Probe => 1,
                        Admission::Deny(_) => 2,
                    };
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    counts.each_ref().map(|c| c.load(Ordering::Relaxed))
}

// --- Retry-After parsing ---

#[test]
fn delta_seconds_header_is_read() {
    assert_eq!(
        parse_retry_after(Some(b"30"), None, start()),
        Some(SECS(30))
    );
    assert_eq!(
        parse_retry_after(Some(b" \t30 "), Some(5.0), start()),
        Some(SECS(30))
    );
}

#[test]
fn http_date_header_is_measured_from_now() {
    let date = httpdate::fmt_http_date(start() + SECS(45));
    assert_eq!(
        parse_retry_after(Some(date.as_bytes()), None, start()),
        Some(SECS(45))
    );
    let past = httpdate::fmt_http_date(start() - SECS(45));
    assert_eq!(
        parse_retry_after(Some(past.as_bytes()), Some(9.0), start()),
        None
    );
}

#[test]
fn body_retry_after_is_used_without_a_usable_header() {
    assert_eq!(parse_retry_after(None, Some(30.0), start()), Some(SECS(30)));
    assert_eq!(
        parse_retry_after(Some(b"soon"), Some(30.0), start()),
        Some(SECS(30))
    );
    assert_eq!(
        parse_retry_after(None, Some(0.5), start()),
        Some(Duration::from_millis(500))
    );
}

#[test]
fn zero_means_no_window() {
    assert_eq!(parse_retry_after(Some(b"0"), Some(30.0), start()), None);
    assert_eq!(parse_retry_after(None, Some(0.0), start()), None);
    assert_eq!(parse_retry_after(None, None, start()), None);
}

#[test]
fn negative_and_garbage_values_are_ignored() {
    for header in [
        &b"-5"[..],
        b"",
        b"  ",
        b"1.5",
        b"+3",
        b"thirty",
        b"\xff\xfe",
    ] {
        assert_eq!(
            parse_retry_after(Some(header), None, start()),
            None,
            "{header:?}"
        );
    }
    for body in [-3.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(parse_retry_after(None, Some(body), start()), None, "{body}");
    }
}

#[test]
fn huge_values_saturate_and_clamp() {
    let huge = parse_retry_after(Some(b"99999999999999999999999"), None, start()).unwrap();
    assert_eq!(huge, SECS(u64::MAX));
    assert_eq!(clamp_retry_after(huge, DEFAULT_MAX_RETRY_AFTER), SECS(300));
    let body = parse_retry_after(None, Some(1e300), start()).unwrap();
    assert_eq!(clamp_retry_after(body, DEFAULT_MAX_RETRY_AFTER), SECS(300));
    let far = parse_retry_after(Some(b"Fri, 31 Dec 9999 23:59:59 GMT"), None, start()).unwrap();
    assert_eq!(clamp_retry_after(far, DEFAULT_MAX_RETRY_AFTER), SECS(300));
}

#[test]
fn whole_seconds_round_up_and_never_say_zero() {
    assert_eq!(whole_seconds_up(Duration::from_millis(29_200)), 30);
    assert_eq!(whole_seconds_up(SECS(30)), 30);
    assert_eq!(whole_seconds_up(Duration::from_nanos(1)), 1);
    assert_eq!(whole_seconds_up(Duration::ZERO), 1);
}

proptest! {
    #[test]
    fn retry_after_parser_never_panics(
        header in prop::option::of(prop::collection::vec(any::<u8>(), 0..64)),
        body in prop::option::of(any::<f64>()),
        offset in any::<u32>(),
    ) {
        let now = UNIX_EPOCH + SECS(u64::from(offset));
        if let Some(wait) = parse_retry_after(header.as_deref(), body, now) {
            prop_assert!(!wait.is_zero());
            prop_assert!(clamp_retry_after(wait, DEFAULT_MAX_RETRY_AFTER) <= SECS(300));
        }
    }

    #[test]
    fn digit_headers_read_as_seconds(secs in 1u64..1_000_000) {
        let header = secs.to_string();
        prop_assert_eq!(parse_retry_after(Some(header.as_bytes()), None, start()), Some(SECS(secs)));
    }
}

// --- Which answers open which window ---

#[test]
fn answers_open_windows_in_the_scope_the_issue_names() {
    let policy = BackoffPolicy::default();
    let who = Caller {
        upstream: 2,
        client_id: Some("c0ffee"),
        identity: Some("uid:a"),
    };
    let spec =
        |a: UpstreamAnswer| classify(&a, &who, &policy).map(|s| (s.scope, s.status, s.errno));
    let s503 = StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        spec(answer(503, Some(201), Some(30))),
        Some((Scope::Upstream(2), s503, 201))
    );
    assert_eq!(
        spec(answer(503, None, Some(30))),
        Some((Scope::Upstream(2), s503, 201))
    );
    let client = Scope::Client {
        upstream: 2,
        client_id: "c0ffee",
    };
    assert_eq!(
        spec(answer(503, Some(202), Some(30))),
        Some((client, s503, 202))
    );
    assert_eq!(
        spec(answer(503, Some(204), Some(30))),
        Some((client, s503, 204))
    );
    let identity = Scope::Identity {
        upstream: 2,
        identity: "uid:a",
    };
    let s429 = StatusCode::TOO_MANY_REQUESTS;
    assert_eq!(
        spec(answer(429, Some(114), Some(5))),
        Some((identity, s429, 114))
    );
    assert_eq!(
        spec(answer(429, None, Some(5))),
        Some((identity, s429, 114))
    );
    assert_eq!(
        spec(answer(500, Some(999), Some(5))),
        Some((Scope::Upstream(2), s503, 201))
    );
    for quiet in [
        answer(500, None, None),
        answer(429, Some(114), None),
        answer(200, None, Some(5)),
    ] {
        assert_eq!(spec(quiet), None);
    }
}

#[test]
fn unknown_caller_widens_to_the_upstream() {
    let policy = BackoffPolicy::default();
    let s = classify(&answer(429, Some(114), Some(5)), &caller(1), &policy).unwrap();
    assert_eq!(
        (s.scope, s.status.as_u16(), s.errno),
        (Scope::Upstream(1), 429, 114)
    );
    let s = classify(&answer(503, Some(202), Some(5)), &caller(1), &policy).unwrap();
    assert_eq!((s.scope, s.errno), (Scope::Upstream(1), 202));
}

#[test]
fn windows_are_clamped_to_the_maximum() {
    let policy = BackoffPolicy::default();
    let s = classify(&answer(503, None, Some(10_000)), &caller(0), &policy).unwrap();
    assert_eq!(s.length, SECS(300));
}

#[test]
fn backoff_header_opens_a_window_only_when_enabled() {
    let mut answer = answer(200, None, None);
    answer.backoff = Some(SECS(60));
    assert_eq!(
        classify(&answer, &caller(0), &BackoffPolicy::default()),
        None
    );
    let policy = BackoffPolicy {
        honour_backoff_header: true,
        ..Default::default()
    };
    let s = classify(&answer, &caller(0), &policy).unwrap();
    assert_eq!(
        (s.scope, s.length, s.errno),
        (Scope::Upstream(0), SECS(60), 201)
    );
}

// --- The gate ---

#[test]
fn backed_off_upstream_counts_down_in_whole_seconds_rounded_up() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 30)
    );
    clock.advance(Duration::from_millis(800)); // 29.2 s left
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 30)
    );
    clock.advance(Duration::from_millis(200)); // 29 s left
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 29)
    );
    clock.advance(Duration::from_millis(28_500)); // 0.5 s left
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 1)
    );
    assert_eq!(
        gate.check(Scope::Upstream(1), clock.now()),
        Admission::Allow
    );
}

#[test]
fn thousand_concurrent_requests_in_a_window_are_all_answered_locally() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(SECS(10));
    let [allow, probe, denied] = hammer(&Arc::new(gate), clock.now(), 50, 20);
    assert_eq!((allow, probe, denied), (0, 0, 1000));
}

#[test]
fn window_end_lets_exactly_one_probe_through() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(SECS(30));
    let gate = Arc::new(gate);
    let [allow, probe, denied] = hammer(&gate, clock.now(), 64, 50);
    assert_eq!((allow, probe, denied), (0, 1, 3199));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 1)
    );
    let info = gate.upstream_window(0, clock.now()).unwrap();
    assert!(info.half_open && info.probe_in_flight);
}

#[test]
fn successful_probe_ramps_traffic_up_step_by_step() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(SECS(30));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
    gate.record(&caller(0), &answer(200, None, None), clock.now());
    let gate = Arc::new(gate);
    // Default ramp: 100/s base, 25 → 50 → 75 → 100 %, 5 s per step, then everything.
    for (step, admitted) in [25, 50, 75, 100].into_iter().enumerate() {
        let at = clock.now() + SECS(5 * step as u64);
        assert_eq!(
            hammer(&gate, at, 10, 100),
            [admitted, 0, 1000 - admitted],
            "step {step}"
        );
        let next_second = at + SECS(1);
        assert_eq!(
            hammer(&gate, next_second, 10, 100)[0],
            admitted,
            "step {step}, 2nd second"
        );
        assert_eq!(
            gate.check(Scope::Upstream(0), next_second),
            deny(503, 201, 1)
        );
        let info = gate.upstream_window(0, at).unwrap();
        assert_eq!(info.ramp_percent, Some(admitted as u8));
    }
    let after = clock.now() + SECS(20);
    assert_eq!(hammer(&gate, after, 10, 100), [1000, 0, 0]);
    assert_eq!(gate.upstream_window(0, after), None);
}

#[test]
fn ramp_off_reopens_at_once() {
    let (gate, clock) = backed_off(BackoffPolicy {
        ramp: None,
        ..Default::default()
    });
    clock.advance(SECS(30));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
    gate.record(&caller(0), &answer(404, Some(999), None), clock.now());
    assert_eq!(hammer(&Arc::new(gate), clock.now(), 4, 100), [400, 0, 0]);
}

#[test]
fn failed_probe_reopens_from_its_own_retry_after() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(SECS(31));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
    gate.record(&caller(0), &answer(503, Some(201), Some(10)), clock.now());
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 10)
    );
    clock.advance(SECS(10));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
}

#[test]
fn expired_probe_lease_lets_another_caller_probe() {
    let policy = BackoffPolicy {
        probe_lease: SECS(15),
        ..Default::default()
    };
    let (gate, clock) = backed_off(policy);
    clock.advance(SECS(30));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
    clock.advance(Duration::from_millis(14_999));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 1)
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 1)
    );
}

#[test]
fn released_probe_lets_the_next_caller_probe_at_once() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(SECS(30));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
    gate.release_probe(Scope::Upstream(0), clock.now());
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        Admission::Probe
    );
}

#[test]
fn windows_are_extended_but_never_shortened() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    gate.record(&caller(0), &answer(503, Some(201), Some(5)), clock.now());
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 30)
    );
    gate.record(&caller(0), &answer(429, Some(114), Some(60)), clock.now());
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(429, 114, 60)
    );
}

#[test]
fn success_from_a_straggler_does_not_close_an_open_window() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(SECS(1));
    gate.record(&caller(0), &answer(200, None, None), clock.now());
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 29)
    );
}

#[test]
fn identity_429_leaves_other_identities_and_the_upstream_alone() {
    let gate = BackoffGate::new(BackoffPolicy::default());
    let now = start();
    let a = Caller {
        upstream: 0,
        client_id: Some("c1"),
        identity: Some("uid:a"),
    };
    gate.record(&a, &answer(429, Some(114), Some(20)), now);
    let identity = |id| Scope::Identity {
        upstream: 0,
        identity: id,
    };
    assert_eq!(gate.check(identity("uid:a"), now), deny(429, 114, 20));
    assert_eq!(gate.check(identity("uid:b"), now), Admission::Allow);
    assert_eq!(
        gate.check(
            Scope::Identity {
                upstream: 1,
                identity: "uid:a"
            },
            now
        ),
        Admission::Allow
    );
    assert_eq!(gate.check(Scope::Upstream(0), now), Admission::Allow);
    assert_eq!(
        gate.check(
            Scope::Client {
                upstream: 0,
                client_id: "c1"
            },
            now
        ),
        Admission::Allow
    );
    assert_eq!(gate.upstream_window(0, now), None);
}

#[test]
fn disabled_client_closes_only_that_client() {
    let gate = BackoffGate::new(BackoffPolicy::default());
    let now = start();
    let c1 = Caller {
        upstream: 0,
        client_id: Some("c1"),
        identity: Some("uid:a"),
    };
    gate.record(&c1, &answer(503, Some(202), Some(30)), now);
    let client = |id| Scope::Client {
        upstream: 0,
        client_id: id,
    };
    assert_eq!(gate.check(client("c1"), now), deny(503, 202, 30));
    assert_eq!(gate.check(client("c2"), now), Admission::Allow);
    assert_eq!(gate.check(Scope::Upstream(0), now), Admission::Allow);
    assert_eq!(
        gate.check(
            Scope::Identity {
                upstream: 0,
                identity: "uid:a"
            },
            now
        ),
        Admission::Allow
    );
}

#[test]
fn server_error_with_retry_after_opens_an_upstream_window() {
    let gate = BackoffGate::new(BackoffPolicy::default());
    gate.record(&caller(0), &answer(500, None, Some(12)), start());
    assert_eq!(gate.check(Scope::Upstream(0), start()), deny(503, 201, 12));
    gate.record(&caller(1), &answer(500, None, None), start());
    assert_eq!(gate.check(Scope::Upstream(1), start()), Admission::Allow);
}

#[test]
fn bare_503_opens_nothing_unless_a_default_window_is_configured() {
    let gate = BackoffGate::new(BackoffPolicy::default());
    gate.record(&caller(0), &answer(503, None, None), start());
    assert_eq!(gate.check(Scope::Upstream(0), start()), Admission::Allow);
    let policy = BackoffPolicy {
        default_503_window: Some(SECS(7)),
        ..Default::default()
    };
    let gate = BackoffGate::new(policy);
    gate.record(&caller(0), &answer(503, None, None), start());
    assert_eq!(gate.check(Scope::Upstream(0), start()), deny(503, 201, 7));
}

#[test]
fn upstream_window_reports_remaining_time_and_phase() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.advance(Duration::from_millis(500));
    let info = gate.upstream_window(0, clock.now()).unwrap();
    assert_eq!(info.remaining, Duration::from_millis(29_500));
    assert_eq!((info.status.as_u16(), info.errno), (503, 201));
    assert!(!info.half_open && !info.probe_in_flight && info.ramp_percent.is_none());
    clock.advance(SECS(30));
    let info = gate.upstream_window(0, clock.now()).unwrap();
    assert!(info.half_open && !info.probe_in_flight);
    assert_eq!(gate.upstream_window(7, clock.now()), None);
}

#[test]
fn clock_stepping_back_never_yields_more_than_the_maximum() {
    let (gate, clock) = backed_off(BackoffPolicy::default());
    clock.set(start() - SECS(3600));
    assert_eq!(
        gate.check(Scope::Upstream(0), clock.now()),
        deny(503, 201, 300)
    );
}

#[test]
fn a_flood_of_identities_stays_bounded() {
    let policy = BackoffPolicy {
        max_scoped_windows: 1_000,
        ..Default::default()
    };
    let gate = BackoffGate::new(policy);
    let now = start();
    for i in 0..100_000u32 {
        let id = format!("uid:{i}");
        let who = Caller {
            upstream: 0,
            client_id: None,
            identity: Some(&id),
        };
        gate.record(
            &who,
            &answer(429, Some(114), Some(60)),
            now + Duration::from_millis(i.into()),
        );
        assert!(
            gate.scoped_windows() <= 1_008,
            "after {i}: {}",
            gate.scoped_windows()
        );
    }
    let newest = Scope::Identity {
        upstream: 0,
        identity: "uid:99999",
    };
    assert_eq!(gate.check(newest, now + SECS(100)), deny(429, 114, 60));
    gate.sweep(now + SECS(500));
    assert_eq!(gate.scoped_windows(), 0);
    assert_eq!(gate.check(newest, now + SECS(500)), Admission::Allow);
}

#[test]
fn ramp_steps_rise_linearly_to_the_base_rate() {
    let ramp = RampPolicy::default();
    let rates: Vec<_> = [0, 4_999, 5_000, 10_000, 15_000, 19_999, 20_000]
        .map(|ms| ramp.rate_at(Duration::from_millis(ms)))
        .to_vec();
    assert_eq!(
        rates,
        [
            Some(25),
            Some(25),
            Some(50),
            Some(75),
            Some(100),
            Some(100),
            None
        ]
    );
    let tiny = RampPolicy {
        base_rate_per_sec: 1,
        steps: 1,
        ..RampPolicy::default()
    };
    assert_eq!(tiny.rate_at(Duration::ZERO), Some(1));
}
