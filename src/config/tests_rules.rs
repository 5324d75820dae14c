//! One small TOML string per upstream, route, limit and trusted-proxy rule.

use std::time::{Duration, UNIX_EPOCH};

use super::tests::{BASE, assert_one_error, errors, ok, parse};
use super::*;

#[test]
fn upstream_urls() {
    let with_url = |url: &str| BASE.replace("https://profile.accounts.firefox.com", url);
    let c = ok(&with_url("https://addons.mozilla.org/api/"));
    assert_eq!(
        c.upstreams[0].url.to_string(),
        "https://addons.mozilla.org/api"
    );
    assert_eq!(c.upstreams[0].url.path(), "/api");
    for loopback in [
        "http://127.0.0.1:9000",
        "http://localhost:9000/x",
        "http://[::1]:9000",
        "http://127.3.2.1",
    ] {
        assert!(parse(&with_url(loopback)).is_ok(), "{loopback}");
    }
    for (url, why) in [
        (
            "http://profile.accounts.firefox.com",
            "only allowed to loopback",
        ),
        ("http://10.0.0.1", "only allowed to loopback"),
        ("ftp://example.com", "scheme must be https"),
        ("https://example.com/?a=b", "no query"),
        ("https://example.com/#top", "no fragment"),
        ("https://user:pw@example.com", "credentials"),
        ("https://example.com:0", "port must be"),
        ("example.com", "absolute URL"),
        ("https://exa mple.com", "not a valid URL"),
    ] {
        assert_one_error(&with_url(url), why);
    }
}

#[test]
fn upstream_settings() {
    let set = |kv: &str| BASE.replace("url = ", &format!("{kv}\nurl = "));
    let c = ok(&set(
        "connect_timeout = \"250ms\"\nmax_connections = 8\nhttp2 = false",
    ));
    assert_eq!(c.upstreams[0].connect_timeout, Duration::from_millis(250));
    assert_eq!(
        (c.upstreams[0].max_connections, c.upstreams[0].http2),
        (8, false)
    );
    assert_one_error(
        &set("max_connections = 0"),
        "upstreams[0].max_connections: must be at least 1",
    );
    assert_one_error(
        &set("response_timeout = \"0s\""),
        "must be greater than zero",
    );
    assert_one_error(&set("ca_only = true"), "ca_only = true needs ca_file");
    assert_one_error(
        &set("ca_file = \"missing-ca.pem\""),
        "upstreams[0].ca_file: cannot read file",
    );
    let dup = format!("{BASE}\n[[upstreams]]\nname = \"profile\"\nurl = \"https://x.example\"\n");
    assert_one_error(&dup, "upstreams[1].name: duplicate upstream name");
}

/// BASE with keys added to its route (the last table).
fn route_with(kv: &str) -> String {
    format!("{BASE}{kv}\n")
}

#[test]
fn route_host_prefix_and_methods_are_normalised() {
    let c = ok(
        &route_with("host = \"API.Example.COM\"\nmethods = [\"get\", \"POST\"]")
            .replace("/profile\"", "/profile/\""),
    );
    let r = &c.routes[0];
    assert_eq!(r.host.as_deref(), Some("api.example.com"));
    assert_eq!(r.path_prefix, "/profile");
    assert_eq!(r.methods, Some(vec![http::Method::GET, http::Method::POST]));
    assert_eq!(
        ok(&BASE.replace("\"/profile\"", "\"/\"")).routes[0].path_prefix,
        "/"
    );
    assert_one_error(
        &route_with("host = \"api.example.com:443\""),
        "without a port",
    );
    assert_one_error(&route_with("host = \"bad_host!\""), "not a valid host name");
    assert_one_error(
        &BASE.replace("\"/profile\"", "\"profile\""),
        "must start with \"/\"",
    );
    assert_one_error(&BASE.replace("\"/profile\"", "\"/a//b\""), "empty");
    assert_one_error(&BASE.replace("\"/profile\"", "\"/a?b\""), "cannot");
    assert_one_error(&route_with("methods = []"), "omit methods");
    assert_one_error(&route_with("methods = [\"G ET\"]"), "routes[0].methods[0]");
    assert_one_error(&route_with("methods = [\"GET\", \"get\"]"), "listed twice");
}

#[test]
fn duplicate_host_and_prefix_is_an_error_but_other_hosts_are_not() {
    let second =
        "\n[[routes]]\nname = \"two\"\npath_prefix = \"/profile/\"\nupstream = \"profile\"\n";
    assert_one_error(
        &format!("{BASE}{second}"),
        "routes[1].path_prefix: another route already",
    );
    assert!(parse(&format!("{BASE}{second}host = \"a.example\"\n")).is_ok());
    assert_one_error(
        &format!(
            "{BASE}{}",
            second
                .replace("\"two\"", "\"profile\"")
                .replace("/profile/", "/p")
        ),
        "duplicate route name",
    );
}

