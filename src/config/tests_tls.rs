//! TLS listener and upstream CA tests, with certificates generated at run time (no key in git).

use std::path::Path;

use super::tests::{BASE, parse_in};

struct Pems {
    dir: tempfile::TempDir,
}

/// A temp dir with `a.pem`/`a-key.pem`, `b.pem`/`b-key.pem` and `garbage.pem`.
fn pems() -> Pems {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, host) in [("a", "a.example"), ("b", "b.example")] {
        let ck = rcgen::generate_simple_self_signed(vec![host.to_owned()]).expect("rcgen");
        std::fs::write(dir.path().join(format!("{name}.pem")), ck.cert.pem()).expect("write");
        let key = ck.signing_key.serialize_pem();
        std::fs::write(dir.path().join(format!("{name}-key.pem")), key).expect("write");
    }
    std::fs::write(dir.path().join("garbage.pem"), "hello\n").expect("write");
    Pems { dir }
}

impl Pems {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn tls_listener(certs: &str) -> String {
    format!(
        "{BASE}\n[[listeners]]\nname = \"edge\"\naddr = \"0.0.0.0:8443\"\n[listeners.tls]\n{certs}"
    )
}

const TWO_CERTS: &str = r#"
[[listeners.tls.certificates]]
cert = "a.pem"
key = { file = "a-key.pem" }
server_names = ["A.example", "*.a.example"]

[[listeners.tls.certificates]]
cert = "b.pem"
key = { file = "b-key.pem" }
server_names = ["b.example"]
"#;

fn errors_in(src: &str, dir: &Path) -> Vec<String> {
    match parse_in(src, dir) {
        Ok(_) => panic!("config was accepted:\n{src}"),
        Err(e) => e.to_string().lines().map(str::to_owned).collect(),
    }
}

#[test]
fn tls_listener_with_two_sni_certificates_loads() {
    let pems = pems();
    let c = parse_in(&tls_listener(TWO_CERTS), pems.path()).unwrap_or_else(|e| panic!("{e}"));
    let tls = c.listeners[1].tls.as_ref().expect("tls");
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(
        tls.certificates[0].server_names,
        ["a.example", "*.a.example"]
    );
    assert!(
        tls.certificates[0]
            .cert_pem
            .starts_with(b"-----BEGIN CERTIFICATE-----")
    );
    assert!(
        tls.certificates[1]
            .key_pem
            .expose()
            .starts_with(b"-----BEGIN")
    );
}

#[test]
fn inline_key_is_rejected_without_echoing_it() {
    let pems = pems();
    // A PEM-looking inline value, assembled at run time (no key-looking text in git).
    let inline = format!(r#"key = "-----BEGIN {}-----SECRETBYTES""#, "PRIVATE KEY");
    let src = tls_listener(&TWO_CERTS.replace(r#"key = { file = "a-key.pem" }"#, &inline));
    let errs = errors_in(&src, pems.path());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("gateway.toml:22: listeners[1].tls.certificates[0].key: secrets are never written inline: use { file = \"path\" } or { env = \"VARIABLE\" }"), "{errs:#?}");
    assert!(!errs[0].contains("SECRETBYTES"));
}

#[test]
fn missing_files_and_variables_name_their_key() {
    let pems = pems();
    let src = tls_listener(
        &TWO_CERTS
            .replace(r#"cert = "a.pem""#, r#"cert = "missing.pem""#)
            .replace(
                r#"{ file = "b-key.pem" }"#,
                r#"{ env = "FXA_TEST_KEY_UNSET" }"#,
            ),
    );
    let errs = errors_in(&src, pems.path());
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].contains("certificates[0].cert: cannot read file"),
        "{errs:#?}"
    );
    assert!(errs[0].contains("missing.pem"), "{errs:#?}");
    assert!(
        errs[1]
            .ends_with("certificates[1].key: environment variable FXA_TEST_KEY_UNSET is not set"),
        "{errs:#?}"
    );
}

#[test]
fn pem_contents_are_checked() {
    let pems = pems();
    let bad_cert = tls_listener(&TWO_CERTS.replace(r#"cert = "a.pem""#, r#"cert = "a-key.pem""#));
    let errs = errors_in(&bad_cert, pems.path());
    assert!(
        errs[0].contains("certificates[0].cert: contains no PEM CERTIFICATE"),
        "{errs:#?}"
    );
    let bad_key = tls_listener(&TWO_CERTS.replace("\"a-key.pem\"", "\"a.pem\""));
    let errs = errors_in(&bad_key, pems.path());
    assert!(
        errs[0].contains("certificates[0].key: contains no PEM private key"),
        "{errs:#?}"
    );
    // The env variable holds "not a key": checked, and not echoed.
    let env_key = tls_listener(&TWO_CERTS.replace(
        r#"{ file = "a-key.pem" }"#,
        r#"{ env = "FXA_TEST_KEY_SET" }"#,
    ));
    let errs = errors_in(&env_key, pems.path());
    assert!(
        errs[0].contains("certificates[0].key: contains no PEM private key"),
        "{errs:#?}"
    );
    assert!(!errs[0].contains("not a key"));
}

#[test]
fn certificate_list_and_server_names_are_checked() {
    let pems = pems();
    let errs = errors_in(&tls_listener("certificates = []\n"), pems.path());
    assert!(errs[0].contains("listeners[1].tls.certificates: a TLS listener needs at least one"));
    let dup = tls_listener(&TWO_CERTS.replace("[\"b.example\"]", "[\"a.example\"]"));
    let errs = errors_in(&dup, pems.path());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].contains("certificates[1].server_names[0]: \"a.example\" is already served"));
    let bad = tls_listener(&TWO_CERTS.replace("[\"b.example\"]", "[\"b..example\"]"));
    assert!(errors_in(&bad, pems.path())[0].contains("not a valid host name"));
}

#[test]
fn upstream_ca_file_is_read_and_checked() {
    let pems = pems();
    let with_ca = |ca: &str| {
        BASE.replace(
            "url = ",
            &format!("ca_file = \"{ca}\"\nca_only = true\nurl = "),
        )
    };
    let c = parse_in(&with_ca("a.pem"), pems.path()).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.upstreams[0].ca_only);
    assert!(
        c.upstreams[0]
            .ca_pem
            .as_ref()
            .is_some_and(|p| p.starts_with(b"-----BEGIN CERTIFICATE"))
    );
    let errs = errors_in(&with_ca("garbage.pem"), pems.path());
    assert!(
        errs[0].contains("upstreams[0].ca_file: contains no PEM CERTIFICATE block"),
        "{errs:#?}"
    );
}
