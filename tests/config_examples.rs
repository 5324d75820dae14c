//! The shipped configuration files pass `fxa-gateway --check`, and a broken one fails with every
//! problem named by file, line and key.
//!
//! The files are copied into a temp dir (keeping the `examples/` + `certs/` layout) and the
//! certificates they name are generated there at run time: no key material lives in git.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_fxa-gateway");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Environment variables the shipped examples read their secrets from, with dummy values.
const EXAMPLE_SECRETS: &[(&str, &str)] = &[
    ("AMO_API_SECRET", "example-amo-secret-not-real"),
    (
        "AMO_REVIEWER_API_SECRET",
        "example-reviewer-secret-not-real",
    ),
    (
        "FXA_CLIENT_SECRET",
        "00000000000000000000000000000000000000000000000000000000000000ff",
    ),
    ("REDIS_PASSWORD", "example-redis-password-not-real"),
    (
        "REDIS_HASHING_KEY",
        "example-hashing-key-not-real-0123456789abcdef",
    ),
    (
        "REDIS_ENCRYPTION_KEY",
        "example-encryption-key-not-real-0123456789abcdef",
    ),
];

/// `fxa-gateway --check` with the example secrets set, except those named in `unset`.
fn check_with_env(config: &Path, unset: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--check").arg("--config").arg(config);
    for (name, value) in EXAMPLE_SECRETS {
        if unset.contains(name) {
            cmd.env_remove(name);
        } else {
            cmd.env(name, value);
        }
    }
    cmd.output().expect("run fxa-gateway --check")
}

fn check(config: &Path) -> Output {
    check_with_env(config, &[])
}

#[track_caller]
fn assert_check_passes(config: &Path) {
    let out = check(config);
    assert!(
        out.status.success(),
        "{} failed --check ({}):\n{}",
        config.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed certificate and its key, as PEM files named `<name>.pem` / `<name>-key.pem`.
fn write_cert(dir: &Path, name: &str, host: &str) {
    let ck = rcgen::generate_simple_self_signed(vec![host.to_owned()]).expect("generate cert");
    std::fs::write(dir.join(format!("{name}.pem")), ck.cert.pem()).expect("write cert");
    let key = ck.signing_key.serialize_pem();
    std::fs::write(dir.join(format!("{name}-key.pem")), key).expect("write key");
}

/// A temp dir holding `gateway.toml`, `examples/*.toml` and the certificates they reference.
fn staged() -> (tempfile::TempDir, Vec<PathBuf>) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let root = tmp.path();
    let mut configs = vec![root.join("gateway.toml")];
    std::fs::copy(repo().join("gateway.toml"), &configs[0]).expect("copy gateway.toml");
    std::fs::create_dir(root.join("examples")).expect("mkdir examples");
    for entry in std::fs::read_dir(repo().join("examples")).expect("read examples/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let dest = root
                .join("examples")
                .join(path.file_name().expect("file name"));
            std::fs::copy(&path, &dest).expect("copy example");
            configs.push(dest);
        }
    }
    let certs = root.join("certs");
    std::fs::create_dir(&certs).expect("mkdir certs");
    write_cert(&certs, "gateway", "gateway.example");
    write_cert(&certs, "api", "api.example");
    write_cert(&certs, "ca", "ca.example");
    (tmp, configs)
}

#[test]
fn shipped_gateway_toml_passes_check_in_place() {
    // The default needs no certificates or secrets: check the file where it lives.
    assert_check_passes(&repo().join("gateway.toml"));
}

#[test]
fn every_example_passes_check() {
    let (_tmp, configs) = staged();
    let names: Vec<_> = configs.iter().filter_map(|c| c.file_name()).collect();
    for expected in ["gateway.toml", "edge.toml", "amo.toml"] {
        assert!(
            names.iter().any(|n| *n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for config in &configs {
        assert_check_passes(config);
    }
}

#[test]
fn amo_example_without_its_secret_fails_check_naming_the_variable() {
    let config = repo().join("examples/amo.toml");
    let out = check_with_env(&config, &["AMO_API_SECRET"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with(&*config.to_string_lossy()))
        .collect();
    assert_eq!(problems.len(), 1, "expected one problem:\n{stderr}");
    assert!(
        problems[0].contains(": amo_credentials[0].secret: ")
            && problems[0].contains("AMO_API_SECRET"),
        "{stderr}"
    );
    for (_, value) in EXAMPLE_SECRETS {
        assert!(
            !stderr.contains(value),
            "a secret value was echoed:\n{stderr}"
        );
    }
}

#[test]
fn broken_config_fails_check_and_names_every_problem() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let config = tmp.path().join("broken.toml");
    std::fs::write(
        &config,
        r#"[[listeners]]
name = "edge"
addr = "127.0.0.1:8443"
colour = "blue"
[listeners.tls]
[[listeners.tls.certificates]]
cert = "cert.pem"
key = "-----BEGIN KEY_MARKER-----INLINE"

[[upstreams]]
name = "profile"
url = "https://profile.accounts.firefox.com"

[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "profle"
"#
        .replace("KEY_MARKER", "PRIVATE KEY"),
    )
    .expect("write config");
    let out = check(&config);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let file = config.display().to_string();
    for expected in [
        format!("{file}:4: listeners[0].colour: unknown field `colour`"),
        format!("{file}:8: listeners[0].tls.certificates[0].key: secrets are never written inline"),
        format!("{file}:17: routes[0].upstream: unknown upstream \"profle\""),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("INLINE"),
        "a secret value was echoed:\n{stderr}"
    );
}
