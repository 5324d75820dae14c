//! AFL++ entry point; the target is `fxa_gateway_fuzz::scope`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::scope::run(data));
}
