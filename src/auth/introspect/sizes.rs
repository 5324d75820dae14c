//! What one cached token costs in memory, by type size (issue 19: 100,000 cached tokens).
//! `benches/bearer.sh` measures the whole; this shows the gateway's own part of it: the moka
//! key and value of every token, and what tokens with the same description share (the answer
//! less its times, and its strings). The rest is moka's per-entry bookkeeping (the key's `Arc`,
//! the hash-table bucket, the entry info with its timestamps, the value entry, the access-order
//! and timer-wheel nodes; see benches/README.md, "Bearer routes").
//!
//! `cargo nextest run --lib introspect::sizes --no-capture` prints the figures; the test fails
//! when the gateway's own part of an entry grows past the budget.

use std::sync::Arc;
use std::time::SystemTime;

use super::TokenInfo;
use super::answer::parse_answer;
use super::cache::{CacheKey, Cached};

/// The answer of `benches/bearer.sh`'s fake FxA OAuth server (as FxA answers).
const ANSWER: &[u8] = br#"{"active":true,"scope":"profile","sub":"0123456789abcdef0123456789abcdef","client_id":"abcdef0123456789","token_type":"access_token","exp":4102444800000,"iat":1700000000000}"#;

/// The gateway's own bytes in every cached token's moka entry (key and value); the answer's
/// description and strings are shared by every token with the same one.
const ENTRY_BUDGET: usize = 64;

/// What mimalloc (the binary's allocator) hands out for `n` bytes: 8-byte steps up to 64, then
/// four size classes per doubling.
fn malloc_size(n: usize) -> usize {
    if n <= 64 {
        n.div_ceil(8) * 8
    } else {
        let step = n.next_power_of_two() / 8;
        n.div_ceil(step) * step
    }
}

#[test]
fn cached_token_stays_within_budget() {
    let info = parse_answer(ANSWER).expect("answer");
    let strings: usize = [
        info.sub.as_deref().map_or(0, str::len),
        info.client_id.as_deref().map_or(0, str::len),
        info.scope.len(),
        info.token_type.as_deref().map_or(0, str::len),
    ]
    .into_iter()
    .map(|len| malloc_size(2 * std::mem::size_of::<usize>() + len))
    .sum();
    // Arc<TokenInfo>: two counters, then the value.
    let about = malloc_size(2 * std::mem::size_of::<usize>() + std::mem::size_of::<TokenInfo>());
    let key = std::mem::size_of::<CacheKey>();
    let value = std::mem::size_of::<Cached>();
    let own = key + value;
    let cached = Cached::new(Some(Arc::new(info)), SystemTime::now(), &Default::default());
    let _keep: Arc<TokenInfo> = cached.serve(SystemTime::now()).expect("active");
    for (name, bytes) in [
        ("CacheKey (HMAC-SHA256 of the token, 128 bits)", key),
        ("Cached (moka's value)", value),
        ("the gateway's own bytes per cached token", own),
        ("shared: Arc<TokenInfo> without exp/iat (malloc)", about),
        (
            "shared: its strings sub, client_id, scope, token_type",
            strings,
        ),
    ] {
        println!("{name:<58} {bytes:>5} bytes");
    }
    assert!(
        own <= ENTRY_BUDGET,
        "a cached token takes {own} bytes of the gateway's own, over the {ENTRY_BUDGET}-byte budget"
    );
}
