//! Operations basics: the admin (Dockerflow) endpoints, graceful drain, the plain-listener
//! rule end to end, `gen-cert` and `--version`.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::client::{self, Alpn, TlsTestClient};
use support::fake::{FakeUpstream, Reply};
use support::raw::eventually;
use support::{TestGateway, config_with, simple_config};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_fxa-gateway");

fn run_bin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run fxa-gateway")
}

#[tokio::test]
async fn lbheartbeat_answers_200_while_serving() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.admin_url("/__lbheartbeat__")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let head = client::send("HEAD", &gw.admin_url("/__lbheartbeat__"), &[], "").await;
    assert_eq!(head.status_u16(), 200);
    assert!(head.body.is_empty());
    assert_eq!(
        fake.request_count(),
        0,
        "the LB heartbeat must not call upstreams"
    );
}

#[tokio::test]
async fn version_names_the_package_and_its_version() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.admin_url("/__version__")).await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let v = resp.json();
    assert_eq!(v["name"], "fxa-gateway");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["commit"].is_string(), "commit missing: {v}");
}

#[tokio::test]
async fn heartbeat_is_200_with_per_upstream_detail_when_upstreams_answer() {
    let fake = FakeUpstream::start().await;
    // Any HTTP answer counts as reachable, even an error status.
    let other = FakeUpstream::start().await;
    other.set_default(Reply::new().status(404));
    let extra = format!(
        "[[upstreams]]\nname = \"other\"\nurl = \"{}\"\nconnect_timeout = \"1s\"\n",
        other.url()
    );
    let gw = TestGateway::start(&config_with(&fake.url(), &extra)).await;
    let resp = client::get(&gw.admin_url("/__heartbeat__")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let hb = resp.json();
    assert_eq!(hb["upstreams"]["api"]["status"], "ok", "{hb}");
    assert_eq!(hb["upstreams"]["other"]["status"], "ok", "{hb}");
    assert_eq!(hb["upstreams"]["other"]["httpStatus"], 404, "{hb}");
    assert!(fake.request_count() >= 1 && other.request_count() >= 1);
}

#[tokio::test]
async fn heartbeat_is_503_naming_the_unreachable_upstream() {
    let fake = FakeUpstream::start().await;
    let refusing = FakeUpstream::refusing();
    let extra = format!(
        "[[upstreams]]\nname = \"down\"\nurl = \"http://{refusing}\"\nconnect_timeout = \"1s\"\n"
    );
    let gw = TestGateway::start(&config_with(&fake.url(), &extra)).await;
    let resp = client::get(&gw.admin_url("/__heartbeat__")).await;
    assert_eq!(resp.status_u16(), 503, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let hb = resp.json();
    assert_eq!(hb["upstreams"]["api"]["status"], "ok", "{hb}");
    assert_eq!(hb["upstreams"]["down"]["status"], "error", "{hb}");
    assert!(
        hb["upstreams"]["down"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "no reason for the failing upstream: {hb}"
    );
    let text = resp.text();
    assert!(
        !text.contains(&refusing.port().to_string()),
        "heartbeat leaks addresses: {text}"
    );
}

#[tokio::test]
async fn unknown_admin_path_is_a_404_in_the_errno_shape() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    for path in ["/nope", "/__lbheartbeat__/x", "/api/v1/x", "/"] {
        let resp = client::get(&gw.admin_url(path)).await;
        assert_eq!(resp.status_u16(), 404, "{path}");
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "{path}"
        );
        let body = resp.json();
        assert_eq!(body["code"], 404, "{path}: {body}");
        assert_eq!(body["errno"], 999, "{path}: {body}");
        assert!(
            body["message"].is_string() && body["error"].is_string(),
            "{path}: {body}"
        );
        assert!(resp.header("x-request-id").is_some(), "{path}");
    }
    let resp = client::send("POST", &gw.admin_url("/__lbheartbeat__"), &[], "").await;
    assert_eq!(resp.status_u16(), 405);
    assert_eq!(resp.json()["errno"], 999);
    assert!(resp.header("allow").is_some_and(|a| a.contains("GET")));
    assert_eq!(fake.request_count(), 0, "admin paths are never proxied");
}

#[tokio::test]
async fn graceful_drain_finishes_in_flight_requests_and_fails_the_lb_heartbeat() {
    let fake = FakeUpstream::start().await;
    // Long enough for every check below to happen while the request is still in flight.
    fake.on(
        "/v1/slow",
        Reply::new()
            .delay(Duration::from_millis(1500))
            .body("slow done"),
    );
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    assert_eq!(
        client::get(&gw.admin_url("/__lbheartbeat__"))
            .await
            .status_u16(),
        200
    );

    let slow_url = gw.url("/api/v1/slow");
    let slow = tokio::spawn(async move { client::try_send("GET", &slow_url, &[], "").await });
    assert!(
        fake.wait_for_requests(1, Duration::from_secs(5)).await,
        "the slow request never reached the upstream"
    );

    gw.begin_shutdown();

    let lb = gw.admin_url("/__lbheartbeat__");
    let failing = eventually(Duration::from_secs(1), || {
        let lb = lb.clone();
        async move {
            matches!(client::try_send("GET", &lb, &[], "").await, Ok(r) if r.status_u16() == 503)
        }
    })
    .await;
    assert!(failing, "/__lbheartbeat__ did not turn 503 while draining");

    let hb = client::get(&gw.admin_url("/__heartbeat__")).await;
    assert_eq!(hb.status_u16(), 503, "draining heartbeat: {}", hb.text());

    let addr = gw.addr;
    let refused = eventually(Duration::from_secs(1), || async move {
        match TcpStream::connect(addr).await {
            Err(_) => true,
            // Accepted by the kernel after all: a drained gateway must not answer on it.
            Ok(s) => {
                drop(s);
                false
            }
        }
    })
    .await;
    assert!(
        refused,
        "new client connections were still accepted while draining"
    );
    assert!(
        !slow.is_finished(),
        "the checks above ran too late to prove anything"
    );

    let resp = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("in-flight request never finished")
        .expect("request task")
        .expect("in-flight request failed during the drain");
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.text(), "slow done");

    tokio::time::timeout(Duration::from_secs(10), gw.join())
        .await
        .expect("drain never finished")
        .expect("gateway run returned an error");
}

