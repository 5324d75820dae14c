//! AFL++ entry point; the target is `fxa_gateway_fuzz::retry_after`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::retry_after::run(data));
}
