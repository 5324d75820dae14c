//! AFL++ entry point; the target is `fxa_gateway_fuzz::refresh_token_header`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::refresh_token_header::run(data));
}
