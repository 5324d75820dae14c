use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use governor::clock::FakeRelativeClock;

use super::*;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// 10 requests per minute: one every 6 s, bursts of 10.
fn ten_a_minute() -> Limit {
    Limit::new(10, SECS(60)).unwrap()
}

fn limiter(max_keys: usize) -> (KeyedLimiter<FakeRelativeClock>, FakeRelativeClock) {
    let clock = FakeRelativeClock::default();
    (
        KeyedLimiter::with_clock(ten_a_minute(), max_keys, clock.clone()),
        clock,
    )
}

fn peer(n: u32) -> RateKey {
    RateKey::peer(IpAddr::V4(Ipv4Addr::from(n)))
}

#[test]
fn limits_are_validated() {
    assert_eq!(Limit::new(0, SECS(60)), Err(LimitError::NoRequests));
    assert_eq!(
        Limit::new(5, Duration::from_millis(999)),
        Err(LimitError::WindowTooShort)
    );
    assert_eq!(
        Limit::new(u32::MAX, SECS(1)),
        Err(LimitError::WindowTooShort)
    );
    assert!(Limit::new(100, SECS(1)).is_ok());
}

#[test]
fn quota_admits_its_burst_then_reports_when_to_retry() {
    let (limiter, clock) = limiter(100);
    let key = RateKey::client("c0ffee");
    for left in (0..10).rev() {
        assert_eq!(limiter.check(&key).unwrap().remaining, left);
    }
    let denied = limiter.check(&key).unwrap_err();
    assert_eq!(
        (denied.wait, denied.secs(), denied.table_full),
        (SECS(6), 6, false)
    );
    clock.advance(Duration::from_millis(2_500));
    let denied = limiter.check(&key).unwrap_err();
    assert_eq!(
        (denied.wait, denied.secs()),
        (Duration::from_millis(3_500), 4)
    );
    clock.advance(Duration::from_millis(3_500));
    assert_eq!(limiter.check(&key).unwrap().remaining, 0);
}

#[test]
fn admitted_requests_report_remaining_and_reset() {
    let (limiter, _clock) = limiter(100);
    let first = limiter.check(&peer(1)).unwrap();
    assert_eq!(
        first,
        Allowed {
            remaining: 9,
            reset: SECS(6)
        }
    );
    let second = limiter.check(&peer(1)).unwrap();
    assert_eq!(
        second,
        Allowed {
            remaining: 8,
            reset: SECS(12)
        }
    );
}

#[test]
fn keys_have_separate_quotas() {
    let (limiter, _clock) = limiter(100);
    for _ in 0..10 {
        limiter.check(&peer(1)).unwrap();
    }
    assert!(limiter.check(&peer(1)).is_err());
    assert_eq!(limiter.check(&peer(2)).unwrap().remaining, 9);
}

#[test]
fn sub_second_waits_still_say_one_second() {
    let clock = FakeRelativeClock::default();
    let limiter = KeyedLimiter::with_clock(Limit::new(100, SECS(1)).unwrap(), 10, clock);
    let key = RateKey::client("c");
    for _ in 0..100 {
        limiter.check(&key).unwrap();
    }
    let denied = limiter.check(&key).unwrap_err();
    assert_eq!((denied.wait, denied.secs()), (Duration::from_millis(10), 1));
}

#[test]
fn a_flood_of_distinct_keys_stays_bounded() {
    let (limiter, clock) = limiter(10_000);
    let mut refused = 0;
    for n in 0..100_000 {
        match limiter.check(&peer(n)) {
            Ok(_) => {}
            Err(denied) => {
                assert!(denied.table_full);
                refused += 1;
            }
        }
        assert!(limiter.len() <= 10_000);
    }
    assert_eq!((limiter.len(), refused), (10_000, 90_000));
    // Keys already tracked keep their ordinary quota while the table is full.
    assert_eq!(limiter.check(&peer(0)).unwrap().remaining, 8);
    // Once they are stale (peer 0 used 2 × 6 s of quota, + one 6 s interval), housekeeping
    // frees everything.
    clock.advance(SECS(18));
    limiter.housekeeping();
    assert!(limiter.is_empty());
}

#[test]
fn a_full_table_sweeps_stale_keys_inline() {
    let (limiter, clock) = limiter(100);
    for n in 0..100 {
        limiter.check(&peer(n)).unwrap();
    }
    let denied = limiter.check(&peer(1_000)).unwrap_err();
    assert!(denied.table_full);
    assert_eq!(denied.secs(), 13);
    clock.advance(SECS(13));
    assert_eq!(limiter.check(&peer(1_000)).unwrap().remaining, 9);
    assert_eq!(limiter.len(), 1);
}

#[test]
fn secret_header_values_become_keyed_digests() {
    let hasher = SecretKeyHasher::new();
    let key = hasher.key(b"api-key-123");
    assert_eq!(key, hasher.key(b"api-key-123"));
    assert_ne!(key, hasher.key(b"api-key-124"));
    assert_ne!(key, SecretKeyHasher::new().key(b"api-key-123"));
    let shown = format!("{key:?} {hasher:?}");
    assert!(!shown.contains("api-key-123"), "{shown}");
}

#[test]
fn ipv6_peers_share_a_quota_per_64() {
    let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().unwrap();
    let b: Ipv6Addr = "2001:db8:1:2:bbbb::2".parse().unwrap();
    let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(RateKey::peer(a.into()), RateKey::peer(b.into()));
    assert_ne!(RateKey::peer(a.into()), RateKey::peer(c.into()));
    let mapped: Ipv6Addr = "::ffff:192.0.2.7".parse().unwrap();
    assert_eq!(
        RateKey::peer(mapped.into()),
        RateKey::peer(Ipv4Addr::new(192, 0, 2, 7).into())
    );
}

#[test]
fn global_cap_limits_all_traffic_together() {
    let clock = FakeRelativeClock::default();
    let cap = GlobalLimiter::with_clock(Limit::new(5, SECS(1)).unwrap(), clock.clone());
    for left in (0..5).rev() {
        assert_eq!(cap.check().unwrap().remaining, left);
    }
    let denied = cap.check().unwrap_err();
    assert_eq!(
        (denied.wait, denied.secs()),
        (Duration::from_millis(200), 1)
    );
    clock.advance(Duration::from_millis(200));
    assert!(cap.check().is_ok());
}

#[test]
fn ratelimit_headers_use_the_structured_field_form() {
    let limit = Limit::new(100, SECS(60)).unwrap();
    assert_eq!(policy_header("default", &limit), "\"default\";q=100;w=60");
    assert_eq!(ratelimit_header("default", 42, 10), "\"default\";r=42;t=10");
    let allowed = Allowed {
        remaining: 99,
        reset: Duration::from_millis(600),
    };
    assert_eq!(
        ratelimit_allowed("default", &allowed),
        "\"default\";r=99;t=1"
    );
    let denied = RetryAfter {
        wait: Duration::from_millis(3_500),
        table_full: false,
    };
    assert_eq!(
        ratelimit_denied("per-client", &denied),
        "\"per-client\";r=0;t=4"
    );
    assert_eq!(RATELIMIT_POLICY.as_str(), "ratelimit-policy");
}
