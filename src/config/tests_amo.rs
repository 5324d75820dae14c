//! One small TOML string per AMO rule: `[[amo_credentials]]`, `[[amo_issuers]]`,
//! `[amo_verify]`, and the options of the `amo-jwt` / `amo-jwt-verify` route auth policies.
//!
//! The environment is injected (never the process one): `AMO_API_SECRET` and
//! `AMO_OTHER_SECRET` are set to [`SECRET_VALUE`], `AMO_EMPTY` is empty, everything else is
//! unset. Every rejected file is also checked not to print [`SECRET_VALUE`].

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::tests::BASE;
use super::*;
use crate::auth::policy::AuthRuntime;

const SECRET_VALUE: &str = "amo-secret-do-not-print";

fn env(name: &str) -> Option<OsString> {
    match name {
        "AMO_API_SECRET" | "AMO_OTHER_SECRET" => Some(OsString::from(SECRET_VALUE)),
        "AMO_EMPTY" => Some(OsString::new()),
        _ => None,
    }
}

fn parse_in(src: &str, dir: &Path) -> Result<Config, ConfigErrors> {
    parse_with_env(src, Path::new("gateway.toml"), dir, &env)
}

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    parse_in(src, Path::new("/nonexistent-config-dir"))
}

/// The `Display` lines of the errors (panics if the file was accepted or a secret leaked).
#[track_caller]
fn errors(src: &str) -> Vec<String> {
    match parse(src) {
        Ok(_) => panic!("config was accepted:\n{src}"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains(SECRET_VALUE), "secret printed:\n{text}");
            text.lines().map(str::to_owned).collect()
        }
    }
}

/// Asserts exactly one problem, which contains `expected`.
#[track_caller]
fn assert_one_error(src: &str, expected: &str) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}\n{src}");
    assert!(
        errs[0].contains(expected),
        "{:?} does not contain {expected:?}",
        errs[0]
    );
}

#[track_caller]
fn ok(src: &str) -> Config {
    parse(src).unwrap_or_else(|e| panic!("config rejected:\n{e}\n{src}"))
}

/// BASE's route with `auth = <auth>` (line 14), then `extra`.
fn with_auth(auth: &str, extra: &str) -> String {
    format!("{BASE}auth = {auth}\n{extra}")
}

/// One credential; with an `auth` line before it, its keys are on lines 16-19 and a key
/// appended right after it on line 20.
const CRED: &str = r#"
[[amo_credentials]]
name = "default"
api_key = "user:12345:67"
secret = { env = "AMO_API_SECRET" }
"#;

const JWT: &str = r#"{ policy = "amo-jwt", credential = "default" }"#;
const VERIFY: &str = r#"{ policy = "amo-jwt-verify" }"#;

/// An amo-jwt route signing with `default`, whose credential gets `kv` (line 20).
fn cred_with(kv: &str) -> String {
    with_auth(JWT, &format!("{CRED}{kv}\n"))
}

/// Like [`cred_with`] but the route does not use the credential (`auth = "none"`, same lines):
/// for keys that fail to deserialize, which currently also make a route naming the credential
/// report it unknown (see `broken_credential_is_not_reported_again_by_its_route`).
fn unused_cred_with(kv: &str) -> String {
    with_auth("\"none\"", &format!("{CRED}{kv}\n"))
}

fn issuer(api_key: &str, extra: &str) -> String {
    format!(
        "\n[[amo_issuers]]\napi_key = \"{api_key}\"\nsecret = {{ env = \"AMO_OTHER_SECRET\" }}\n{extra}"
    )
}

// === [[amo_credentials]] ===

