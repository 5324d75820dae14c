//! AFL++ entry point; the target is `fxa_gateway_fuzz::amo_jwt`.

fn main() {
    fxa_gateway_fuzz::amo_jwt::init();
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::amo_jwt::run(data));
}
