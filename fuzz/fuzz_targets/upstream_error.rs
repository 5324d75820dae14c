//! AFL++ entry point; the target is `fxa_gateway_fuzz::upstream_error`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::upstream_error::run(data));
}
