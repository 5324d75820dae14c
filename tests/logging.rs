//! The real binary's logs: one access event per request, never a secret, in both formats; and
//! SIGTERM drains in-flight requests and exits 0.

mod support;

use support::process::Process;

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;
use support::client;
use support::fake::{FakeUpstream, Reply};
use tempfile::TempDir;

fn config(format: &str, upstream_url: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "10s"
worker_threads = 2

[server.log]
format = "{format}"
level = "info"
access_log = true

[[listeners]]
name = "public"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream_url}"
connect_timeout = "1s"
response_timeout = "5s"

[[routes]]
name = "api-route"
path_prefix = "/api"
upstream = "api"
versions = ["v1"]

[[routes]]
name = "refresh-route"
path_prefix = "/rt"
upstream = "api"
refresh = true

[refresh]
oauth_upstream = "api"
token_path = "/v1/oauth/token"
client_id = "5882386c6d801776"
client_secret = {{ file = "client_secret" }}
"#
    )
}

/// Removes ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The text-format value of `key=` on a line (quotes removed).
fn text_field(line: &str, key: &str) -> Option<String> {
    let line = strip_ansi(line);
    let needle = format!(" {key}=");
    let start = line.find(&needle)? + needle.len();
    let rest = &line[start..];
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next().unwrap_or("")
    } else {
        rest.split(' ').next().unwrap_or("")
    };
    Some(value.to_owned())
}

/// Refresh tokens are 64 hex characters, so they cannot carry the `SECRET-` marker: checked
/// by value. The first is exchanged for `SECRET-NEWTOKEN-12`, the second refused with 400
/// errno 102 (wrong client secret: logged at error level).
const REFRESH_OK: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7";
const REFRESH_REFUSED: &str = "7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75";
const CLIENT_SECRET: &str = "c11e475ec7e7c11e475ec7e7c11e475ec7e7c11e475ec7e7c11e475ec7e7c11e";

/// A request carrying a secret somewhere, and what its access event must say.
struct Case {
    id: &'static str,
    method: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    status: u16,
    route: &'static str,
}

const CASES: &[Case] = &[
    Case {
        id: "req-auth",
        method: "GET",
        path: "/api/v1/profile",
        headers: &[("authorization", "Bearer SECRET-TOKEN-1")],
        body: "",
        status: 200,
        route: "api-route",
    },
    Case {
        id: "req-cookie",
        method: "GET",
        path: "/api/v1/profile",
        headers: &[("cookie", "session=SECRET-COOKIE-2; other=SECRET-COOKIE-2b")],
        body: "",
        status: 200,
        route: "api-route",
    },
    Case {
        id: "req-query",
        method: "GET",
        path: "/api/v1/profile?access_token=SECRET-QUERY-3&code=SECRET-QUERY-3b",
        headers: &[],
        body: "",
        status: 200,
        route: "api-route",
    },
    Case {
        id: "req-refresh",
        method: "GET",
        path: "/api/v1/token",
        headers: &[("x-fxa-refresh-token", "SECRET-REFRESH-4")],
        body: "",
        status: 200,
        route: "api-route",
    },
    Case {
        id: "req-body",
        method: "POST",
        path: "/api/v1/token",
        headers: &[("content-type", "application/json")],
        body: r#"{"client_secret":"SECRET-BODY-5","refresh_token":"SECRET-BODY-5b"}"#,
        status: 200,
        route: "api-route",
    },
    Case {
        id: "req-refresh-replay",
        method: "GET",
        path: "/rt/v1/unauthorized",
        headers: &[
            ("authorization", "Bearer SECRET-TOKEN-13"),
            ("x-fxa-refresh-token", REFRESH_OK),
        ],
        body: "",
        status: 401,
        route: "refresh-route",
    },
    Case {
        id: "req-refresh-misconfigured",
        method: "GET",
        path: "/rt/v1/unauthorized",
        headers: &[
            ("authorization", "Bearer SECRET-TOKEN-14"),
            ("x-fxa-refresh-token", REFRESH_REFUSED),
        ],
        body: "",
        status: 500,
        route: "refresh-route",
    },
    Case {
        id: "req-upstream-error",
        method: "GET",
        path: "/api/v1/fail",
        headers: &[("authorization", "Basic U0VDUkVULUJBU0lDLTY=")],
        body: "",
        status: 500,
        route: "api-route",
    },
    Case {
        id: "req-no-route",
        method: "GET",
        path: "/nowhere?token=SECRET-QUERY-7",
        headers: &[("authorization", "Bearer SECRET-TOKEN-7")],
        body: "",
        status: 404,
        route: "-",
    },
];

