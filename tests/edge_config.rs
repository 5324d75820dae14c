//! Issue 14, section 7: the config and the docs say what is true.
//!
//! - One `--check` run (and one `config::parse_str`) reports every problem of a file: a wrong
//!   value hides neither its table's other checks, nor the files they name, nor other tables.
//! - `gen-cert` signs every certificate of a directory with the one CA there, and the README's
//!   TLS "Try it" (`examples/edge-local.toml`) works on loopback alone.
//! - `/__version__` names a source repository only when the build says which.
//! - docs/configuration.md: the Contents match the sections; the `profile` preset's text matches
//!   what the code lets a `profile` token do.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use fxa_gateway::auth::presets::{self, Preset, Requirement};
use fxa_gateway::auth::scope::ScopeSet;
use fxa_gateway::config::{ConfigError, parse_str};
use http::Method;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::client::{self, Alpn, TlsTestClient};
use support::fake::FakeUpstream;
use support::raw;
use support::{TestGateway, simple_config};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_fxa-gateway");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_bin(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run fxa-gateway")
}

// --- every problem in one run ---------------------------------------------------------------

/// A file with problems of every kind: wrong types in several tables, an unknown upstream, an
/// invalid address, files that do not exist, out-of-range values, an unknown key, a route that
/// matches what another does. Each problem
/// line carries its expected key path and a fragment of its message after `# `.
const MANY_PROBLEMS: &str = r#"trusted_proxies = ["10.0.0.0/8", "not-a-network"]   # trusted_proxies[1] | not-a-network
colour = "blue"                                      # colour | unknown field `colour`

[server]
drain_timeout = 30                                   # server.drain_timeout | needs a unit
worker_threads = 0                                   # server.worker_threads | between 1 and 1024

[[listeners]]
name = "edge"
addr = "localhost:8443"                              # listeners[0].addr | not an IP:port
[listeners.tls]
[[listeners.tls.certificates]]
cert = "missing-cert.pem"                            # listeners[0].tls.certificates[0].cert | missing-cert.pem
key = { file = "missing-key.pem" }                   # listeners[0].tls.certificates[0].key | missing-key.pem

[[listeners]]
name = 42                                            # listeners[1].name | invalid type: integer `42`, expected a string
addr = "127.0.0.1:8080"
allow_plain_non_loopback = "yes"                     # listeners[1].allow_plain_non_loopback | expected a boolean

[admin]
addr = 9090                                          # admin.addr | invalid type: integer `9090`, expected a string

[[upstreams]]
name = "profile"
url = "ftp://profile.example"                        # upstreams[0].url | scheme must be https
max_connections = "many"                             # upstreams[0].max_connections | expected u64
ca_file = "missing-ca.pem"                           # upstreams[0].ca_file | missing-ca.pem
connect_timeout = "0s"                               # upstreams[0].connect_timeout | greater than zero

[[routes]]
name = "profile"
path_prefix = "/profile"
upstream = "nope"                                    # routes[0].upstream | unknown upstream "nope"
methods = "GET"                                      # routes[0].methods | expected a sequence

[[routes]]
name = "second"
path_prefix = "no-slash"                             # routes[1].path_prefix | must start with "/"
upstream = "profile"
versions = ["v1", "v1"]                              # routes[1].versions[1] | listed twice
rewrite_errors = "sometimes"                         # routes[1].rewrite_errors | expected a boolean
auth = { policy = "bearer", preset = "pofile" }      # routes[1].auth.preset | unknown preset "pofile"

[[routes.deprecated_versions]]
version = "v0"
deprecation = "not a date"                           # routes[1].deprecated_versions[0].deprecation | not a date

[[routes]]
name = "third"
path_prefix = "/profile/"                            # routes[2].path_prefix | another route already matches host (any) and path prefix "/profile"
upstream = "gone"                                    # routes[2].upstream | unknown upstream "gone"

[limits]
max_body_bytes = "lots"                              # limits.max_body_bytes | lots
idle_timeout = "0s"                                  # limits.idle_timeout | greater than zero

[[amo_credentials]]
name = "amo"
api_key = 5                                          # amo_credentials[0].api_key | invalid type: integer `5`, expected a string
secret = { file = "missing-secret" }                 # amo_credentials[0].secret | missing-secret
lifetime = "301s"                                    # amo_credentials[0].lifetime | between "1s" and "300s"
"#;