#[tokio::test]
async fn drain_gives_up_after_the_drain_timeout() {
    let fake = FakeUpstream::start().await;
    fake.on("/v1/stuck", Reply::new().delay(Duration::from_secs(20)));
    let cfg =
        simple_config(&fake.url()).replace("drain_timeout = \"5s\"", "drain_timeout = \"300ms\"");
    let cfg = cfg.replace("response_timeout = \"2s\"", "response_timeout = \"30s\"");
    let gw = TestGateway::start(&cfg).await;
    let url = gw.url("/api/v1/stuck");
    let _stuck = tokio::spawn(async move { client::try_send("GET", &url, &[], "").await });
    assert!(fake.wait_for_requests(1, Duration::from_secs(5)).await);

    let started = Instant::now();
    gw.begin_shutdown();
    tokio::time::timeout(Duration::from_secs(5), gw.join())
        .await
        .expect("drain did not stop at the drain timeout")
        .expect("gateway run returned an error");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "did not wait for the in-flight request"
    );
}

#[tokio::test]
async fn idle_gateway_shuts_down_promptly() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    // An idle keep-alive client connection must not hold the drain for the whole timeout.
    let mut conn = client::TestConnection::http1(gw.addr)
        .await
        .expect("connect");
    assert_eq!(conn.get("/api/v1/x").await.status_u16(), 200);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), gw.stop())
        .await
        .expect("stop hung")
        .expect("gateway run returned an error");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "an idle keep-alive connection held the drain for {:?}",
        started.elapsed()
    );
}

// --- Plain listeners on public addresses ----------------------------------------------------

fn public_plain_config(fake_url: &str, opt_in: bool) -> String {
    let listener = if opt_in {
        "name = \"test\"\nallow_plain_non_loopback = true\naddr = \"0.0.0.0:0\""
    } else {
        "name = \"test\"\naddr = \"0.0.0.0:0\""
    };
    simple_config(fake_url).replace("name = \"test\"\naddr = \"127.0.0.1:0\"", listener)
}