#[test]
fn credential_gets_documented_defaults() {
    let c = ok(&cred_with(""));
    let cred = &c.amo_credentials[0];
    assert_eq!(
        (cred.name.as_str(), cred.api_key.as_str()),
        ("default", "user:12345:67")
    );
    assert_eq!(cred.secret.expose(), SECRET_VALUE.as_bytes());
    assert_eq!(cred.lifetime, Duration::from_secs(60));
    assert_eq!(cred.clock_offset_seconds, 0);
    assert!(cred.selectable_from_listeners.is_empty() && cred.selectable_from_peers.is_empty());
    assert_eq!(
        c.routes[0].auth,
        AuthPolicy::AmoJwt {
            credential: Some(0),
            header_selection: false
        }
    );
    assert!(c.amo_issuers.is_empty());
    assert_eq!(c.amo_verify.leeway, Duration::from_secs(5));
    assert_eq!(c.amo_verify.replay_cache_size, 100_000);
    assert!(
        !format!("{c:?}").contains(SECRET_VALUE),
        "Debug shows the secret"
    );
    // A file without any AMO section has none of them, and the same verify defaults.
    let plain = ok(BASE);
    assert!(plain.amo_credentials.is_empty() && plain.amo_issuers.is_empty());
    assert_eq!(plain.amo_verify.leeway, Duration::from_secs(5));
}

#[test]
fn env_secret_must_be_set_and_non_empty_and_is_named_not_printed() {
    let src = |var: &str| cred_with("").replace("AMO_API_SECRET", var);
    assert_eq!(
        errors(&src("AMO_UNSET_SECRET")),
        [
            "gateway.toml:19: amo_credentials[0].secret: environment variable AMO_UNSET_SECRET is not set"
        ]
    );
    assert_eq!(
        errors(&src("AMO_EMPTY")),
        ["gateway.toml:19: amo_credentials[0].secret: environment variable AMO_EMPTY is empty"]
    );
    assert_one_error(&src("A=B"), "is not a valid environment variable name");
    // The variable is set, another key is wrong: the value still appears nowhere (`errors`
    // checks every rejected file for it).
    assert_one_error(&cred_with("lifetime = \"301s\""), "lifetime");
}

#[test]
fn file_secret_is_read_relative_to_the_config_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("amo.secret"), "s3cret-from-file\n").expect("write secret");
    let src = cred_with("").replace(
        r#"{ env = "AMO_API_SECRET" }"#,
        r#"{ file = "amo.secret" }"#,
    );
    let c = parse_in(&src, dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.amo_credentials[0].secret.expose(), b"s3cret-from-file");
    let missing = parse_in(&src.replace("amo.secret", "nope.secret"), dir.path())
        .expect_err("missing secret file accepted")
        .to_string();
    assert!(
        missing.starts_with("gateway.toml:19: amo_credentials[0].secret: cannot read file ")
            && missing.contains("nope.secret"),
        "{missing}"
    );
    std::fs::write(dir.path().join("empty.secret"), "\n").expect("write empty");
    let empty = parse_in(&src.replace("amo.secret", "empty.secret"), dir.path())
        .expect_err("empty secret file accepted")
        .to_string();
    assert!(empty.ends_with("empty.secret is empty"), "{empty}");
}

#[test]
fn inline_or_ambiguous_secret_is_rejected_without_echoing_it() {
    let inline = cred_with("").replace(
        r#"{ env = "AMO_API_SECRET" }"#,
        &format!("\"{SECRET_VALUE}\""),
    );
    let errs = errors(&inline);
    assert!(
        errs.iter().any(|e| e
            == "gateway.toml:19: amo_credentials[0].secret: secrets are never written inline: \
                use { file = \"path\" } or { env = \"VARIABLE\" }"),
        "{errs:#?}"
    );
    let both = cred_with("").replace(
        r#"{ env = "AMO_API_SECRET" }"#,
        r#"{ env = "AMO_API_SECRET", file = "x" }"#,
    );
    assert!(
        errors(&both)
            .iter()
            .any(|e| e.contains("amo_credentials[0].secret: give exactly one of")),
        "{both}"
    );
    let missing = cred_with("").replace("secret = { env = \"AMO_API_SECRET\" }\n", "");
    assert!(
        errors(&missing)
            .iter()
            .any(|e| e == "gateway.toml:16: amo_credentials[0]: missing field `secret`"),
        "{missing}"
    );
}