/// (line, key path, message fragment) of every problem marked in `src`.
fn marked_problems(src: &str) -> Vec<(usize, String, String)> {
    src.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let (_, mark) = line.split_once("# ")?;
            let (key, fragment) = mark.split_once(" | ")?;
            Some((i + 1, key.trim().to_owned(), fragment.trim().to_owned()))
        })
        .collect()
}

#[track_caller]
fn assert_reports_exactly(errors: &[ConfigError], expected: &[(usize, String, String)]) {
    let shown: Vec<String> = errors
        .iter()
        .map(|e| format!("{:?}: {}: {}", e.line, e.key, e.message))
        .collect();
    for (line, key, fragment) in expected {
        assert!(
            errors
                .iter()
                .any(|e| e.line == Some(*line) && &e.key == key && e.message.contains(fragment)),
            "line {line} {key} ({fragment:?}) not reported; got:\n{}",
            shown.join("\n")
        );
    }
    assert_eq!(
        errors.len(),
        expected.len(),
        "other problems reported:\n{}",
        shown.join("\n")
    );
}

#[test]
fn parse_reports_every_problem_of_a_file_in_one_run() {
    let dir = TempDir::new().expect("temp dir");
    let expected = marked_problems(MANY_PROBLEMS);
    assert_eq!(expected.len(), 28, "the fixture's marks");
    let errors = parse_str(MANY_PROBLEMS, Path::new("many.toml"), dir.path())
        .expect_err("the file is broken")
        .errors;
    assert_reports_exactly(&errors, &expected);
}

