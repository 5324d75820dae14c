//! AFL++ entry point; the target is `fxa_gateway_fuzz::introspect_answer`.

fn main() {
    afl::fuzz!(|data: &[u8]| fxa_gateway_fuzz::introspect_answer::run(data));
}
