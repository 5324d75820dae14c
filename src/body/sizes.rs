//! What one request to an upstream costs inline (issue 19: peak RSS under load). A request
//! carries its body inline, and a pooled HTTP/1.1 upstream connection keeps whole requests in
//! its request channel (hyper's dispatch channel: a tokio list of 32-slot blocks, one or two
//! per connection), besides the pipeline's futures and the retry copy. Under 500 requests in
//! flight to an HTTP/1.1 upstream (`h2load -c50 -m10` on TLS h2) there are 500 such
//! connections.
//!
//! `cargo nextest run --lib body::sizes --no-capture` prints the figures; the test fails when
//! the body grows back past the budget.

use super::*;

/// `UpstreamBody` inline: the buffered body (`Option<Bytes>`) and the enum's tag. It was 120
/// bytes with the streamed body's state (`LimitedIncoming`) inline.
const BODY_BUDGET: usize = 40;

#[test]
fn upstream_request_stays_small() {
    let body = std::mem::size_of::<UpstreamBody>();
    let request = std::mem::size_of::<http::Request<UpstreamBody>>();
    // hyper's dispatch envelope: the request and its callback (a oneshot sender in an enum).
    let slot = std::mem::size_of::<Option<(http::Request<UpstreamBody>, [usize; 2])>>();
    println!(
        "UpstreamBody {body} bytes (LimitedIncoming {}, its state {} boxed); \
         Request<UpstreamBody> {request}; about {slot} bytes per request-channel slot, {} per \
         32-slot block",
        std::mem::size_of::<LimitedIncoming>(),
        std::mem::size_of::<Limited>(),
        32 * slot
    );
    assert!(
        body <= BODY_BUDGET,
        "UpstreamBody is {body} bytes, over its budget of {BODY_BUDGET}: every request to an \
         upstream and every slot of a pooled connection's request channel grows with it"
    );
}