#[test]
fn check_flag_reports_every_problem_of_a_file_in_one_run() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("many.toml");
    std::fs::write(&config, MANY_PROBLEMS).expect("write config");
    let out = run_bin(&["--check", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let file = config.display().to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    let expected = marked_problems(MANY_PROBLEMS);
    for (line, key, fragment) in &expected {
        let prefix = format!("{file}:{line}: {key}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(fragment.as_str())),
            "{prefix}... {fragment:?} missing from:\n{stderr}"
        );
    }
    assert_eq!(lines.len(), expected.len(), "stderr:\n{stderr}");
}

/// The issue's first example: `methods = "GET"` hid the same route's unknown upstream.
#[test]
fn wrong_type_does_not_hide_the_same_routes_unknown_upstream() {
    let src = r#"
[[listeners]]
name = "l"
addr = "127.0.0.1:8080"

[[upstreams]]
name = "profile"
url = "https://profile.example"

[[routes]]
name = "r"
path_prefix = "/p"
upstream = "profle"                 # routes[0].upstream | unknown upstream "profle"
methods = "GET"                     # routes[0].methods | expected a sequence
"#;
    let errors = parse_str(src, Path::new("g.toml"), Path::new("/nonexistent"))
        .expect_err("broken")
        .errors;
    assert_reports_exactly(&errors, &marked_problems(src));
}

/// The issue's second example: an invalid address hid the file checks of the same listener.
#[test]
fn invalid_address_does_not_hide_the_listeners_certificate_files() {
    let src = r#"
[[listeners]]
name = "l"
addr = "8443"                       # listeners[0].addr | not an IP:port
[listeners.tls]
[[listeners.tls.certificates]]
cert = "nowhere.pem"                # listeners[0].tls.certificates[0].cert | nowhere.pem
key = { file = "nowhere-key.pem" }  # listeners[0].tls.certificates[0].key | nowhere-key.pem

[[upstreams]]
name = "profile"
url = "https://profile.example"
max_connections = "4"               # upstreams[0].max_connections | expected u64
response_timeout = "0s"             # upstreams[0].response_timeout | greater than zero
"#;
    let dir = TempDir::new().expect("temp dir");
    let errors = parse_str(src, Path::new("g.toml"), dir.path())
        .expect_err("broken")
        .errors;
    assert_reports_exactly(&errors, &marked_problems(src));
}

/// A key that could not be read does not also count as absent: no follow-on complaints.
#[test]
fn an_unreadable_key_is_reported_once() {
    let src = r#"
[[listeners]]
name = "l"
addr = "127.0.0.1:8080"

[[upstreams]]
name = "internal"
url = "https://internal.example"
ca_only = true
ca_file = 7                         # upstreams[0].ca_file | expected a string

[[routes]]
name = "r"
path_prefix = "/p"
upstream = "internal"
refresh = "yes"                     # routes[0].refresh | expected a boolean
refresh_scope = "profile"
"#;
    let errors = parse_str(src, Path::new("g.toml"), Path::new("/nonexistent"))
        .expect_err("broken")
        .errors;
    assert_reports_exactly(&errors, &marked_problems(src));
}

// --- gen-cert and the README's TLS Try it ---------------------------------------------------

fn gen_cert(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["gen-cert", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run_bin(&args)
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "gen-cert failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Verifies the leaf in `cert_file` for `name` against `ca_pem` alone, as a TLS client would.
fn verify_leaf(ca_pem: &str, cert_file: &Path, name: &str) -> Result<(), rustls::Error> {
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(raw::ca_roots(ca_pem)))
        .build()
        .expect("verifier");
    let leaf = CertificateDer::from_pem_file(cert_file).expect("leaf PEM");
    let name = ServerName::try_from(name.to_owned()).expect("server name");
    verifier
        .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn gen_cert_signs_every_certificate_of_a_directory_with_its_one_ca() {
    let dir = TempDir::new().expect("temp dir");
    let certs = dir.path().join("certs");
    assert_success(&gen_cert(&certs, &[]));
    let ca = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    assert_success(&gen_cert(
        &certs,
        &["--file", "api", "--name", "api.example"],
    ));
    // A plain second run (same file names) reuses it too.
    assert_success(&gen_cert(&certs, &["--name", "localhost"]));
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem"),
        ca,
        "a later run replaced the CA"
    );
    verify_leaf(&ca, &certs.join("gateway.pem"), "localhost")
        .expect("gateway.pem chains to ca.pem");
    verify_leaf(&ca, &certs.join("api.pem"), "api.example").expect("api.pem chains to ca.pem");
    assert!(
        verify_leaf(&ca, &certs.join("api.pem"), "localhost").is_err(),
        "api.pem verified for a name it does not carry"
    );
    #[cfg(unix)]
    for key in ["ca-key.pem", "gateway-key.pem", "api-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(certs.join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{key} is readable by others: {mode:o}");
    }
}

#[test]
fn gen_cert_refuses_a_ca_certificate_without_its_key() {
    let dir = TempDir::new().expect("temp dir");
    let certs = dir.path().join("certs");
    assert_success(&gen_cert(&certs, &[]));
    std::fs::remove_file(certs.join("ca-key.pem")).expect("remove CA key");
    let ca = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    let out = gen_cert(&certs, &["--file", "api", "--name", "api.example"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted a CA without its key");
    assert!(stderr.contains("ca-key.pem"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem"),
        ca,
        "the CA clients trust was replaced"
    );
    assert!(!certs.join("api.pem").exists());
}

/// The README's TLS steps: `gen-cert` twice into `certs/`, then `examples/edge-local.toml`,
/// whose upstream is the gateway's own admin listener, answers over TLS for both names, with
/// nothing beyond loopback. (Ports are the test's own: the file's fixed ones may be taken.)
#[tokio::test]
async fn readme_tls_try_it_works_on_loopback() {
    let dir = TempDir::new().expect("temp dir");
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README");
    for step in [
        "gen-cert --out certs ",
        "gen-cert --out certs --file api --name api.localhost",
        "--config examples/edge-local.toml",
        "--resolve api.localhost:8443:127.0.0.1",
    ] {
        assert!(readme.contains(step), "README lacks {step:?}");
    }
    let certs = dir.path().join("certs");
    assert_success(&gen_cert(&certs, &[]));
    assert_success(&gen_cert(
        &certs,
        &["--file", "api", "--name", "api.localhost"],
    ));

    let example =
        std::fs::read_to_string(repo().join("examples/edge-local.toml")).expect("example");
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    assert!(example.contains("127.0.0.1:9090") && example.contains("127.0.0.1:8443"));
    let toml = example
        .replace("127.0.0.1:9090", &format!("127.0.0.1:{admin_port}"))
        .replace("127.0.0.1:8443", "127.0.0.1:0");
    let examples = dir.path().join("examples");
    std::fs::create_dir(&examples).expect("mkdir examples");
    let gw = TestGateway::start_in(&toml, &examples).await;

    let ca = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    for alpn in [Alpn::H2, Alpn::Http1] {
        let tls = TlsTestClient::new(&ca, alpn);
        let resp = tls.get(gw.addr, "localhost", "/__version__").await;
        assert_eq!(resp.status_u16(), 200, "{alpn:?}: {}", resp.text());
        assert_eq!(resp.json()["name"], "fxa-gateway", "{alpn:?}");
        let resp = tls.get(gw.addr, "api.localhost", "/__lbheartbeat__").await;
        assert_eq!(
            resp.status_u16(),
            200,
            "{alpn:?} api.localhost: {}",
            resp.text()
        );
    }
}

// --- /__version__ ---------------------------------------------------------------------------

#[tokio::test]
async fn version_names_a_source_only_when_the_build_does() {
    let fake = FakeUpstream::start().await;
    let gw = TestGateway::start(&simple_config(&fake.url())).await;
    let resp = client::get(&gw.admin_url("/__version__")).await;
    assert_eq!(resp.status_u16(), 200);
    let v = resp.json();
    match option_env!("FXA_GATEWAY_SOURCE").filter(|s| !s.is_empty()) {
        Some(source) => assert_eq!(v["source"], source, "{v}"),
        None => assert!(v.get("source").is_none(), "a source nobody gave: {v}"),
    }
    assert!(v["commit"].is_string(), "{v}");
}

// --- docs/configuration.md ------------------------------------------------------------------

fn configuration_md() -> String {
    std::fs::read_to_string(repo().join("docs/configuration.md")).expect("docs/configuration.md")
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn configuration_contents_list_exactly_the_documents_sections() {
    let doc = configuration_md();
    let mut anchors = Vec::new();
    let mut sections = Vec::new();
    let mut in_code = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            sections.push(anchor(title));
        }
        if line.starts_with('#') {
            anchors.push(anchor(line.trim_start_matches('#')));
        }
    }
    let (_, after) = doc.split_once("Contents:").expect("a Contents list");
    let contents = &after[..after.find("\n## ").expect("a section after the Contents")];
    let links: Vec<&str> = contents
        .split("](#")
        .skip(1)
        .map(|s| &s[..s.find(')').expect("closing parenthesis")])
        .collect();
    for link in &links {
        assert!(
            anchors.iter().any(|a| a == link),
            "Contents link #{link} has no heading"
        );
    }
    for section in &sections {
        assert!(
            links.contains(&section.as_str()),
            "section #{section} is missing from the Contents"
        );
    }
    assert!(links.contains(&"refresh-transparent-token-refresh"));
}

#[test]
fn configuration_secrets_section_names_the_oauth_client_secret_as_supported() {
    let doc = configuration_md();
    let (_, secrets) = doc.split_once("### Secrets").expect("Secrets section");
    let secrets = &secrets[..secrets.find("\n## ").expect("end of Secrets")];
    assert!(!secrets.contains("later feature"), "{secrets}");
    assert!(secrets.contains("client_secret"), "{secrets}");
}

/// Every scope row of the doc's `profile` table, checked against the code: a token holding
/// `profile` opens exactly the rows that do not need a `:write` scope, and the text says so.
#[test]
fn profile_preset_doc_says_what_a_profile_token_opens() {
    let doc = configuration_md();
    let (_, table) = doc
        .split_once("`preset = \"profile\"`")
        .expect("profile preset table");
    let (section, _) = table
        .split_once("`preset = \"tokenserver\"`")
        .expect("section end");
    let (table, prose): (Vec<&str>, Vec<&str>) = section.lines().partition(|l| l.starts_with('|'));
    let prose = prose.join("\n");
    let profile = ScopeSet::parse_granted("profile").expect("scope");
    let profile_write = ScopeSet::parse_granted("profile:write").expect("scope");
    let mut rows = 0;
    for row in table.iter().filter(|l| l.contains("`/v1/")) {
        let cells: Vec<&str> = row
            .split(" | ")
            .map(|c| c.trim_matches(['|', ' ']))
            .collect();
        let (method, path, needs) = (cells[0], cells[1], cells[2]);
        if !needs.contains("`profile:") && !needs.contains("`email`") {
            continue;
        }
        let path = path
            .split('`')
            .nth(1)
            .expect("a path")
            .replace("<32 hex>", &"0".repeat(32));
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let requirement = presets::requirement(Preset::Profile, &method, &path);
        assert!(matches!(requirement, Requirement::AnyOf(_)), "{row}");
        let write = needs.contains(":write`");
        assert_eq!(
            requirement.is_satisfied_by(&profile),
            !write,
            "a `profile` token and {method} {path}"
        );
        assert!(
            requirement.is_satisfied_by(&profile_write),
            "{method} {path}"
        );
        rows += 1;
    }
    assert!(rows >= 9, "only {rows} scope rows found");
    assert!(
        !prose.contains("opens every row."),
        "the doc still says a profile token opens every row"
    );
    assert!(prose.contains("**not the `:write` rows**"), "{prose}");
}