/// Starts a fake and the binary with `format` logs, waits for the client listener, sends every
/// case plus a slow request that is in flight at SIGTERM, and returns the exit status and the
/// whole stderr.
async fn run_cases(format: &str) -> (ExitStatus, String) {
    let fake = FakeUpstream::start().await;
    fake.set_default(
        Reply::new()
            .header("set-cookie", "sid=SECRET-SETCOOKIE-8; HttpOnly")
            .header("x-fxa-access-token", "SECRET-UPSTREAM-HEADER-9")
            .json(serde_json::json!({"ok": true, "access_token": "SECRET-UPSTREAM-BODY-10"})),
    );
    fake.on(
        "/v1/fail",
        Reply::new()
            .status(500)
            .header("content-type", "text/html")
            .body("<html>Internal error SECRET-UPSTREAM-ERROR-11</html>"),
    );
    fake.on(
        "/v1/unauthorized",
        Reply::new()
            .status(401)
            .json(serde_json::json!({"code": 401, "errno": 100, "message": "Unauthorized"})),
    );
    fake.on_fn("/v1/oauth/token", |req| {
        if req.form_field("refresh_token").as_deref() == Some(REFRESH_OK) {
            Reply::new().json(serde_json::json!({
                "access_token": "SECRET-NEWTOKEN-12",
                "token_type": "bearer",
                "scope": "profile",
                "expires_in": 3600,
            }))
        } else {
            Reply::new()
                .status(400)
                .json(serde_json::json!({"code": 400, "errno": 102, "message": "Incorrect secret"}))
        }
    });
    fake.on(
        "/v1/slow",
        Reply::new().delay(Duration::from_millis(1000)).body("slow"),
    );

    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("client_secret"), CLIENT_SECRET).expect("secret file");
    let mut gw = Process::spawn(dir.path(), &config(format, &fake.url()));
    let addr: SocketAddr = match format {
        "json" => {
            gw.wait_for(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let f = &v["Fields"];
                (f["message"] == "listening" && f["listener"] == "public")
                    .then(|| f["addr"].as_str()?.parse().ok())
                    .flatten()
            })
            .await
        }
        _ => {
            gw.wait_for(|line| {
                let plain = strip_ansi(line);
                (plain.contains("listening") && text_field(&plain, "listener")? == "public")
                    .then(|| text_field(&plain, "addr")?.parse().ok())
                    .flatten()
            })
            .await
        }
    };

    for case in CASES {
        let mut headers = vec![("x-request-id", case.id)];
        headers.extend_from_slice(case.headers);
        let url = format!("http://{addr}{}", case.path);
        let resp = client::send(case.method, &url, &headers, case.body).await;
        assert_eq!(
            resp.status_u16(),
            case.status,
            "{}: {}",
            case.id,
            resp.text()
        );
        assert_eq!(resp.header("x-request-id"), Some(case.id));
    }

    // An in-flight request across SIGTERM.
    let slow_url = format!("http://{addr}/api/v1/slow");
    let slow = tokio::spawn(async move {
        client::try_send("GET", &slow_url, &[("x-request-id", "req-slow")], "").await
    });
    // Every case has been answered, so the next request the fake sees is the slow one.
    let answered = fake.request_count();
    assert!(
        fake.wait_for_requests(answered + 1, Duration::from_secs(10))
            .await,
        "the slow request never reached the upstream"
    );
    let (status, stderr) = gw.terminate().await;
    let resp = slow
        .await
        .expect("slow task")
        .expect("the in-flight request failed across SIGTERM");
    assert_eq!(resp.status_u16(), 200, "in-flight request during the drain");
    assert_eq!(resp.text(), "slow");
    (status, stderr)
}

/// Asserts the secrets of every case never appear in the logs.
fn assert_no_secrets(stderr: &str) {
    for (n, line) in stderr.lines().enumerate() {
        assert!(!line.contains("SECRET-"), "line {n} logs a secret:\n{line}");
        for secret in [REFRESH_OK, REFRESH_REFUSED, CLIENT_SECRET] {
            assert!(!line.contains(secret), "line {n} logs a secret:\n{line}");
        }
        // The Basic credentials' base64 form, too.
        assert!(
            !line.contains("U0VDUkVULUJBU0lDLTY"),
            "line {n} logs a secret:\n{line}"
        );
    }
}