#[test]
fn plain_listener_on_a_public_address_needs_the_opt_in() {
    let cfg = public_plain_config("http://127.0.0.1:9", false);
    assert!(
        cfg.contains("0.0.0.0:0"),
        "test config not rewritten:\n{cfg}"
    );
    let err = fxa_gateway::config::parse_str(&cfg, Path::new("test.toml"), Path::new("."))
        .expect_err("a plain public listener must be refused");
    let text = err.to_string();
    assert!(text.contains("allow_plain_non_loopback"), "{text}");
    assert!(text.contains("listeners[0]"), "{text}");

    let ok = public_plain_config("http://127.0.0.1:9", true);
    fxa_gateway::config::parse_str(&ok, Path::new("test.toml"), Path::new("."))
        .unwrap_or_else(|e| panic!("opt-in refused: {e}"));
}

#[test]
fn check_flag_refuses_a_plain_public_listener_and_accepts_the_opt_in() {
    let dir = TempDir::new().expect("temp dir");
    let bad = dir.path().join("public.toml");
    std::fs::write(&bad, public_plain_config("http://127.0.0.1:9", false)).unwrap();
    let out = run_bin(&["--check", "--config", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("public.toml"),
        "error does not name the file: {stderr}"
    );
    assert!(stderr.contains("allow_plain_non_loopback"), "{stderr}");

    let good = dir.path().join("opted.toml");
    std::fs::write(&good, public_plain_config("http://127.0.0.1:9", true)).unwrap();
    let out = run_bin(&["--check", "--config", good.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- gen-cert and --version -----------------------------------------------------------------

#[tokio::test]
async fn gen_cert_output_serves_tls_to_a_client_trusting_its_ca() {
    let dir = TempDir::new().expect("temp dir");
    let out_dir = dir.path().join("certs");
    let out = run_bin(&["gen-cert", "--out", out_dir.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "gen-cert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["ca.pem", "gateway.pem", "gateway-key.pem"] {
        let text = std::fs::read_to_string(out_dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(text.starts_with("-----BEGIN "), "{f} is not PEM");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("gateway-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the private key is readable by others: {mode:o}"
        );
    }

    let fake = FakeUpstream::start().await;
    let toml = format!(
        r#"
[[listeners]]
name = "edge"
addr = "127.0.0.1:0"
[listeners.tls]
[[listeners.tls.certificates]]
cert = "certs/gateway.pem"
key = {{ file = "certs/gateway-key.pem" }}

[[upstreams]]
name = "api"
url = "{}"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
"#,
        fake.url()
    );
    // The same file passes --check, with relative paths resolved against its directory.
    let cfg_path = dir.path().join("tls.toml");
    std::fs::write(&cfg_path, &toml).unwrap();
    let check = run_bin(&["--check", "--config", cfg_path.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "--check: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let gw = TestGateway::start_in(&toml, dir.path()).await;
    let ca = std::fs::read_to_string(out_dir.join("ca.pem")).unwrap();
    for alpn in [Alpn::Http1, Alpn::H2] {
        let client = TlsTestClient::new(&ca, alpn);
        for name in ["localhost", "127.0.0.1"] {
            let resp = client.get(gw.addr, name, "/api/x").await;
            assert_eq!(resp.status_u16(), 200, "{alpn:?} {name}: {}", resp.text());
        }
    }
    // A name the certificate does not carry fails verification.
    let err = TlsTestClient::new(&ca, Alpn::Both)
        .try_send(gw.addr, "other.example", "GET", "/api/x", &[], "")
        .await;
    assert!(
        err.is_err(),
        "certificate accepted for a name it does not carry"
    );
}

#[test]
fn gen_cert_takes_extra_names() {
    let dir = TempDir::new().expect("temp dir");
    let out = run_bin(&[
        "gen-cert",
        "--out",
        dir.path().to_str().unwrap(),
        "--name",
        "api.example",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("gateway.pem").exists());
}

#[test]
fn version_flag_prints_the_version() {
    let out = run_bin(&["--version"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("fxa-gateway {}", env!("CARGO_PKG_VERSION"))
    );
}