#[test]
fn lifetime_is_whole_seconds_up_to_300() {
    let lifetime = |v: &str| cred_with(&format!("lifetime = {v}"));
    for (v, secs) in [
        ("\"300s\"", 300),
        ("\"5m\"", 300),
        ("\"1s\"", 1),
        ("\"90s\"", 90),
    ] {
        assert_eq!(
            ok(&lifetime(v)).amo_credentials[0].lifetime,
            Duration::from_secs(secs),
            "{v}"
        );
    }
    let over = "gateway.toml:20: amo_credentials[0].lifetime: must be whole seconds between \
                \"1s\" and \"300s\" (AMO refuses longer tokens)";
    for v in [
        "\"301s\"",
        "\"5m1s\"",
        "\"1h\"",
        "\"0s\"",
        "\"1500ms\"",
        "\"300001ms\"",
    ] {
        assert_eq!(errors(&lifetime(v)), [over], "{v}");
    }
    assert_one_error(
        &unused_cred_with(&format!("lifetime = {}", "\"1.5s\"")),
        "amo_credentials[0].lifetime: invalid duration \"1.5s\" (whole numbers only)",
    );
    assert_one_error(
        &unused_cred_with(&format!("lifetime = {}", "60")),
        r#"write "60s" or "60ms", not 60"#,
    );
    assert_one_error(
        &unused_cred_with(&format!("lifetime = {}", "\"-60s\"")),
        "negative duration",
    );
}

#[test]
fn clock_offset_is_within_an_hour() {
    let offset = |v: &str| cred_with(&format!("clock_offset_seconds = {v}"));
    for v in [3600, -3600, 0, -5, 42] {
        assert_eq!(
            ok(&offset(&v.to_string())).amo_credentials[0].clock_offset_seconds,
            v
        );
    }
    for v in [
        "3601",
        "-3601",
        "-9223372036854775808",
        "9223372036854775807",
    ] {
        assert_eq!(
            errors(&offset(v)),
            [
                "gateway.toml:20: amo_credentials[0].clock_offset_seconds: must be within ±3600 seconds"
            ],
            "{v}"
        );
    }
    assert_one_error(
        &unused_cred_with(&format!("clock_offset_seconds = {}", "1.5")),
        "amo_credentials[0].clock_offset_seconds",
    );
    assert_one_error(
        &unused_cred_with(&format!("clock_offset_seconds = {}", "\"5s\"")),
        "amo_credentials[0].clock_offset_seconds",
    );
}

#[test]
fn selectable_from_listeners_must_name_listeners() {
    let c = ok(&cred_with("selectable_from_listeners = [\"sidecar\"]"));
    assert_eq!(c.amo_credentials[0].selectable_from_listeners, ["sidecar"]);
    assert_eq!(
        errors(&cred_with(
            "selectable_from_listeners = [\"sidecar\", \"edge\"]"
        )),
        [
            "gateway.toml:20: amo_credentials[0].selectable_from_listeners[1]: unknown listener \"edge\""
        ]
    );
    // A listener whose name could not be read may be the one meant: only its own problem.
    let broken = format!(
        "{}\n[[listeners]]\nname = 7\naddr = \"127.0.0.1:8082\"\n",
        cred_with("selectable_from_listeners = [\"edge\"]")
    );
    assert_one_error(&broken, "listeners[1].name: invalid type");
    assert_one_error(
        &unused_cred_with("selectable_from_listeners = \"sidecar\""),
        "amo_credentials[0].selectable_from_listeners: invalid type",
    );
}

