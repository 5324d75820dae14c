//! The deployment kit, as far as it can be tested without a container daemon: every config in
//! `examples/kubernetes/*.yaml` and `examples/compose/` passes `--check`, the manifests and the
//! Dockerfile agree on the image's paths and rules (non-root, nothing baked in, probes on
//! `/__lbheartbeat__`, directories mounted, never `subPath`), and the binary runs as the
//! image's unprivileged user with the image's paths, reloading what it reads there.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::process::{BIN, Process};
use support::reloading::Reloading;

/// The image's user (distroless `nonroot`) and its paths, as the Dockerfile says.
const IMAGE_UID: u32 = 65532;
const IMAGE_BIN: &str = "usr/local/bin/fxa-gateway";
const IMAGE_CONFIG: &str = "etc/fxa-gateway/config/gateway.toml";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The `gateway.toml: |` blocks of a manifest, dedented.
fn embedded_configs(yaml: &str) -> Vec<String> {
    let mut configs = Vec::new();
    let mut lines = yaml.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() != "gateway.toml: |" {
            continue;
        }
        let mut block = Vec::new();
        let mut indent = None;
        while let Some(next) = lines.peek() {
            let depth = next.len() - next.trim_start().len();
            if !next.trim().is_empty() && depth <= line.len() - line.trim_start().len() {
                break;
            }
            let indent = *indent.get_or_insert(depth);
            block.push(next.get(indent..).unwrap_or("").to_owned());
            lines.next();
        }
        configs.push(block.join("\n"));
    }
    configs
}

/// Lays out the image's `/etc/fxa-gateway` under `root`: the config, the secret files it may
/// name (dummy values) and a TLS certificate.
fn lay_out(root: &Path, toml: &str) -> PathBuf {
    let etc = root.join("etc/fxa-gateway");
    for dir in ["config", "secrets", "tls"] {
        std::fs::create_dir_all(etc.join(dir)).unwrap();
    }
    let config = root.join(IMAGE_CONFIG);
    std::fs::write(&config, toml).unwrap();
    std::fs::write(etc.join("secrets/client_secret"), "ab".repeat(32)).unwrap();
    std::fs::write(etc.join("secrets/reload_token"), "cd".repeat(32)).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["api.example.com".to_owned()]).unwrap();
    std::fs::write(etc.join("tls/tls.crt"), ck.cert.pem()).unwrap();
    std::fs::write(etc.join("tls/tls.key"), ck.signing_key.serialize_pem()).unwrap();
    config
}

fn check(config: &Path) {
    let out = Command::new(BIN)
        .arg("--check")
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} fails --check:\n{}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_deployment_example_config_passes_check() {
    let mut checked = 0;
    for manifest in [
        "examples/kubernetes/sidecar.yaml",
        "examples/kubernetes/edge.yaml",
    ] {
        let configs = embedded_configs(&read(manifest));
        assert_eq!(configs.len(), 1, "{manifest}: one gateway.toml");
        let root = tempfile::tempdir().unwrap();
        check(&lay_out(root.path(), &configs[0]));
        checked += 1;
    }
    let root = tempfile::tempdir().unwrap();
    check(&lay_out(
        root.path(),
        &read("examples/compose/config/gateway.toml"),
    ));
    checked += 1;
    assert_eq!(checked, 3);
}

