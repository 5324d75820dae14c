//! AFL++ entry point; the target is `fxa_gateway_fuzz::authorization`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::authorization::run(data));
}