#[test]
fn selectable_from_peers_are_networks() {
    let c = ok(&cred_with(
        "selectable_from_peers = [\"127.0.0.1\", \"10.0.0.0/8\", \"::1/128\"]",
    ));
    let peers = &c.amo_credentials[0].selectable_from_peers;
    assert_eq!(peers.len(), 3);
    assert!(peers[1].contains("10.1.2.3".parse().expect("ip")));
    assert!(peers[0].contains("127.0.0.1".parse().expect("ip")));
    assert!(!peers[0].contains("127.0.0.2".parse().expect("ip")));
    assert_eq!(
        errors(&cred_with(
            "selectable_from_peers = [\"10.0.0.0/8\", \"10.0.0.1/8\", \"nope\", \"10.0.0.0/33\"]"
        )),
        [
            "gateway.toml:20: amo_credentials[0].selectable_from_peers[1]: \"10.0.0.1/8\" has host bits set; did you mean \"10.0.0.0/8\"?",
            "gateway.toml:20: amo_credentials[0].selectable_from_peers[2]: \"nope\" is not an IP address or CIDR network (e.g. \"10.0.0.0/8\")",
            "gateway.toml:20: amo_credentials[0].selectable_from_peers[3]: \"10.0.0.0/33\": prefix length must be 0..=32",
        ]
    );
}

#[test]
fn credential_names_and_api_keys() {
    let second = CRED.replace("AMO_API_SECRET", "AMO_OTHER_SECRET");
    assert_eq!(
        errors(&with_auth(JWT, &format!("{CRED}{second}"))),
        ["gateway.toml:22: amo_credentials[1].name: duplicate credential name \"default\""]
    );
    let two = ok(&with_auth(
        JWT,
        &format!("{CRED}{}", second.replace("\"default\"", "\"other\"")),
    ));
    assert_eq!(two.amo_credentials.len(), 2);
    assert_one_error(
        &with_auth(
            r#"{ policy = "amo-jwt", credential = "de fault" }"#,
            &CRED.replace("\"default\"", "\"de fault\""),
        ),
        "amo_credentials[0].name: \"de fault\" is not a valid name",
    );
    for bad in ["", "user 1", "user:\u{e9}"] {
        assert_one_error(
            &cred_with("").replace("user:12345:67", bad),
            "gateway.toml:18: amo_credentials[0].api_key: must be 1-256 printable ASCII characters",
        );
    }
    assert_one_error(
        &cred_with("").replace("user:12345:67", &"k".repeat(257)),
        "amo_credentials[0].api_key",
    );
    assert_one_error(
        &unused_cred_with("colour = \"blue\""),
        "gateway.toml:20: amo_credentials[0].colour: unknown field `colour`",
    );
    assert_one_error(
        &format!("{BASE}\n[amo_credentials]\nname = \"x\"\n"),
        "amo_credentials: expected an array of tables, written [[amo_credentials]]",
    );
}

// === auth = { policy = "amo-jwt", ... } ===

#[test]
fn amo_jwt_credential_must_exist() {
    assert_eq!(
        errors(&with_auth(
            r#"{ policy = "amo-jwt", credential = "x" }"#,
            CRED
        )),
        [
            "gateway.toml:14: routes[0].auth.credential: unknown AMO credential \"x\" (defined: \"default\")"
        ]
    );
    assert_eq!(
        errors(&with_auth(JWT, "")),
        [
            "gateway.toml:14: routes[0].auth.credential: unknown AMO credential \"default\" (defined: none)"
        ]
    );
    // The second of two credentials is found by name.
    let two = format!(
        "{CRED}{}",
        CRED.replace("\"default\"", "\"other\"")
            .replace("AMO_API_SECRET", "AMO_OTHER_SECRET")
    );
    let c = ok(&with_auth(
        r#"{ policy = "amo-jwt", credential = "other" }"#,
        &two,
    ));
    assert_eq!(
        c.routes[0].auth,
        AuthPolicy::AmoJwt {
            credential: Some(1),
            header_selection: false
        }
    );
}

