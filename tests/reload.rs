//! Hot reload through the real binary: SIGHUP under load loses no request, `POST /__reload__`
//! answers the outcome, a config that does not validate (or changes a restart-only key, or
//! names an address that cannot be bound) is refused while the old one keeps serving, the
//! main listeners never act on `/__reload__`, listener addresses move without refusing a
//! connection, and the file watcher applies a changed config or certificate without a signal
//! (files replaced in place, and Kubernetes' `..data` symlink swap).

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::client::{self, TestClient, TestConnection};
use support::fake::{FakeUpstream, Reply};
use support::process::{BIN, Process};
use support::raw::{eventually, tls_connect};
use support::reloading::Reloading;
use tempfile::TempDir;

/// A gateway with one plain listener `main`, an admin listener, the upstream `api` and a route
/// `/api` to it; `extra` is appended (more routes, sections).
fn config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[server]
drain_timeout = "3s"
[server.log]
format = "json"
access_log = false

[reload]
watch = false

[[listeners]]
name = "main"
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream}"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
{extra}
"#
    )
}

fn route(name: &str, prefix: &str) -> String {
    format!("\n[[routes]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"api\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sighup_under_load_fails_no_request_and_keep_alive_connections_keep_working() {
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let mut gw = Reloading::start(dir.path(), &config(&fake.url(), "")).await;
    let main = gw.addr("main");
    let mut kept = TestConnection::http1(main).await.expect("connect");
    assert_eq!(kept.get("/api/before").await.status_u16(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for worker in 0..6 {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        load.push(tokio::spawn(async move {
            // Keep-alive: each worker's requests share its pooled connections.
            let client = TestClient::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let url = format!("http://{main}/api/w{worker}/{n}");
                match client.try_send("GET", &url, &[], "").await {
                    Ok(r) if r.status_u16() == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{url}: {}", r.status_u16())),
                    Err(e) => failures.lock().unwrap().push(format!("{url}: {e}")),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        gw.write_config(&config(
            &fake.url(),
            &route(&format!("extra{i}"), &format!("/extra{i}")),
        ));
        gw.sighup();
        gw.event("configuration reloaded").await;
        assert_eq!(
            kept.get(&format!("/extra{i}/x")).await.status_u16(),
            200,
            "a connection opened before the reload serves the new config"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "failed during reloads: {failures:?}");
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 100, "too little load to mean anything: {served}");
    println!("{served} requests, 5 reloads by SIGHUP, 0 failed");
    // The last config serves; the one before is gone.
    assert_eq!(
        client::get(&format!("http://{main}/extra4/x"))
            .await
            .status_u16(),
        200
    );
    assert_eq!(
        client::get(&format!("http://{main}/extra3/x"))
            .await
            .status_u16(),
        404
    );
    assert_eq!(
        gw.metric(r#"fxa_gateway_config_reloads_total{outcome="applied"}"#)
            .await,
        5.0
    );
    let (status, _) = gw.process.terminate().await;
    assert!(
        status.success(),
        "SIGHUP must not kill the gateway: {status}"
    );
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_config_it_started_with() {
    let fake = FakeUpstream::start().await;
    // Routes strip their prefix: `/slow/in-flight` reaches the upstream as `/in-flight`.
    fake.on(
        "/in-flight",
        Reply::new()
            .delay(Duration::from_millis(1500))
            .body("slow done"),
    );
    let dir = TempDir::new().unwrap();
    let with_slow = config(&fake.url(), &route("slow", "/slow"));
    let gw = Reloading::start(dir.path(), &with_slow).await;
    let main = gw.addr("main");
    let slow =
        tokio::spawn(async move { client::get(&format!("http://{main}/slow/in-flight")).await });
    assert!(fake.wait_for_requests(1, Duration::from_secs(5)).await);
    // The new config has no /slow route at all.
    gw.write_config(&config(&fake.url(), ""));
    let reloaded = gw.reload().await;
    assert_eq!(reloaded.status_u16(), 200, "{}", reloaded.text());
    let answer = slow.await.unwrap();
    assert_eq!(answer.status_u16(), 200);
    assert_eq!(answer.text(), "slow done");
    let after = client::get(&format!("http://{main}/slow/x")).await;
    assert_eq!(after.status_u16(), 404);
    assert_eq!(after.json()["errno"], 999);
}

#[tokio::test]
async fn admin_reload_answers_the_new_config_hash_and_main_listeners_never_reload() {
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let gw = Reloading::start(dir.path(), &config(&fake.url(), "")).await;
    let main = gw.addr("main");
    let before = gw.version().await;
    let hash = before["config"]["hash"].as_str().unwrap().to_owned();
    assert_eq!(hash.len(), 64, "{before}");
    assert!(
        before["config"]["loadedAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    // The main listener treats /__reload__ as any other path: no route here.
    let on_main = client::send("POST", &format!("http://{main}/__reload__"), &[], "").await;
    assert_eq!(on_main.status_u16(), 404);
    assert_eq!(on_main.json()["errno"], 999);
    let get = client::get(&format!("http://{}/__reload__", gw.admin)).await;
    assert_eq!(get.status_u16(), 405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(
        gw.metric(r#"fxa_gateway_config_reloads_total{outcome="applied"}"#)
            .await,
        0.0
    );

    // The same file reloads to the same hash.
    let same = gw.reload().await;
    assert_eq!(same.status_u16(), 200, "{}", same.text());
    assert_eq!(same.json()["config"]["hash"], hash.as_str());

    gw.write_config(&config(&fake.url(), &route("more", "/more")));
    let resp = gw.reload().await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["status"], "applied");
    let new_hash = body["config"]["hash"].as_str().unwrap().to_owned();
    assert_ne!(new_hash, hash);
    assert_eq!(gw.config_hash().await, new_hash);
    let metrics = gw.metrics().await;
    assert!(
        metrics.contains(&format!(
            r#"fxa_gateway_config_info{{hash="{new_hash}"}} 1"#
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&hash),
        "the old hash's info series is gone"
    );
    assert!(metrics.contains("fxa_gateway_config_loaded_timestamp_seconds "));
    assert_eq!(
        support::reloading::metric(
            &metrics,
            r#"fxa_gateway_config_reloads_total{outcome="applied"}"#
        ),
        2.0
    );
    assert_eq!(
        client::get(&format!("http://{main}/more/x"))
            .await
            .status_u16(),
        200
    );
}

#[tokio::test]
async fn a_reload_token_is_required_when_configured_and_secret_files_are_not_hashed() {
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let token = "0123456789abcdef0123456789abcdef";
    std::fs::write(dir.path().join("reload.token"), format!("{token}\n")).unwrap();
    let toml = config(&fake.url(), "").replace(
        "[admin]\naddr = \"127.0.0.1:0\"",
        "[admin]\naddr = \"127.0.0.1:0\"\nreload_token = { file = \"reload.token\" }",
    );
    let gw = Reloading::start(dir.path(), &toml).await;
    let hash = gw.config_hash().await;

    let none = gw.reload().await;
    assert_eq!(
        none.status_u16(),
        401,
        "loopback is not enough once a token is set"
    );
    assert_eq!(none.json()["errno"], 110);
    let wrong = gw
        .admin_post(
            "/__reload__",
            &[("authorization", "Bearer 0123456789abcdef0123456789abcdeX")],
        )
        .await;
    assert_eq!(wrong.status_u16(), 401);
    let bearer = format!("Bearer {token}");
    let right = gw
        .admin_post("/__reload__", &[("authorization", &bearer)])
        .await;
    assert_eq!(right.status_u16(), 200, "{}", right.text());

    // Rotating the token: the reload is authorised by the token serving, then the new one
    // counts. The hash does not cover the token file.
    let rotated = "fedcba9876543210fedcba9876543210";
    std::fs::write(dir.path().join("reload.token"), rotated).unwrap();
    let rotate = gw
        .admin_post("/__reload__", &[("authorization", &bearer)])
        .await;
    assert_eq!(rotate.status_u16(), 200, "{}", rotate.text());
    assert_eq!(rotate.json()["config"]["hash"], hash.as_str());
    let old = gw
        .admin_post("/__reload__", &[("authorization", &bearer)])
        .await;
    assert_eq!(old.status_u16(), 401);
    let new = format!("Bearer {rotated}");
    assert_eq!(
        gw.admin_post("/__reload__", &[("authorization", &new)])
            .await
            .status_u16(),
        200
    );
}

#[tokio::test]
async fn an_invalid_config_is_refused_with_every_problem_while_the_old_one_serves() {
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let good = config(&fake.url(), "");
    let mut gw = Reloading::start(dir.path(), &good).await;
    let main = gw.addr("main");
    let hash = gw.config_hash().await;

    // Two problems in one file: both are answered, both logged.
    let broken = config(
        &fake.url(),
        "\n[[routes]]\nname = \"bad\"\npath_prefix = \"/bad\"\nupstream = \"nope\"\n\n[limits]\nidle_timeout = 5\n",
    );
    gw.write_config(&broken);
    let resp = gw.reload().await;
    assert_eq!(resp.status_u16(), 500, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["errno"], 999);
    assert_eq!(resp.header("x-fxa-gateway-error"), Some("config-refused"));
    let problems: Vec<String> = body["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("routes[1].upstream") && p.contains("nope"))
    );
    assert!(problems.iter().any(|p| p.contains("limits.idle_timeout")));
    gw.event("configuration reload refused; the previous configuration keeps serving")
        .await;
    let logged = gw.event("reload problem").await;
    assert!(
        logged["problem"]
            .as_str()
            .unwrap()
            .contains("gateway.toml:"),
        "{logged}"
    );
    // The old config serves, unchanged.
    assert_eq!(
        client::get(&format!("http://{main}/api/x"))
            .await
            .status_u16(),
        200
    );
    assert_eq!(gw.config_hash().await, hash);

    // A restart-only key is refused with its reason.
    gw.write_config(&good.replace("[server]\n", "[server]\nworker_threads = 3\n"));
    let resp = gw.reload().await;
    assert_eq!(resp.status_u16(), 500);
    let problems = resp.json()["problems"].to_string();
    assert!(
        problems.contains("server.worker_threads") && problems.contains("needs a restart"),
        "{problems}"
    );

    // A listener address that cannot be bound refuses the reload; nothing else changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap();
    let extra = format!("\n[[listeners]]\nname = \"second\"\naddr = \"{busy}\"\n");
    let with_busy = good.replace("[admin]", &format!("{extra}\n[admin]"));
    gw.write_config(&format!("{with_busy}{}", route("more", "/more")));
    let resp = gw.reload().await;
    assert_eq!(resp.status_u16(), 500);
    let problems = resp.json()["problems"].to_string();
    assert!(
        problems.contains("listeners[1].addr") && problems.contains("cannot bind"),
        "{problems}"
    );
    assert_eq!(
        client::get(&format!("http://{main}/more/x"))
            .await
            .status_u16(),
        404
    );

    // SIGHUP with a broken file: refused and logged, the process stays up.
    gw.write_config(&broken);
    gw.sighup();
    gw.event("configuration reload refused; the previous configuration keeps serving")
        .await;
    assert_eq!(
        client::get(&format!("http://{main}/api/x"))
            .await
            .status_u16(),
        200
    );
    assert_eq!(
        gw.metric(r#"fxa_gateway_config_reloads_total{outcome="refused"}"#)
            .await,
        4.0
    );
    assert_eq!(
        gw.metric(r#"fxa_gateway_config_reloads_total{outcome="applied"}"#)
            .await,
        0.0
    );
    assert_eq!(gw.config_hash().await, hash);
    drop(taken);
}

/// Every `connect` to `addr` until `stop`: how many were refused.
fn connect_loop(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(usize, usize)> {
    tokio::spawn(async move {
        let (mut ok, mut refused) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => ok += 1,
                Err(_) => refused += 1,
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (ok, refused)
    })
}

#[tokio::test]
async fn a_moved_listener_is_bound_before_the_old_one_drains_and_unchanged_ones_keep_their_socket()
{
    let fake = FakeUpstream::start().await;
    fake.on(
        "/slow",
        Reply::new()
            .delay(Duration::from_millis(1200))
            .body("drained"),
    );
    let dir = TempDir::new().unwrap();
    let two = |second: &str, name: &str| {
        config(&fake.url(), "").replace(
            "[admin]",
            &format!("[[listeners]]\nname = \"{name}\"\naddr = \"{second}\"\n\n[admin]"),
        )
    };
    let mut gw = Reloading::start(dir.path(), &two("127.0.0.3:0", "moving")).await;
    let (main, moving) = (gw.addr("main"), gw.addr("moving"));
    let mut kept = TestConnection::http1(main).await.unwrap();
    assert_eq!(kept.get("/api/x").await.status_u16(), 200);
    // A request in flight on the listener that goes away.
    let in_flight =
        tokio::spawn(async move { client::get(&format!("http://{moving}/api/slow")).await });
    assert!(fake.wait_for_requests(2, Duration::from_secs(5)).await);
    let stop = Arc::new(AtomicBool::new(false));
    let connects = connect_loop(main, stop.clone());

    gw.write_config(&two("127.0.0.2:0", "moved"));
    let resp = gw.reload().await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    let moved = gw.listening("moved").await;
    assert_eq!(moved.ip().to_string(), "127.0.0.2");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, refused) = connects.await.unwrap();
    assert_eq!(
        refused, 0,
        "the unchanged listener refused connections during the reload"
    );
    assert!(ok > 0);

    assert_eq!(
        kept.get("/api/y").await.status_u16(),
        200,
        "same socket, same connection"
    );
    assert_eq!(
        client::get(&format!("http://{moved}/api/x"))
            .await
            .status_u16(),
        200
    );
    let drained = in_flight.await.unwrap();
    assert_eq!(drained.status_u16(), 200);
    assert_eq!(drained.text(), "drained");
    assert!(
        eventually(Duration::from_secs(5), || async {
            tokio::net::TcpStream::connect(moving).await.is_err()
        })
        .await,
        "the old address still accepts"
    );
}

#[tokio::test]
async fn the_watcher_applies_a_changed_config_and_refuses_a_broken_one_without_a_signal() {
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let watched = |extra: &str| {
        config(&fake.url(), extra).replace(
            "[reload]\nwatch = false",
            "[reload]\nwatch = true\nwatch_interval = \"200ms\"",
        )
    };
    let mut gw = Reloading::start(dir.path(), &watched("")).await;
    let main = gw.addr("main");
    let url = format!("http://{main}/watched/x");
    assert_eq!(client::get(&url).await.status_u16(), 404);

    gw.write_config(&watched(&route("watched", "/watched")));
    gw.event("configuration reloaded").await;
    assert_eq!(client::get(&url).await.status_u16(), 200);

    gw.write_config(&watched("\n[limits]\nidle_timeout = \"0s\"\n"));
    gw.event("configuration reload refused; the previous configuration keeps serving")
        .await;
    assert_eq!(
        client::get(&url).await.status_u16(),
        200,
        "the old config keeps serving"
    );
    // Refused once, not again and again while the broken file stays.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        gw.metric(r#"fxa_gateway_config_reloads_total{outcome="refused"}"#)
            .await,
        1.0
    );

    // Written in place this time (truncate and write, same inode).
    std::fs::write(&gw.config, watched(&route("again", "/again"))).unwrap();
    gw.event("configuration reloaded").await;
    assert_eq!(
        client::get(&format!("http://{main}/again/x"))
            .await
            .status_u16(),
        200
    );
    assert_eq!(client::get(&url).await.status_u16(), 404);
}

/// A TLS gateway config: listener `tls` with `cert` / `key` (paths relative to the config).
fn tls_config(upstream: &str, cert: &str, key: &str, extra: &str) -> String {
    config(upstream, extra)
        .replace(
            "[reload]\nwatch = false",
            "[reload]\nwatch = true\nwatch_interval = \"200ms\"",
        )
        .replace(
            "name = \"main\"\naddr = \"127.0.0.1:0\"",
            &format!(
                "name = \"main\"\naddr = \"127.0.0.1:0\"\n\n[[listeners.tls.certificates]]\n\
                 cert = \"{cert}\"\nkey = {{ file = \"{key}\" }}\nserver_names = [\"localhost\"]"
            ),
        )
}

/// The leaf certificate a new handshake with `addr` is given.
async fn served_leaf(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let tls = tls_connect(addr, ca_pem, b"http/1.1").await;
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("peer certificates")[0]
        .to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn a_certificate_replaced_in_place_is_served_to_new_handshakes_without_a_signal() {
    support::client::install_crypto_provider();
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let certs = support::client::TestCerts::new(&["localhost"]);
    certs.write_to(dir.path());
    let mut gw = Reloading::start(
        dir.path(),
        &tls_config(&fake.url(), "cert.pem", "key.pem", ""),
    )
    .await;
    let main = gw.addr("main");
    assert_eq!(
        served_leaf(main, &certs.ca_cert_pem).await,
        der(&certs.cert_pem)
    );
    let mut open = tls_connect(main, &certs.ca_cert_pem, b"http/1.1").await;

    // Renewed in place, key first then certificate, as an ACME client may write them.
    let (cert, key) = certs.issue(&["localhost"]);
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    gw.event("configuration reloaded").await;
    assert_eq!(served_leaf(main, &certs.ca_cert_pem).await, der(&cert));
    // A connection made before the rotation goes on working.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    open.write_all(b"GET /api/x HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    open.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn a_kubernetes_data_symlink_swap_updates_config_and_certificate_together() {
    support::client::install_crypto_provider();
    let fake = FakeUpstream::start().await;
    let dir = TempDir::new().unwrap();
    let mount = dir.path();
    let certs = support::client::TestCerts::new(&["localhost"]);
    // As kubelet lays out a ConfigMap/Secret volume: files are symlinks through `..data`.
    let version = |name: &str, toml: &str, cert: &str, key: &str| {
        let v = mount.join(name);
        std::fs::create_dir(&v).unwrap();
        std::fs::write(v.join("gateway.toml"), toml).unwrap();
        std::fs::write(v.join("tls.crt"), cert).unwrap();
        std::fs::write(v.join("tls.key"), key).unwrap();
    };
    let first = tls_config(&fake.url(), "tls.crt", "tls.key", "");
    version("..2026_12_03_01", &first, &certs.cert_pem, &certs.key_pem);
    std::os::unix::fs::symlink("..2026_12_03_01", mount.join("..data")).unwrap();
    for f in ["gateway.toml", "tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), mount.join(f)).unwrap();
    }
    let mut command = tokio::process::Command::new(BIN);
    command.arg("--config").arg(mount.join("gateway.toml"));
    let process = Process::spawn_command(command);
    let mut gw = Reloading::started(process, mount.join("gateway.toml")).await;
    let main = gw.addr("main");
    assert_eq!(
        served_leaf(main, &certs.ca_cert_pem).await,
        der(&certs.cert_pem)
    );

    let (cert, key) = certs.issue(&["localhost"]);
    let second = tls_config(
        &fake.url(),
        "tls.crt",
        "tls.key",
        &route("swapped", "/swapped"),
    );
    version("..2026_12_03_02", &second, &cert, &key);
    std::os::unix::fs::symlink("..2026_12_03_02", mount.join("..data_tmp")).unwrap();
    std::fs::rename(mount.join("..data_tmp"), mount.join("..data")).unwrap();
    std::fs::remove_dir_all(mount.join("..2026_12_03_01")).unwrap();
    gw.event("configuration reloaded").await;
    assert_eq!(served_leaf(main, &certs.ca_cert_pem).await, der(&cert));
    let client =
        support::client::TlsTestClient::new(&certs.ca_cert_pem, support::client::Alpn::Http1);
    assert_eq!(
        client
            .get(main, "localhost", "/swapped/x")
            .await
            .status_u16(),
        200
    );
}
