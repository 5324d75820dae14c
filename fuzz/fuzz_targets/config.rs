//! AFL++ entry point; the target is `fxa_gateway_fuzz::config`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::config::run(data));
}