#[test]
fn amo_jwt_needs_a_credential_or_header_selection() {
    let needs =
        "gateway.toml:14: routes[0].auth: amo-jwt needs a credential, or header_selection = true";
    for auth in [
        r#"{ policy = "amo-jwt" }"#,
        r#""amo-jwt""#,
        r#"{ policy = "amo-jwt", header_selection = false }"#,
    ] {
        assert_eq!(errors(&with_auth(auth, CRED)), [needs], "{auth}");
    }
    let selected = ok(&with_auth(
        r#"{ policy = "amo-jwt", header_selection = true }"#,
        &format!("{CRED}selectable_from_listeners = [\"sidecar\"]\n"),
    ));
    assert_eq!(
        selected.routes[0].auth,
        AuthPolicy::AmoJwt {
            credential: None,
            header_selection: true
        }
    );
    let both = ok(&with_auth(
        r#"{ policy = "amo-jwt", credential = "default", header_selection = true }"#,
        CRED,
    ));
    assert_eq!(
        both.routes[0].auth,
        AuthPolicy::AmoJwt {
            credential: Some(0),
            header_selection: true
        }
    );
    assert_one_error(
        &with_auth(r#"{ policy = "amo-jwt", header_selection = "yes" }"#, CRED),
        "routes[0].auth.header_selection: invalid type",
    );
}

#[test]
fn options_of_another_policy_are_rejected() {
    let issuers = issuer("user:12345:67", "");
    for (auth, expected) in [
        (
            r#"{ policy = "amo-jwt", credential = "default", issuers = ["user:12345:67"] }"#,
            "gateway.toml:14: routes[0].auth.issuers: not an option of auth policy \"amo-jwt\"",
        ),
        (
            r#"{ policy = "none", credential = "default" }"#,
            "gateway.toml:14: routes[0].auth.credential: not an option of auth policy \"none\"",
        ),
        (
            r#"{ policy = "none", issuers = [] }"#,
            "gateway.toml:14: routes[0].auth.issuers: not an option of auth policy \"none\"",
        ),
        (
            r#"{ policy = "amo-jwt-verify", credential = "default" }"#,
            "gateway.toml:14: routes[0].auth.credential: not an option of auth policy \"amo-jwt-verify\"",
        ),
    ] {
        assert_eq!(
            errors(&with_auth(auth, &format!("{CRED}{issuers}"))),
            [expected],
            "{auth}"
        );
    }
    // header_selection belongs to amo-jwt only (even `false` is refused elsewhere).
    for auth in [
        r#"{ policy = "none", header_selection = false }"#,
        r#"{ policy = "amo-jwt-verify", header_selection = true }"#,
    ] {
        let errs = errors(&with_auth(auth, &format!("{CRED}{issuers}")));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert!(
            errs[0].starts_with("gateway.toml:14: routes[0].auth.")
                && errs[0].contains("not an option of auth policy"),
            "{errs:#?}"
        );
    }
}

/// `header_selection` on a policy without it is reported at its own key.
#[test]
fn misplaced_header_selection_is_reported_at_its_own_key() {
    let issuers = issuer("user:12345:67", "");
    for (auth, policy) in [
        (r#"{ policy = "none", header_selection = false }"#, "none"),
        (
            r#"{ policy = "amo-jwt-verify", header_selection = true }"#,
            "amo-jwt-verify",
        ),
    ] {
        assert_eq!(
            errors(&with_auth(auth, &format!("{CRED}{issuers}"))),
            [format!(
                "gateway.toml:14: routes[0].auth.header_selection: not an option of auth policy \"{policy}\""
            )]
        );
    }
}

/// A credential whose element failed to deserialize (here: inline secret) is reported once,
/// not again by the route naming it.
#[test]
fn broken_credential_is_not_reported_again_by_its_route() {
    let inline = cred_with("").replace(r#"{ env = "AMO_API_SECRET" }"#, "\"inline\"");
    assert_one_error(
        &inline,
        "amo_credentials[0].secret: secrets are never written inline",
    );
    let broken_issuer = with_auth(
        r#"{ policy = "amo-jwt-verify", issuers = ["k"] }"#,
        &issuer("k", "require_jti = \"no\"\n"),
    );
    assert_one_error(&broken_issuer, "amo_issuers[0].require_jti: invalid type");
}

// === auth = { policy = "amo-jwt-verify", ... } and [[amo_issuers]] ===

#[test]
fn amo_jwt_verify_needs_issuers() {
    let none = "gateway.toml:14: routes[0].auth: amo-jwt-verify needs at least one [[amo_issuers]]";
    assert_eq!(errors(&with_auth(VERIFY, "")), [none]);
    assert_eq!(errors(&with_auth(r#""amo-jwt-verify""#, "")), [none]);
    // An explicitly empty allowlist accepts nobody either.
    let empty = errors(&with_auth(
        r#"{ policy = "amo-jwt-verify", issuers = [] }"#,
        &issuer("a", ""),
    ));
    assert_eq!(empty.len(), 1, "{empty:#?}");
    assert!(
        empty[0].starts_with("gateway.toml:14: routes[0].auth"),
        "{empty:#?}"
    );
}

#[test]
fn amo_jwt_verify_accepts_all_issuers_or_an_allowlist() {
    let two = format!(
        "{}{}",
        issuer("a", ""),
        issuer("b", "require_jti = false\n")
    );
    let all = ok(&with_auth(VERIFY, &two));
    assert_eq!(
        all.routes[0].auth,
        AuthPolicy::AmoJwtVerify {
            issuers: vec![0, 1]
        }
    );
    assert_eq!(all.amo_issuers[0].api_key, "a");
    assert_eq!(all.amo_issuers[0].secret.expose(), SECRET_VALUE.as_bytes());
    assert!(
        all.amo_issuers[0].require_jti,
        "require_jti defaults to true"
    );
    assert!(!all.amo_issuers[1].require_jti);
    let only_b = ok(&with_auth(
        r#"{ policy = "amo-jwt-verify", issuers = ["b"] }"#,
        &two,
    ));
    assert_eq!(
        only_b.routes[0].auth,
        AuthPolicy::AmoJwtVerify { issuers: vec![1] }
    );
    assert_eq!(
        errors(&with_auth(
            r#"{ policy = "amo-jwt-verify", issuers = ["b", "c"] }"#,
            &two
        )),
        [
            "gateway.toml:14: routes[0].auth.issuers: unknown AMO issuer \"c\" (defined: \"a\", \"b\")"
        ]
    );
    assert_one_error(
        &with_auth(r#"{ policy = "amo-jwt-verify", issuers = "b" }"#, &two),
        "routes[0].auth.issuers: invalid type",
    );
}

#[test]
fn issuer_rules() {
    // BASE + auth line + issuer: [[amo_issuers]] on line 16, api_key 17, secret 18, extra 19.
    let one = |extra: &str| with_auth(VERIFY, &issuer("user:1:2", extra));
    assert_eq!(
        errors(&one("").replace("AMO_OTHER_SECRET", "AMO_UNSET")),
        ["gateway.toml:18: amo_issuers[0].secret: environment variable AMO_UNSET is not set"]
    );
    assert_one_error(
        &one("").replace("{ env = \"AMO_OTHER_SECRET\" }", "\"inline\""),
        "gateway.toml:18: amo_issuers[0].secret: secrets are never written inline",
    );
    assert_eq!(
        errors(&one("").replace("user:1:2", "user 1")),
        [
            "gateway.toml:17: amo_issuers[0].api_key: must be 1-256 printable ASCII characters (AMO's \"JWT issuer\", e.g. \"user:12345:67\")"
        ]
    );
    assert_one_error(
        &one("name = \"x\""),
        "gateway.toml:19: amo_issuers[0].name: unknown field `name`",
    );
    assert_one_error(
        &one("require_jti = 1"),
        "amo_issuers[0].require_jti: invalid type",
    );
    let dup = format!("{}{}", one(""), issuer("user:1:2", ""));
    assert_eq!(
        errors(&dup),
        ["gateway.toml:21: amo_issuers[1].api_key: duplicate issuer \"user:1:2\""]
    );
}

// === [amo_verify] ===

#[test]
fn amo_verify_settings() {
    let verify = |kv: &str| format!("{BASE}\n[amo_verify]\n{kv}\n");
    let c = ok(&verify("leeway = \"60s\"\nreplay_cache_size = 1"));
    assert_eq!(c.amo_verify.leeway, Duration::from_secs(60));
    assert_eq!(c.amo_verify.replay_cache_size, 1);
    assert_eq!(
        ok(&verify("leeway = \"0s\"")).amo_verify.leeway,
        Duration::ZERO
    );
    assert_eq!(
        ok(&verify("replay_cache_size = 5000")).amo_verify.leeway,
        Duration::from_secs(5)
    );
    let leeway = "gateway.toml:16: amo_verify.leeway: must be whole seconds, at most \"60s\"";
    for v in ["\"61s\"", "\"1m1s\"", "\"1500ms\""] {
        assert_eq!(errors(&verify(&format!("leeway = {v}"))), [leeway], "{v}");
    }
    assert_eq!(
        errors(&verify("replay_cache_size = 0")),
        ["gateway.toml:16: amo_verify.replay_cache_size: must be at least 1"]
    );
    assert_one_error(
        &verify("replay_cache_size = -1"),
        "amo_verify.replay_cache_size",
    );
    assert_one_error(&verify("leeway = 5"), "needs a unit");
    assert_one_error(
        &verify("max_lifetime = \"300s\""),
        "gateway.toml:16: amo_verify.max_lifetime: unknown field `max_lifetime`",
    );
}

// === auth table shape, lines, and everything at once ===

#[test]
fn unknown_or_missing_keys_in_the_auth_table() {
    assert_eq!(
        errors(&with_auth(
            r#"{ policy = "amo-jwt", credential = "default", colour = 1 }"#,
            CRED
        )),
        [
            "gateway.toml:14: routes[0].auth.colour: unknown field `colour`, expected one of `policy`, `credential`, `header_selection`, `issuers`, `preset`, `scopes`, `endpoints`, `identity_headers`"
        ]
    );
    assert_eq!(
        errors(&with_auth(r#"{ credential = "default" }"#, CRED)),
        ["gateway.toml:14: routes[0].auth: missing field `policy`"]
    );
    assert_one_error(
        &with_auth(r#"{ policy = "amo-jwt-mint" }"#, CRED),
        "routes[0].auth: unknown auth policy \"amo-jwt-mint\"",
    );
}

#[test]
fn auth_as_a_sub_table_reports_the_lines_of_its_keys() {
    let src = format!(
        "{BASE}[routes.auth]\npolicy = \"amo-jwt\"\ncredential = \"nope\"\nheader_selection = true\n{CRED}"
    );
    assert_eq!(
        errors(&src),
        [
            "gateway.toml:16: routes[0].auth.credential: unknown AMO credential \"nope\" (defined: \"default\")"
        ]
    );
    let c = ok(&src.replace("\"nope\"", "\"default\""));
    assert_eq!(
        c.routes[0].auth,
        AuthPolicy::AmoJwt {
            credential: Some(0),
            header_selection: true
        }
    );
    // The unknown key does not hide the policy's own problem (no [[amo_issuers]]).
    let unknown = format!("{BASE}[routes.auth]\npolicy = \"amo-jwt-verify\"\nscope = \"x\"\n");
    let errs = errors(&unknown);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("gateway.toml:14: routes[0].auth: amo-jwt-verify needs at least one"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("gateway.toml:16: routes[0].auth.scope: unknown field `scope`"),
        "{errs:#?}"
    );
}

#[test]
fn all_amo_problems_are_reported_with_their_lines() {
    let src = format!(
        "{BASE}auth = {{ policy = \"amo-jwt\", credential = \"missing\" }}\n\
         \n\
         [[routes]]\n\
         name = \"verify\"\n\
         path_prefix = \"/verify\"\n\
         upstream = \"profile\"\n\
         auth = {{ policy = \"amo-jwt-verify\", issuers = [\"nobody\"] }}\n\
         \n\
         [[amo_credentials]]\n\
         name = \"default\"\n\
         api_key = \"user:12345:67\"\n\
         secret = {{ env = \"AMO_UNSET\" }}\n\
         lifetime = \"301s\"\n\
         clock_offset_seconds = 7200\n\
         selectable_from_listeners = [\"edge\"]\n\
         selectable_from_peers = [\"10.0.0.1/8\"]\n\
         \n\
         [[amo_issuers]]\n\
         api_key = \"user:1:2\"\n\
         secret = {{ env = \"AMO_API_SECRET\" }}\n\
         require_jti = false\n\
         \n\
         [amo_verify]\n\
         leeway = \"2m\"\n\
         replay_cache_size = 0\n"
    );
    let errs = errors(&src);
    let located: Vec<String> = errs
        .iter()
        .map(|e| e.split(": ").take(2).collect::<Vec<_>>().join(": "))
        .collect();
    assert_eq!(
        located,
        [
            "gateway.toml:14: routes[0].auth.credential",
            "gateway.toml:20: routes[1].auth.issuers",
            "gateway.toml:25: amo_credentials[0].secret",
            "gateway.toml:26: amo_credentials[0].lifetime",
            "gateway.toml:27: amo_credentials[0].clock_offset_seconds",
            "gateway.toml:28: amo_credentials[0].selectable_from_listeners[0]",
            "gateway.toml:29: amo_credentials[0].selectable_from_peers[0]",
            "gateway.toml:37: amo_verify.leeway",
            "gateway.toml:38: amo_verify.replay_cache_size",
        ],
        "{errs:#?}"
    );
    assert!(
        errs[2].ends_with("environment variable AMO_UNSET is not set"),
        "{errs:#?}"
    );
}

/// What the loader accepts at its bounds, the runtime accepts too: a config that passes
/// `--check` must not fail when the gateway builds its signers and verifier.
#[test]
fn configs_accepted_at_the_bounds_build_the_auth_runtime() {
    let src = with_auth(
        r#"{ policy = "amo-jwt", credential = "default", header_selection = true }"#,
        &format!(
            "{CRED}lifetime = \"300s\"\nclock_offset_seconds = -3600\n\
             selectable_from_listeners = [\"sidecar\"]\nselectable_from_peers = [\"0.0.0.0/0\"]\n\
             {}{}\n[amo_verify]\nleeway = \"60s\"\nreplay_cache_size = 1\n",
            CRED.replace("\"default\"", "\"short\"")
                .replace("AMO_API_SECRET", "AMO_OTHER_SECRET")
                + "lifetime = \"1s\"\nclock_offset_seconds = 3600\n",
            issuer(&"k".repeat(256), "require_jti = false\n"),
        ),
    );
    let c = ok(&src);
    assert_eq!(c.amo_credentials.len(), 2);
    if let Err(e) = runtime(&c) {
        panic!("the runtime refused a config the loader accepted: {e:#}");
    }
    let minimal = ok(&with_auth(VERIFY, &issuer("user:1:2", "")));
    if let Err(e) = runtime(&minimal) {
        panic!("the runtime refused a config the loader accepted: {e:#}");
    }
}

/// The auth runtime a config builds (no bearer routes here, so no upstreams are needed).
fn runtime(c: &crate::config::Config) -> anyhow::Result<AuthRuntime> {
    let gate = std::sync::Arc::new(crate::backoff::BackoffGate::new(Default::default()));
    let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::clock::SystemClock);
    AuthRuntime::new(c, &[], &gate, &clock)
}