#[test]
fn the_manifests_mount_directories_probe_the_lb_heartbeat_and_run_as_non_root() {
    for manifest in [
        "examples/kubernetes/sidecar.yaml",
        "examples/kubernetes/edge.yaml",
    ] {
        let yaml = read(manifest);
        assert!(
            !yaml.contains("subPath:"),
            "{manifest}: a subPath mount is never updated"
        );
        assert!(yaml.contains("runAsNonRoot: true"), "{manifest}");
        assert!(
            yaml.contains(&format!("runAsUser: {IMAGE_UID}")),
            "{manifest}"
        );
        assert!(
            yaml.contains("readinessProbe:") && yaml.contains("livenessProbe:"),
            "{manifest}"
        );
        assert!(
            yaml.matches("httpGet: { path: /__lbheartbeat__, port: admin }")
                .count()
                == 2,
            "{manifest}: readiness and liveness on /__lbheartbeat__"
        );
        assert!(
            yaml.contains("mountPath: /etc/fxa-gateway/config"),
            "{manifest}"
        );
        assert!(
            yaml.contains("mountPath: /etc/fxa-gateway/secrets"),
            "{manifest}"
        );
        assert!(
            yaml.contains("configMap:") && yaml.contains("secretName:"),
            "{manifest}"
        );
        assert!(
            !yaml.contains("env = \""),
            "{manifest}: secrets come as files, not variables"
        );
        assert!(
            yaml.contains(r#"args: ["--config", "/etc/fxa-gateway/config/gateway.toml"]"#),
            "{manifest}"
        );
    }
    let compose = read("examples/compose/compose.yaml");
    assert!(compose.contains("./config:/etc/fxa-gateway/config:ro"));
    assert!(compose.contains("./secrets:/etc/fxa-gateway/secrets:ro"));
    assert!(compose.contains("network_mode: service:gateway"));
    assert!(!read("examples/compose/config/gateway.toml").contains("env = \""));
}

#[test]
fn the_dockerfile_runs_non_root_with_nothing_baked_in_and_a_healthcheck() {
    let dockerfile = read("Dockerfile");
    let runtime = dockerfile.split("\nFROM ").last().expect("a runtime stage");
    assert!(
        runtime.contains(&format!("USER {IMAGE_UID}:{IMAGE_UID}")),
        "{runtime}"
    );
    for line in runtime.lines().filter(|l| l.starts_with("COPY")) {
        assert!(
            line.contains("--from=build") && line.ends_with(&format!("/{IMAGE_BIN}")),
            "only the binary goes into the image: {line}"
        );
    }
    assert!(
        !runtime.contains("ENV "),
        "no configuration or secret in the environment"
    );
    assert!(runtime.contains("HEALTHCHECK") && runtime.contains("/__lbheartbeat__"));
    assert!(
        runtime.contains(&format!("\"/{IMAGE_CONFIG}\"")),
        "{runtime}"
    );
    assert!(runtime.contains(&format!("ENTRYPOINT [\"/{IMAGE_BIN}\"]")));
}

/// `setpriv` to the image's user, or why that cannot be done here.
fn unprivileged(program: &Path) -> Result<tokio::process::Command, String> {
    if effective_uid() != 0 {
        return Err("the test runs unprivileged already and cannot switch users".into());
    }
    let probe = Command::new("setpriv").arg("--version").output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return Err("setpriv (util-linux) is not installed".into());
    }
    let mut command = tokio::process::Command::new("setpriv");
    command
        .arg(format!("--reuid={IMAGE_UID}"))
        .arg(format!("--regid={IMAGE_UID}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    Ok(command)
}

fn effective_uid() -> u32 {
    // /proc/self/status: "Uid:\treal\teffective\t...".
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(u32::MAX)
}

fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1)?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn the_binary_runs_as_the_images_unprivileged_user_with_the_images_paths() {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // The sidecar example as the pod would mount it, on ports the test can have.
    let sidecar = embedded_configs(&read("examples/kubernetes/sidecar.yaml")).remove(0);
    let toml = sidecar
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("0.0.0.0:8081", "127.0.0.1:0");
    let config = lay_out(root.path(), &toml);
    // As kubelet mounts a Secret with defaultMode 0440 and fsGroup: readable by the group only.
    let secrets = root.path().join("etc/fxa-gateway/secrets");
    for entry in std::fs::read_dir(&secrets).unwrap() {
        let path = entry.unwrap().path();
        std::os::unix::fs::chown(&path, Some(0), Some(IMAGE_UID)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
    }
    let bin = root.path().join(IMAGE_BIN);
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(BIN, &bin).unwrap();

    let mut command = match unprivileged(&bin) {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED: cannot start the binary as uid {IMAGE_UID}: {why}");
            return;
        }
    };
    command.arg("--config").arg(&config);
    let process = Process::spawn_command(command);
    let pid = process.pid();
    let mut gw = Reloading::started(process, config.clone()).await;
    assert_eq!(
        uid_of(pid),
        IMAGE_UID,
        "the gateway runs as the image's user"
    );
    let main = gw.addr("sidecar");
    let lb = format!("http://{}/__lbheartbeat__", gw.admin);
    assert_eq!(support::client::get(&lb).await.status_u16(), 200);
    // The image's HEALTHCHECK, as the same user.
    let health = unprivileged(&bin)
        .unwrap()
        .arg("healthcheck")
        .arg(&lb)
        .status()
        .await
        .unwrap();
    assert!(health.success(), "healthcheck failed: {health}");
    let hash = gw.config_hash().await;

    // A changed ConfigMap, reloaded by SIGHUP: the unprivileged process reads it and the
    // group-readable secret again.
    let more = format!(
        "{toml}\n[[routes]]\nname = \"more\"\npath_prefix = \"/more\"\nupstream = \"rp-api\"\n"
    );
    std::fs::write(&config, more).unwrap();
    gw.sighup();
    gw.event("configuration reloaded").await;
    assert_ne!(gw.config_hash().await, hash);
    // The new route exists (its upstream is not running: 502 errno 203 from the gateway).
    let resp = support::client::get(&format!("http://{main}/more/x")).await;
    assert_eq!(resp.status_u16(), 502, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 203);
    let (status, _) = gw.process.terminate().await;
    assert!(status.success(), "{status}");
}
