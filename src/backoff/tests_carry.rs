//! A reload's gate keeps the windows of upstreams that stayed, at their new index.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::StatusCode;

use super::*;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn answer(status: u16, errno: Option<u16>) -> UpstreamAnswer {
    UpstreamAnswer {
        status: StatusCode::from_u16(status).unwrap(),
        errno,
        retry_after: Some(Duration::from_secs(60)),
        backoff: None,
    }
}

fn denied(gate: &BackoffGate, scope: Scope<'_>) -> bool {
    matches!(gate.check(scope, now()), Admission::Deny(_))
}

#[test]
fn windows_follow_their_upstream_to_its_new_index_and_vanish_with_it() {
    let old = BackoffGate::new(BackoffPolicy::default());
    // Upstream 0: the whole upstream; upstream 1: one identity and one client; upstream 2 goes.
    old.record(
        &Caller {
            upstream: 0,
            client_id: None,
            identity: None,
        },
        &answer(503, None),
        now(),
    );
    let caller = Caller {
        upstream: 1,
        client_id: Some("c1"),
        identity: Some("uid:a"),
    };
    old.record(&caller, &answer(429, Some(114)), now());
    let client = Caller {
        upstream: 1,
        client_id: Some("c1"),
        identity: None,
    };
    old.record(&client, &answer(503, Some(202)), now());
    old.record(
        &Caller {
            upstream: 2,
            client_id: None,
            identity: None,
        },
        &answer(503, None),
        now(),
    );

    // 0 -> 1, 1 -> 0, 2 gone.
    let policy = BackoffPolicy {
        max_window: Duration::from_secs(100),
        ..BackoffPolicy::default()
    };
    let new = old.carry_over(policy.clone(), &[Some(1), Some(0), None]);
    assert_eq!(new.policy(), &policy);
    assert!(denied(&new, Scope::Upstream(1)));
    assert!(!denied(&new, Scope::Upstream(0)));
    assert!(!denied(&new, Scope::Upstream(2)));
    assert!(denied(
        &new,
        Scope::Identity {
            upstream: 0,
            identity: "uid:a"
        }
    ));
    assert!(!denied(
        &new,
        Scope::Identity {
            upstream: 1,
            identity: "uid:a"
        }
    ));
    assert!(denied(
        &new,
        Scope::Client {
            upstream: 0,
            client_id: "c1"
        }
    ));
    assert!(!denied(
        &new,
        Scope::Client {
            upstream: 0,
            client_id: "c2"
        }
    ));
    assert_eq!(new.scoped_windows(), 2);
    let info = new.upstream_window(1, now()).expect("window kept");
    assert_eq!(
        info.remaining,
        Duration::from_secs(60),
        "a kept window keeps its end"
    );
    // The old gate is untouched: requests still in flight on it see what they saw.
    assert!(denied(&old, Scope::Upstream(2)));
}
