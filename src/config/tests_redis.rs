//! `[redis]`: URL rules, secrets, timeouts, `on_redis_down`, and that every problem is reported
//! in one run.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::tests::BASE;
use super::*;

const KEY_A: &str = "6f1c2a9e0b7d4c3f8a5e6b1d2c9f0a7e3b4d5c6e7f8091a2b3c4d5e6f708192a";
const KEY_B: &str = "0d9c8b7a69584736251403f2e1d0c9b8a7968574635241302f1e0d9c8b7a6958";

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    let env = |name: &str| match name {
        "HASH_KEY" => Some(OsString::from(KEY_A)),
        "ENC_KEY" => Some(OsString::from(KEY_B)),
        "SHORT_KEY" => Some(OsString::from("too-short")),
        "REDIS_PASSWORD" => Some(OsString::from("hunter2-redis")),
        _ => None,
    };
    parse_with_env(
        src,
        Path::new("gateway.toml"),
        Path::new("/nonexistent"),
        &env,
    )
}

fn errors(src: &str) -> String {
    match parse(src) {
        Ok(_) => panic!("config was accepted:\n{src}"),
        Err(e) => e.to_string(),
    }
}

fn with(section: &str) -> String {
    format!("{BASE}\n{section}\n")
}

const KEYS: &str = "hashing_key = { env = \"HASH_KEY\" }\nencryption_key = { env = \"ENC_KEY\" }";

#[test]
fn without_redis_nothing_is_shared() {
    assert!(parse(BASE).unwrap().redis.is_none());
}

#[test]
fn defaults_and_a_loopback_url() {
    let c = parse(&with(&format!(
        "[redis]\nurl = \"redis://127.0.0.1:6380/3\"\n{KEYS}"
    )))
    .unwrap();
    let r = c.redis.unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.db, r.tls),
        ("127.0.0.1", 6380, 3, false)
    );
    assert_eq!(r.key_prefix, "fxa-gateway:");
    assert_eq!(r.connect_timeout, Duration::from_millis(500));
    assert_eq!(r.command_timeout, Duration::from_millis(100));
    assert_eq!(r.health_interval, Duration::from_secs(1));
    assert_eq!(r.hashing_key.expose(), KEY_A.as_bytes());
    assert_eq!(r.on_down, OnRedisDown::default());
    assert_eq!(r.on_down.amo_replay, DownPolicy::Refuse);
    assert_eq!(r.on_down.quotas, DownPolicy::Local);
}

#[test]
fn tls_anywhere_with_a_password_and_policies() {
    let src = with(&format!(
        "[redis]\nurl = \"rediss://cache.internal\"\nusername = \"gw\"\npassword = {{ env = \"REDIS_PASSWORD\" }}\nkey_prefix = \"gw1:\"\n{KEYS}\n[redis.on_redis_down]\namo_replay = \"local\"\nrefresh = \"refuse\""
    ));
    let r = parse(&src).unwrap().redis.unwrap();
    assert!(r.tls);
    assert_eq!(r.port, 6379);
    assert_eq!(r.password.unwrap().expose(), b"hunter2-redis");
    assert_eq!(r.on_down.amo_replay, DownPolicy::Local);
    assert_eq!(r.on_down.refresh, DownPolicy::Refuse);
}

#[test]
fn every_problem_is_reported_in_one_run_without_a_secret() {
    let src = with(
        "[redis]\nurl = \"redis://cache.internal:6379\"\npassword = \"inline\"\nkey_prefix = \"{x}\"\ncommand_timeout = \"0s\"\nhashing_key = { env = \"SHORT_KEY\" }\nencryption_key = { env = \"MISSING_KEY\" }\nca_file = \"ca.pem\"\n[redis.on_redis_down]\nquotas = \"maybe\"\nbogus = \"local\"",
    );
    let e = errors(&src);
    for expected in [
        "redis.url: \"redis://cache.internal:6379\": plain redis:// is only allowed to loopback",
        "redis.password: secrets are never written inline",
        "redis.key_prefix: must be 1-64 printable ASCII characters",
        "redis.command_timeout: must be greater than zero",
        "redis.hashing_key: must be at least 32 bytes",
        "redis.encryption_key: environment variable MISSING_KEY is not set",
        "redis.ca_file:",
        "redis.on_redis_down.quotas: \"maybe\": must be \"local\" or \"refuse\"",
        "redis.on_redis_down.bogus: unknown field",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
    assert!(!e.contains("too-short"), "{e}");
}

#[test]
fn url_credentials_are_refused_without_being_echoed() {
    let src = with(&format!(
        "[redis]\nurl = \"redis://:hunter2@127.0.0.1\"\n{KEYS}"
    ));
    let e = errors(&src);
    assert!(
        e.contains("redis.url: credentials in the URL are not allowed"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
}

#[test]
fn the_two_keys_must_differ_and_are_required() {
    let same = with(
        "[redis]\nurl = \"redis://localhost\"\nhashing_key = { env = \"HASH_KEY\" }\nencryption_key = { env = \"HASH_KEY\" }",
    );
    assert!(errors(&same).contains("redis.encryption_key: must differ from redis.hashing_key"));
    let missing = errors(&with("[redis]\nurl = \"redis://localhost\""));
    assert!(missing.contains("missing field `hashing_key`"), "{missing}");
    assert!(
        missing.contains("missing field `encryption_key`"),
        "{missing}"
    );
}
