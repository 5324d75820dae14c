//! Issue 15 ("Proof that it holds"), fuzzing: one regression test per problem the fuzz targets
//! in `fuzz/` (or writing them) turned up, each on the input that showed it. The targets
//! themselves run with `fuzz/run.sh`; these keep the fixes in the normal suite.

use std::path::Path;
use std::time::{Duration, Instant};

use fxa_gateway::config::parse_str;

/// Writing the `config` target: a file setting named by the config (secret, key, certificate,
/// CA bundle) was read whole, so a wrong path such as a device never ending (`/dev/zero`) made
/// `--check` and start-up read until memory ran out. Now every such read stops past 4 MiB with
/// an error naming the key and the file.
#[test]
fn a_config_naming_an_endless_file_is_refused_promptly() {
    let src = r#"
[[listeners]]
name = "edge"
addr = "127.0.0.1:8443"
[listeners.tls]
[[listeners.tls.certificates]]
cert = "/dev/zero"
key = { file = "/dev/zero" }
[[upstreams]]
name = "api"
url = "https://api.example"
ca_file = "/dev/zero"
[[routes]]
name = "api"
path_prefix = "/"
upstream = "api"
"#;
    let started = Instant::now();
    let errors = parse_str(src, Path::new("gateway.toml"), Path::new("."))
        .expect_err("an endless file is no certificate, key or CA bundle")
        .errors;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    for key in [
        "listeners[0].tls.certificates[0].cert",
        "listeners[0].tls.certificates[0].key",
        "upstreams[0].ca_file",
    ] {
        let error = errors
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no error for {key}: {errors:?}"));
        assert!(
            error.message.contains("/dev/zero") && error.message.contains("larger than 4 MiB"),
            "{key}: {}",
            error.message
        );
    }
}