#[test]
fn versions_and_deprecations() {
    let src = route_with(
        "versions = [\"v5\", \"v4\"]\n[[routes.deprecated_versions]]\nversion = \"v3\"\n\
         deprecation = 2021-02-01\nsunset = \"2030-01-01T00:00:00Z\"",
    );
    let r = ok(&src).routes.remove(0);
    assert_eq!(
        r.versions,
        ["v5", "v4", "v3"],
        "deprecated versions are implicitly accepted"
    );
    let d = &r.deprecated_versions[0];
    assert_eq!(
        d.deprecation
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs()),
        Some(1_612_137_600)
    );
    assert!(d.sunset.is_some());
    assert_one_error(
        &src.replace("2030-01-01T00:00:00Z", "2020-01-01"),
        "sunset must come after",
    );
    assert_one_error(
        &src.replace("2021-02-01", "2021-02-01T00:00:00"),
        "no time zone",
    );
    assert_one_error(&src.replace("2021-02-01", "\"yesterday\""), "invalid date");
    assert_one_error(&src.replace("2021-02-01", "17"), "deprecation");
    assert_one_error(&src.replace("\"v4\"", "\"v/4\""), "routes[0].versions[1]");
    assert_one_error(&src.replace("\"v4\"", "\"v5\""), "listed twice");
    let twice = format!(
        "{src}\n[[routes.deprecated_versions]]\nversion = \"v3\"\ndeprecation = 2021-02-01\n"
    );
    assert_one_error(
        &twice,
        "routes[0].deprecated_versions[1].version: version \"v3\" is deprecated twice",
    );
}

#[test]
fn auth_policy() {
    assert_eq!(
        ok(&route_with("auth = \"none\"")).routes[0].auth,
        AuthPolicy::None
    );
    assert_eq!(
        ok(&route_with("auth = { policy = \"none\" }")).routes[0].auth,
        AuthPolicy::None
    );
    assert_one_error(
        &route_with("auth = \"bearer\""),
        "bearer: a route uses auth policy \"bearer\": add a [bearer] section",
    );
    assert_one_error(
        &route_with("auth = \"password\""),
        "routes[0].auth: unknown auth policy \"password\"",
    );
    assert_one_error(
        &route_with("auth = { policy = \"none\", scopes = [] }"),
        "routes[0].auth.scopes: not an option of auth policy \"none\"",
    );
}

#[test]
fn limits() {
    let lim = |kv: &str| format!("{BASE}\n[limits]\n{kv}\n");
    let c = ok(&lim(
        "max_header_bytes = \"32KiB\"\nmax_body_bytes = 1000\nh2_max_header_list_size = \"8KB\"",
    ));
    assert_eq!(
        (c.limits.max_header_bytes, c.limits.max_body_bytes),
        (32 * 1024, 1000)
    );
    assert_eq!(c.limits.h2_max_header_list_size, 8000);
    assert_one_error(&lim("max_header_bytes = \"4KiB\""), "at least \"8KiB\"");
    assert_one_error(
        &lim("max_body_bytes = \"0B\""),
        "limits.max_body_bytes: must be greater than zero",
    );
    assert_one_error(
        &lim("h2_max_header_list_size = \"5GiB\""),
        "must be at most 4294967295",
    );
    assert_one_error(&lim("idle_timeout = 60"), "needs a unit");
    assert_one_error(&lim("max_headers = -1"), "limits.max_headers");
    assert_one_error(&lim("max_body_bytes = -1"), "negative size");
}

#[test]
fn trusted_proxies() {
    let c = ok(&format!(
        "trusted_proxies = [\"10.0.0.0/8\", \"::1/128\", \"192.0.2.7\"]\n{BASE}"
    ));
    assert_eq!(c.trusted_proxies.len(), 3);
    assert!(c.trusted_proxies[0].contains("10.2.3.4".parse().unwrap()));
    assert_eq!(
        errors(&format!(
            "trusted_proxies = [\n  \"10.0.0.0/8\",\n  \"10.0.0.1/8\",\n]\n{BASE}"
        )),
        [
            "gateway.toml:3: trusted_proxies[1]: \"10.0.0.1/8\" has host bits set; did you mean \"10.0.0.0/8\"?"
        ]
    );
}

// --- [resolver] ---

#[test]
fn resolver_pins_names_and_may_turn_the_system_resolver_off() {
    let c = ok(&format!(
        "{BASE}\n[resolver]\nsystem = false\nhosts = {{ \"Up.Test\" = [\"127.0.0.1\", \"::1\"] }}\n"
    ));
    assert!(!c.resolver.system);
    assert_eq!(c.resolver.hosts.len(), 1);
    assert_eq!(c.resolver.hosts[0].0, "up.test");
    assert_eq!(c.resolver.hosts[0].1.len(), 2);
    let default = ok(BASE);
    assert!(default.resolver.system && default.resolver.hosts.is_empty());
}

#[test]
fn resolver_reports_every_bad_entry() {
    let errs = errors(&format!(
        "{BASE}\n[resolver]\nhosts = {{ \"a b\" = [\"127.0.0.1\"], \"ok.test\" = [\"nope\"], \"empty.test\" = [] }}\n"
    ));
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.contains("resolver.hosts.a b") && e.contains("not a host name"))
    );
    assert!(errs.iter().any(|e| e.contains("resolver.hosts.ok.test[0]")));
    assert!(
        errs.iter()
            .any(|e| e.contains("resolver.hosts.empty.test") && e.contains("at least one"))
    );
}
