//! AFL++ entry point; the target is `fxa_gateway_fuzz::request_head`.

fn main() {
    fxa_gateway_fuzz::request_head::init();
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::request_head::run(data));
}
