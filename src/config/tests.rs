//! Loader tests: defaults, error format and line numbers, and one small TOML string per rule.
//! Upstream, route and limit rules are in `tests_rules.rs`; TLS in `tests_tls.rs`.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::*;

/// A valid minimal file; tests append to it or replace parts of it.
pub(super) const BASE: &str = r#"
[[listeners]]
name = "sidecar"
addr = "127.0.0.1:8080"

[[upstreams]]
name = "profile"
url = "https://profile.accounts.firefox.com"

[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "profile"
"#;

pub(super) fn parse_in(src: &str, dir: &Path) -> Result<Config, ConfigErrors> {
    let env = |name: &str| (name == "FXA_TEST_KEY_SET").then(|| OsString::from("not a key"));
    parse_with_env(src, Path::new("gateway.toml"), dir, &env)
}

pub(super) fn parse(src: &str) -> Result<Config, ConfigErrors> {
    parse_in(src, Path::new("/nonexistent-config-dir"))
}

/// The `Display` lines of the errors (panics if the file was accepted).
pub(super) fn errors(src: &str) -> Vec<String> {
    match parse(src) {
        Ok(_) => panic!("config was accepted:\n{src}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

/// Asserts exactly one problem, which contains `expected`.
#[track_caller]
pub(super) fn assert_one_error(src: &str, expected: &str) {
    let errs = errors(src);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    assert!(
        errs[0].contains(expected),
        "{:?} does not contain {expected:?}",
        errs[0]
    );
}

pub(super) fn ok(src: &str) -> Config {
    parse(src).unwrap_or_else(|e| panic!("config rejected:\n{e}"))
}

#[test]
fn minimal_file_gets_documented_defaults() {
    let c = ok(BASE);
    assert_eq!(c.server.worker_threads, None);
    assert_eq!(c.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.server.log.format, LogFormat::Text);
    assert_eq!(c.server.log.level, "info");
    assert!(c.server.log.access_log);
    assert!(c.admin.is_none());
    let u = &c.upstreams[0];
    assert_eq!(u.url.to_string(), "https://profile.accounts.firefox.com/");
    assert_eq!(
        (u.connect_timeout, u.response_timeout),
        (Duration::from_secs(5), Duration::from_secs(30))
    );
    assert_eq!(
        (u.max_connections, u.pool_idle_timeout),
        (256, Duration::from_secs(90))
    );
    assert!(u.http2 && !u.ca_only && u.ca_pem.is_none());
    let r = &c.routes[0];
    assert!(r.strip_prefix && r.rewrite_errors && r.methods.is_none() && r.host.is_none());
    assert_eq!((r.upstream, r.auth.clone()), (0, AuthPolicy::None));
    let l = &c.limits;
    assert_eq!(
        (l.max_header_bytes, l.max_headers, l.max_body_bytes),
        (16 * 1024, 100, 1 << 20)
    );
    assert_eq!(l.header_read_timeout, Duration::from_secs(10));
    assert_eq!(l.idle_timeout, Duration::from_secs(60));
    assert_eq!(l.tls_handshake_timeout, Duration::from_secs(10));
    assert_eq!(
        (l.max_connections, l.h2_max_concurrent_streams),
        (10_000, 100)
    );
    assert_eq!(
        (l.h2_max_header_list_size, l.max_error_body_bytes),
        (16 * 1024, 64 * 1024)
    );
    assert!(c.trusted_proxies.is_empty());
    assert!(!c.listeners[0].allow_plain_non_loopback && c.listeners[0].tls.is_none());
}

#[test]
fn error_names_file_line_key_and_problem() {
    let src = BASE.replace(r#"upstream = "profile""#, r#"upstream = "profle""#);
    assert_eq!(
        errors(&src),
        [r#"gateway.toml:13: routes[0].upstream: unknown upstream "profle" (defined: "profile")"#]
    );
}

#[test]
fn syntax_error_reports_its_line() {
    let errs = errors("[server]\ndrain_timeout = \"30s\"\nworker_threads = = 2\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("gateway.toml:3: TOML syntax error"),
        "{errs:?}"
    );
}

#[test]
fn all_problems_are_reported_with_their_lines() {
    let src = format!(
        "{BASE}\n[server]\ndrain_timeout = 30\nbogus = true\nworker_threads = \"two\"\n\
         [limits]\nmax_body_bytes = \"1 MiB\"\n\n[frobnicate]\nx = 1\n"
    );
    let errs = errors(&src);
    assert_eq!(
        errs.iter()
            .map(|e| e.split(": ").take(2).collect::<Vec<_>>().join(": "))
            .collect::<Vec<_>>(),
        [
            "gateway.toml:16: server.drain_timeout",
            "gateway.toml:17: server.bogus",
            "gateway.toml:18: server.worker_threads",
            "gateway.toml:20: limits.max_body_bytes",
            "gateway.toml:22: frobnicate",
        ]
    );
    assert!(errs[0].contains(r#"write "30s""#), "{}", errs[0]);
    assert!(errs[1].contains("unknown field `bogus`"), "{}", errs[1]);
}

#[test]
fn unknown_keys_are_rejected_everywhere() {
    assert_one_error(
        &format!("{BASE}\n[server.log]\ncolour = true\n"),
        "server.log.colour",
    );
    assert_one_error(
        &format!("{BASE}\n[admin]\naddr = \"127.0.0.1:1\"\nport = 2\n"),
        "admin.port",
    );
    let src = BASE.replace(
        "path_prefix = \"/profile\"",
        "path_prefix = \"/profile\"\nprefix = 1",
    );
    assert_one_error(&src, "gateway.toml:13: routes[0].prefix: unknown field");
}

#[test]
fn missing_required_key_points_at_its_table() {
    let src = BASE.replace("upstream = \"profile\"\n", "");
    assert_eq!(
        errors(&src),
        ["gateway.toml:10: routes[0]: missing field `upstream`"]
    );
}

#[test]
fn bad_element_does_not_hide_the_next_one() {
    let src = format!(
        "{BASE}\n[[routes]]\nname = 7\npath_prefix = \"/a\"\nupstream = \"profile\"\n\
         [[routes]]\nname = \"b\"\npath_prefix = \"b\"\nupstream = \"nope\"\n"
    );
    let errs = errors(&src);
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs[0].starts_with("gateway.toml:16: routes[1].name: invalid type"),
        "{errs:#?}"
    );
    assert!(
        errs[1].starts_with("gateway.toml:21: routes[2].path_prefix"),
        "{errs:#?}"
    );
    assert!(errs[2].starts_with("gateway.toml:22: routes[2].upstream: unknown upstream \"nope\""));
}

#[test]
fn unreadable_file_is_reported_without_a_line() {
    let e = load(Path::new("/nonexistent/gateway.toml")).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert!(
        e.to_string().starts_with("/nonexistent/gateway.toml: "),
        "{e}"
    );
}

#[test]
fn server_settings_are_checked() {
    let c = ok(&format!(
        "{BASE}\n[server]\nworker_threads = 4\ndrain_timeout = \"0s\"\n[server.log]\n\
         format = \"json\"\nlevel = \"fxa_gateway=debug,info\"\naccess_log = false\n"
    ));
    assert_eq!(c.server.worker_threads, Some(4));
    assert_eq!(c.server.drain_timeout, Duration::ZERO);
    assert_eq!(c.server.log.format, LogFormat::Json);
    assert!(!c.server.log.access_log);
    assert_one_error(
        &format!("{BASE}\n[server]\nworker_threads = 0\n"),
        "server.worker_threads",
    );
    assert_one_error(
        &format!("{BASE}\n[server.log]\nformat = \"xml\"\n"),
        "unknown variant `xml`",
    );
    assert_one_error(
        &format!("{BASE}\n[server.log]\nlevel = \"[[[\"\n"),
        "invalid log filter",
    );
}

#[test]
fn at_least_one_listener_and_unique_names_and_addresses() {
    let no_listener = BASE.replace(
        "[[listeners]]\nname = \"sidecar\"\naddr = \"127.0.0.1:8080\"\n",
        "",
    );
    assert_one_error(&no_listener, "at least one [[listeners]] is required");
    let dup = format!("{BASE}\n[[listeners]]\nname = \"sidecar\"\naddr = \"127.0.0.1:8080\"\n");
    let errs = errors(&dup);
    assert!(
        errs[0].contains("listeners[1].name: duplicate listener name"),
        "{errs:#?}"
    );
    assert!(
        errs[1].contains("listeners[1].addr: 127.0.0.1:8080 is used by another"),
        "{errs:#?}"
    );
    let port0 =
        BASE.replace("8080", "0") + "\n[[listeners]]\nname = \"b\"\naddr = \"127.0.0.1:0\"\n";
    assert_eq!(ok(&port0).listeners.len(), 2);
    assert_one_error(
        &BASE.replace("127.0.0.1:8080", "localhost:8080"),
        "is not an IP:port",
    );
    assert_one_error(
        &BASE.replace("name = \"sidecar\"", "name = \"side car\""),
        "not a valid name",
    );
}

#[test]
fn plain_listener_off_loopback_needs_opt_in() {
    let public = BASE.replace("127.0.0.1:8080", "0.0.0.0:8080");
    assert_one_error(
        &public,
        "listeners[0].addr: plain HTTP on non-loopback address 0.0.0.0:8080",
    );
    let opted = public.replace("addr = ", "allow_plain_non_loopback = true\naddr = ");
    assert!(ok(&opted).listeners[0].allow_plain_non_loopback);
    assert!(parse(&BASE.replace("127.0.0.1:8080", "[::1]:8080")).is_ok());
}

#[test]
fn admin_listener() {
    let c = ok(&format!("{BASE}\n[admin]\naddr = \"127.0.0.1:8081\"\n"));
    assert_eq!(c.admin.map(|a| a.addr.port()), Some(8081));
    assert_one_error(
        &format!("{BASE}\n[admin]\naddr = \"127.0.0.1:8080\"\n"),
        "also a listener",
    );
    assert_one_error(&format!("{BASE}\n[admin]\naddr = \"nope\"\n"), "admin.addr");
}
