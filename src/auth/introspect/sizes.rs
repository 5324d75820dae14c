//! What one cached token costs in memory, by type size (issue 19: 100,000 cached tokens).
//! `benches/bearer.sh` measures the whole (about 600 bytes per token); this shows the gateway's
//! own part of it: the moka key and value, and the token's info behind its `Arc` with the
//! strings of a typical FxA answer. The rest is moka's per-entry bookkeeping (the key's `Arc`,
//! the hash-table bucket, the entry info with its timestamps, the access-order, write-order
//! and timer-wheel nodes).
//!
//! `cargo nextest run --lib introspect::sizes --no-capture` prints the figures; the test fails
//! when the gateway's own part of an entry grows past the budget.

use std::sync::Arc;

use super::TokenInfo;
use super::answer::parse_answer;
use super::cache::{CacheKey, Cached};

/// The answer of `benches/bearer.sh`'s fake FxA OAuth server (as FxA answers).
const ANSWER: &[u8] = br#"{"active":true,"scope":"profile","sub":"0123456789abcdef0123456789abcdef","client_id":"abcdef0123456789","token_type":"access_token","exp":4102444800000,"iat":1700000000000}"#;

/// The gateway's own bytes per cached token (key, value, the info's allocation and its
/// strings), measured at about 400; a jump past the budget is a regression.
const ENTRY_BUDGET: usize = 512;

/// What malloc hands out for `n` bytes on 64-bit glibc: 8 bytes of header, 16-byte steps,
/// 32 at least.
fn malloc_size(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    ((n + 8).div_ceil(16) * 16).max(32)
}

#[test]
fn cached_token_stays_within_budget() {
    let info = parse_answer(ANSWER).expect("answer");
    let strings: usize = [
        info.sub.as_ref().map_or(0, String::capacity),
        info.client_id.as_ref().map_or(0, String::capacity),
        info.scope.capacity(),
        info.token_type.as_ref().map_or(0, String::capacity),
    ]
    .into_iter()
    .map(malloc_size)
    .sum();
    // Arc<TokenInfo>: two counters, then the value.
    let info_alloc =
        malloc_size(2 * std::mem::size_of::<usize>() + std::mem::size_of::<TokenInfo>());
    let key = std::mem::size_of::<CacheKey>();
    let value = std::mem::size_of::<Cached>();
    let own = key + value + info_alloc + strings;
    let _keep: Arc<TokenInfo> = Arc::new(info);
    for (name, bytes) in [
        ("CacheKey (HMAC-SHA256 of the token, 128 bits)", key),
        ("Cached (moka's value)", value),
        ("TokenInfo", std::mem::size_of::<TokenInfo>()),
        ("Arc<TokenInfo> allocation (malloc)", info_alloc),
        (
            "its strings: sub, client_id, scope, token_type (malloc)",
            strings,
        ),
        ("the gateway's own bytes per cached token", own),
    ] {
        println!("{name:<58} {bytes:>5} bytes");
    }
    assert!(
        own <= ENTRY_BUDGET,
        "a cached token takes {own} bytes of the gateway's own, over the {ENTRY_BUDGET}-byte budget"
    );
}
