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

/// Found by the `token_answer` target (crash `expires_in: 1e-300`): a token endpoint answer
/// with a positive `expires_in` under a nanosecond was taken as a grant whose token had a zero
/// lifetime: expired on the gateway's clock the moment it arrived, yet handed to the caller
/// (`X-FxA-Access-Token-Expires-In: 0`). A lifetime under one second is no usable token: the
/// answer counts as garbled (503 errno 104, never a re-authentication).
#[test]
fn a_token_answer_living_under_a_second_is_not_a_grant() {
    use fxa_gateway::auth::refresh::{TokenAnswer, judge};
    use http::StatusCode;

    for expires_in in ["1e-300", "0.5", "0.999", "5e-324"] {
        let body = format!(r#"{{"access_token": "t", "expires_in": {expires_in}}}"#);
        assert!(
            matches!(
                judge(StatusCode::OK, Some(body.as_bytes())),
                TokenAnswer::Unavailable
            ),
            "expires_in {expires_in} was taken as a grant"
        );
    }
    let one = br#"{"access_token": "t", "expires_in": 1}"#;
    match judge(StatusCode::OK, Some(one)) {
        TokenAnswer::Granted(token) => assert_eq!(token.expires_in, Duration::from_secs(1)),
        _ => panic!("a one-second token is a grant"),
    }
}