#[tokio::test]
async fn json_logs_have_one_access_event_per_request_and_no_secrets() {
    let (status, stderr) = run_cases("json").await;
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert_no_secrets(&stderr);

    let mut access = Vec::new();
    for line in stderr.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for key in [
            "Timestamp",
            "Type",
            "Logger",
            "Hostname",
            "EnvVersion",
            "Severity",
            "Pid",
            "Fields",
        ] {
            assert!(v.get(key).is_some(), "MozLog key {key} missing: {line}");
        }
        if v["Type"] == "request.summary" {
            access.push(v["Fields"].clone());
        }
    }
    let mut expected: Vec<(&str, &str, u16, &str)> = CASES
        .iter()
        .map(|c| (c.id, c.method, c.status, c.route))
        .collect();
    expected.push(("req-slow", "GET", 200, "api-route"));
    for (id, method, status, route) in &expected {
        let events: Vec<&Value> = access.iter().filter(|f| f["request_id"] == *id).collect();
        assert_eq!(
            events.len(),
            1,
            "{id}: want one access event, got {events:?}"
        );
        let f = events[0];
        assert_eq!(f["method"], *method, "{id}: {f}");
        assert_eq!(f["status"], *status, "{id}: {f}");
        assert_eq!(f["route"], *route, "{id}: {f}");
        let upstream = if *route == "-" { "-" } else { "api" };
        assert_eq!(f["upstream"], upstream, "{id}: {f}");
        assert!(
            f["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
            "{id}: {f}"
        );
        // errno is recorded for error answers only.
        if *status >= 400 {
            assert!(f["errno"].is_u64(), "{id}: no errno: {f}");
        } else {
            assert!(f["errno"].is_null(), "{id}: errno on a success: {f}");
        }
    }
    assert_eq!(
        access.len(),
        expected.len(),
        "extra access events: {access:?}"
    );
    let slow = access
        .iter()
        .find(|f| f["request_id"] == "req-slow")
        .unwrap();
    assert!(slow["duration_ms"].as_f64().unwrap() >= 900.0, "{slow}");
    let not_found = access
        .iter()
        .find(|f| f["request_id"] == "req-no-route")
        .unwrap();
    assert_eq!(not_found["errno"], 999, "{not_found}");
    // A refresh request the OAuth server refuses as the gateway's own mistake is an error.
    let misconfigured: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["Fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("refused the gateway's refresh request"))
        })
        .collect();
    assert_eq!(misconfigured.len(), 1, "{stderr}");
    assert_eq!(
        misconfigured[0]["Severity"], 3,
        "error level: {}",
        misconfigured[0]
    );
    assert!(
        stderr.contains("shutting down"),
        "no shutdown event:\n{stderr}"
    );
}

#[tokio::test]
async fn text_logs_have_one_access_event_per_request_and_no_secrets() {
    let (status, stderr) = run_cases("text").await;
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert_no_secrets(&stderr);
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in logs written to a pipe:\n{stderr}"
    );

    let mut ids: Vec<(&str, &str, u16, &str)> = CASES
        .iter()
        .map(|c| (c.id, c.method, c.status, c.route))
        .collect();
    ids.push(("req-slow", "GET", 200, "api-route"));
    for (id, method, status, route) in ids {
        let events: Vec<&str> = stderr
            .lines()
            .filter(|l| strip_ansi(l).contains(" access: "))
            .filter(|l| text_field(l, "request_id").as_deref() == Some(id))
            .collect();
        assert_eq!(
            events.len(),
            1,
            "{id}: want one access event, got {events:#?}"
        );
        let line = events[0];
        assert_eq!(
            text_field(line, "method").as_deref(),
            Some(method),
            "{line}"
        );
        assert_eq!(
            text_field(line, "status"),
            Some(status.to_string()),
            "{line}"
        );
        assert_eq!(text_field(line, "route").as_deref(), Some(route), "{line}");
        assert!(text_field(line, "duration_ms").is_some(), "{line}");
        assert!(text_field(line, "upstream").is_some(), "{line}");
    }
}
