//! TLS on both sides: termination with ALPN (HTTP/1.1 and HTTP/2), SNI certificate selection,
//! protocol versions and cipher suites, upstream TLS with a private CA, and handshakes that
//! never complete. Every certificate is generated at run time.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::Version;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, ProtocolVersion, SignatureScheme};
use support::TestGateway;
use support::client::{self, ALPN_H2, ALPN_HTTP1, Alpn, CertPaths, TestCerts, TlsTestClient};
use support::fake::{FakeUpstream, Reply};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Upper bound for anything that should be quick.
const QUICK: Duration = Duration::from_secs(10);

/// Writes `certs` into a fresh sub-directory `name` of `dir`.
fn write_certs(dir: &Path, name: &str, certs: &TestCerts) -> CertPaths {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("create cert dir");
    certs.write_to(&sub)
}

fn toml_str(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// A config with one TLS listener presenting `certs` (first = default), an admin listener, an
/// upstream `api` at `upstream_url` behind the route `/api` (v1, v2), and `extra` TOML.
fn tls_config(upstream_url: &str, certs: &[(&CertPaths, &[&str])], extra: &str) -> String {
    let mut out = String::from(
        r#"
[server]
drain_timeout = "5s"

[[listeners]]
name = "edge"
addr = "127.0.0.1:0"

[listeners.tls]
"#,
    );
    for (paths, names) in certs {
        let names = names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push_str(&format!(
            "[[listeners.tls.certificates]]\ncert = {}\nkey = {{ file = {} }}\nserver_names = [{names}]\n\n",
            toml_str(&paths.cert),
            toml_str(&paths.key),
        ));
    }
    out.push_str(&format!(
        r#"
[admin]
addr = "127.0.0.1:0"

[[upstreams]]
name = "api"
url = "{upstream_url}"
connect_timeout = "1s"
response_timeout = "2s"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "api"
versions = ["v1", "v2"]

{extra}
"#
    ));
    out
}

/// A TLS gateway with one certificate for `localhost` in front of a plain echoing fake.
async fn gateway_with_one_cert(extra: &str) -> (TempDir, TestCerts, FakeUpstream, TestGateway) {
    let dir = TempDir::new().expect("temp dir");
    let certs = TestCerts::new(&["localhost"]);
    let paths = write_certs(dir.path(), "gw", &certs);
    let fake = FakeUpstream::start().await;
    fake.set_default(Reply::new().echo());
    let toml = tls_config(&fake.url(), &[(&paths, &["localhost"])], extra);
    let gw = TestGateway::start_in(&toml, dir.path()).await;
    (dir, certs, fake, gw)
}

fn provider() -> Arc<CryptoProvider> {
    client::install_crypto_provider();
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    roots
}

/// A client config trusting `ca_pem`, limited to the given protocol versions.
fn versioned_client(
    ca_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Accepts any server certificate (still checking handshake signatures), so that a test can
/// look at which certificate the gateway presented for an SNI name it is not valid for.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn accept_any_client() -> Arc<rustls::ClientConfig> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// A bare TLS handshake (no HTTP) with `server_name` as SNI.
async fn handshake(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> Result<TlsStream<TcpStream>, std::io::Error> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(server_name.to_owned()).expect("server name");
    let connector = tokio_rustls::TlsConnector::from(config);
    tokio::time::timeout(QUICK, connector.connect(name, stream))
        .await
        .expect("TLS handshake timed out")
}

/// The leaf certificate the gateway presents when asked for `server_name`.
async fn presented_leaf(addr: SocketAddr, server_name: &str) -> CertificateDer<'static> {
    let tls = handshake(addr, accept_any_client(), server_name)
        .await
        .unwrap_or_else(|e| panic!("handshake for {server_name}: {e}"));
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server certificates")[0]
        .clone()
}

fn leaf_der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("leaf PEM")
}

#[tokio::test]
async fn http1_and_http2_are_chosen_by_alpn_and_proxied_to_a_plain_upstream() {
    let (_dir, certs, fake, gw) = gateway_with_one_cert("").await;

    for (alpn, expected) in [
        (Alpn::Http1, Version::HTTP_11),
        (Alpn::H2, Version::HTTP_2),
        (Alpn::Both, Version::HTTP_2),
        (Alpn::None, Version::HTTP_11),
    ] {
        let mut conn = certs
            .client(alpn)
            .connect(gw.addr, "localhost")
            .await
            .unwrap_or_else(|e| panic!("{alpn:?}: connect: {e}"));
        assert_eq!(conn.version(), expected, "{alpn:?}: negotiated protocol");
        // Two requests on the same connection: keep-alive / multiplexing works over TLS.
        for i in 0..2 {
            let resp = conn.get(&format!("/api/v1/profile?n={i}")).await;
            assert_eq!(resp.status_u16(), 200, "{alpn:?}: {}", resp.text());
            assert_eq!(resp.version, expected, "{alpn:?}: response version");
            let echoed = resp.json();
            assert_eq!(echoed["uri"], format!("/v1/profile?n={i}"), "{alpn:?}");
            let seen = fake.last_request().expect("upstream saw the request");
            assert_eq!(
                seen.version,
                Version::HTTP_11,
                "{alpn:?}: plain upstream speaks HTTP/1.1"
            );
            assert_eq!(seen.header("x-forwarded-proto"), Some("https"), "{alpn:?}");
            assert_eq!(seen.header("host"), Some(fake.addr().to_string().as_str()));
        }
    }
}

#[tokio::test]
async fn http2_over_tls_carries_request_bodies_and_concurrent_streams() {
    let (_dir, certs, fake, gw) = gateway_with_one_cert("").await;
    let client = certs.client(Alpn::H2);
    let mut conn = client.connect(gw.addr, "localhost").await.expect("connect");
    assert_eq!(conn.version(), Version::HTTP_2);
    let body = "b".repeat(100_000);
    let resp = conn
        .send(
            "POST",
            "/api/v1/upload",
            &[("content-type", "text/plain")],
            body.clone(),
        )
        .await;
    assert_eq!(resp.status_u16(), 200);
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(fake.last_request().unwrap().body.len(), body.len());

    // Several streams at once on separate connections and the same fake.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        let addr = gw.addr;
        tasks.push(tokio::spawn(async move {
            client
                .get(addr, "localhost", &format!("/api/v2/item/{i}"))
                .await
        }));
    }
    for t in tasks {
        let resp = t.await.expect("task");
        assert_eq!(resp.status_u16(), 200);
        assert_eq!(resp.version, Version::HTTP_2);
    }
}

#[tokio::test]
async fn gateway_errors_over_http2_keep_the_errno_shape() {
    let (_dir, certs, _fake, gw) = gateway_with_one_cert("").await;
    let resp = certs
        .client(Alpn::H2)
        .get(gw.addr, "localhost", "/nowhere")
        .await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.status_u16(), 404);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(body["code"], 404);
    assert_eq!(body["errno"], 999);
}

#[tokio::test]
async fn sni_selects_the_certificate_and_unknown_names_get_the_first() {
    let dir = TempDir::new().expect("temp dir");
    // Two unrelated CAs, so that a successful verification proves which leaf was sent.
    let gw_certs = TestCerts::new(&["gateway.example"]);
    let api_certs = TestCerts::new(&["api.example", "x.api.example"]);
    let gw_paths = write_certs(dir.path(), "gateway", &gw_certs);
    let api_paths = write_certs(dir.path(), "api", &api_certs);
    let fake = FakeUpstream::start().await;
    let toml = tls_config(
        &fake.url(),
        &[
            (&gw_paths, &["gateway.example"]),
            (&api_paths, &["api.example", "*.api.example"]),
        ],
        "",
    );
    let gw = TestGateway::start_in(&toml, dir.path()).await;

    // Verified end to end: each client trusts only its own CA.
    let api_client = api_certs.client(Alpn::Both);
    let resp = api_client.get(gw.addr, "api.example", "/api/v1/x").await;
    assert_eq!(resp.status_u16(), 200);
    let resp = gw_certs
        .client(Alpn::Both)
        .get(gw.addr, "gateway.example", "/api/v1/x")
        .await;
    assert_eq!(resp.status_u16(), 200);
    // The api CA does not vouch for the certificate presented for gateway.example.
    let wrong = api_client
        .try_send(gw.addr, "gateway.example", "GET", "/api/v1/x", &[], "")
        .await;
    assert!(
        wrong.is_err(),
        "gateway.example must not get the api certificate"
    );

    // Which leaf is presented, name by name.
    let gw_leaf = leaf_der(&gw_certs.cert_pem);
    let api_leaf = leaf_der(&api_certs.cert_pem);
    assert_eq!(presented_leaf(gw.addr, "api.example").await, api_leaf);
    assert_eq!(
        presented_leaf(gw.addr, "API.Example").await,
        api_leaf,
        "SNI is case-insensitive"
    );
    assert_eq!(
        presented_leaf(gw.addr, "x.api.example").await,
        api_leaf,
        "wildcard"
    );
    assert_eq!(presented_leaf(gw.addr, "gateway.example").await, gw_leaf);
    assert_eq!(
        presented_leaf(gw.addr, "unknown.example").await,
        gw_leaf,
        "default = first"
    );
    assert_eq!(
        presented_leaf(gw.addr, "a.b.api.example").await,
        gw_leaf,
        "a wildcard covers one label only"
    );
    // No SNI at all (an IP address is never sent as SNI): the default certificate, which is
    // valid for 127.0.0.1.
    assert_eq!(presented_leaf(gw.addr, "127.0.0.1").await, gw_leaf);
    let resp = gw_certs
        .client(Alpn::H2)
        .get(gw.addr, "127.0.0.1", "/api/v1/x")
        .await;
    assert_eq!(resp.status_u16(), 200);
}

fn is_aead(suite: rustls::SupportedCipherSuite) -> bool {
    let name = format!("{:?}", suite.suite());
    name.contains("_GCM_") || name.ends_with("_CHACHA20_POLY1305_SHA256")
}

#[tokio::test]
async fn tls12_and_tls13_negotiate_with_aead_suites_only() {
    let (_dir, certs, _fake, gw) = gateway_with_one_cert("").await;

    for (versions, expected) in [
        (vec![&rustls::version::TLS12], ProtocolVersion::TLSv1_2),
        (vec![&rustls::version::TLS13], ProtocolVersion::TLSv1_3),
        (
            vec![&rustls::version::TLS13, &rustls::version::TLS12],
            ProtocolVersion::TLSv1_3,
        ),
    ] {
        let config = versioned_client(&certs.ca_cert_pem, &versions, &[ALPN_H2, ALPN_HTTP1]);
        let tls = handshake(gw.addr, config.clone(), "localhost")
            .await
            .unwrap_or_else(|e| panic!("{expected:?}: handshake: {e}"));
        let session = tls.get_ref().1;
        assert_eq!(session.protocol_version(), Some(expected));
        let suite = session.negotiated_cipher_suite().expect("cipher suite");
        assert!(
            is_aead(suite),
            "{expected:?}: non-AEAD suite {:?}",
            suite.suite()
        );
        assert_eq!(session.alpn_protocol(), Some(ALPN_H2));
        drop(tls);

        // And real traffic over that version.
        let resp = TlsTestClient::from_config(config)
            .get(gw.addr, "localhost", "/api/v1/x")
            .await;
        assert_eq!(resp.status_u16(), 200, "{expected:?}");
    }
}

// --- Hand-made ClientHellos for what rustls clients cannot offer ---------------------------

const EXT_SUPPORTED_GROUPS: [u8; 10] = [0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17];
const EXT_EC_POINT_FORMATS: [u8; 6] = [0x00, 0x0b, 0x00, 0x02, 0x01, 0x00];
/// ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256, rsa_pkcs1_sha256.
const EXT_SIGNATURE_ALGORITHMS: [u8; 12] = [
    0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01,
];

/// A TLS ClientHello record with the given `client_version`, cipher suites and extensions.
fn client_hello(client_version: u16, suites: &[u16], extensions: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&client_version.to_be_bytes());
    body.extend((0..32u8).map(|i| i.wrapping_mul(37)));
    body.push(0); // session id
    body.extend_from_slice(&((suites.len() * 2) as u16).to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let ext: Vec<u8> = extensions.concat();
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut handshake = vec![1u8]; // ClientHello
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);

    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

/// Sends `hello` and returns the first bytes the server answers (up to 7, or until it closes).
async fn first_server_bytes(addr: SocketAddr, hello: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(hello).await.expect("write hello");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(QUICK, async {
        let mut buf = [0u8; 512];
        while got.len() < 7 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

const TLS_ALERT: u8 = 0x15;
const TLS_HANDSHAKE: u8 = 0x16;

#[tokio::test]
async fn tls11_and_non_aead_suites_are_refused() {
    let (_dir, certs, _fake, gw) = gateway_with_one_cert("").await;
    let ext: [&[u8]; 3] = [
        &EXT_SUPPORTED_GROUPS,
        &EXT_EC_POINT_FORMATS,
        &EXT_SIGNATURE_ALGORITHMS,
    ];

    // Control: a TLS 1.2 hello offering ECDHE-ECDSA-AES128-GCM gets a ServerHello.
    let ok = first_server_bytes(gw.addr, &client_hello(0x0303, &[0xc02b, 0xc02f], &ext)).await;
    assert_eq!(
        ok.first(),
        Some(&TLS_HANDSHAKE),
        "TLS 1.2 GCM hello: {ok:02x?}"
    );

    // TLS 1.1 (ECDHE-ECDSA-AES128-CBC-SHA and friends): a fatal protocol_version alert.
    let v11 = first_server_bytes(
        gw.addr,
        &client_hello(0x0302, &[0xc009, 0xc013, 0x002f, 0x0035], &ext),
    )
    .await;
    assert_eq!(v11.first(), Some(&TLS_ALERT), "TLS 1.1 hello: {v11:02x?}");
    assert_eq!(
        v11.get(5..7),
        Some(&[2u8, 70][..]),
        "fatal protocol_version: {v11:02x?}"
    );

    // TLS 1.2 offering only CBC / non-AEAD suites: a fatal handshake_failure alert.
    let cbc = first_server_bytes(
        gw.addr,
        &client_hello(
            0x0303,
            &[
                0xc009, 0xc00a, 0xc023, 0xc013, 0xc014, 0xc027, 0x002f, 0x0035, 0x003c, 0x000a,
            ],
            &ext,
        ),
    )
    .await;
    assert_eq!(cbc.first(), Some(&TLS_ALERT), "CBC-only hello: {cbc:02x?}");
    assert_eq!(
        cbc.get(5..7),
        Some(&[2u8, 40][..]),
        "fatal handshake_failure: {cbc:02x?}"
    );

    // None of that hurt the listener.
    let resp = certs
        .client(Alpn::Both)
        .get(gw.addr, "localhost", "/api/v1/x")
        .await;
    assert_eq!(resp.status_u16(), 200);
}

// --- Upstream TLS ---------------------------------------------------------------------------

/// A plain-listener gateway whose upstream `api` is the TLS fake at `url`, with `upstream_keys`
/// added to the upstream table.
async fn gateway_to_tls_upstream(dir: &Path, url: &str, upstream_keys: &str) -> TestGateway {
    let extra = format!(
        "{upstream_keys}\n\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"api\"\nversions = [\"v1\"]\n"
    );
    // config_with leaves the [[upstreams]] table open: `upstream_keys` land in it.
    TestGateway::start_in(&support::config_with(url, &extra), dir).await
}

#[tokio::test]
async fn tls_upstream_with_private_ca_speaks_http2_when_offered_and_enabled() {
    let dir = TempDir::new().expect("temp dir");
    let up_certs = TestCerts::new(&["localhost"]);
    let paths = write_certs(dir.path(), "upstream", &up_certs);
    let fake = FakeUpstream::start_tls(up_certs.server_config(&[ALPN_H2, ALPN_HTTP1])).await;
    fake.set_default(Reply::new().echo());
    assert!(fake.url().starts_with("https://127.0.0.1:"));

    let ca = toml_str(&paths.ca);
    let gw = gateway_to_tls_upstream(
        dir.path(),
        &fake.url(),
        &format!("ca_file = {ca}\nca_only = true\nhttp2 = true"),
    )
    .await;
    for i in 0..3 {
        let resp = client::get(&gw.url(&format!("/api/v1/h2/{i}"))).await;
        assert_eq!(resp.status_u16(), 200, "{}", resp.text());
        assert_eq!(resp.version, Version::HTTP_11, "downstream stays HTTP/1.1");
        let seen = fake.last_request().expect("upstream request");
        assert_eq!(seen.version, Version::HTTP_2, "upstream request over h2");
        assert_eq!(seen.path(), format!("/v1/h2/{i}"));
    }
    // A POST with a body over the h2 upstream connection.
    let resp = client::send(
        "POST",
        &gw.url("/api/v1/h2/post"),
        &[("content-type", "text/plain")],
        "hello h2",
    )
    .await;
    assert_eq!(resp.status_u16(), 200);
    let seen = fake.last_request().unwrap();
    assert_eq!(
        (seen.version, seen.body_str().as_str()),
        (Version::HTTP_2, "hello h2")
    );
    assert_eq!(
        fake.connection_count(),
        1,
        "one multiplexed upstream connection"
    );
}

#[tokio::test]
async fn tls_upstream_with_http2_disabled_speaks_http1() {
    let dir = TempDir::new().expect("temp dir");
    let up_certs = TestCerts::new(&["localhost"]);
    let paths = write_certs(dir.path(), "upstream", &up_certs);
    let fake = FakeUpstream::start_tls(up_certs.server_config(&[ALPN_H2, ALPN_HTTP1])).await;
    let ca = toml_str(&paths.ca);
    let gw = gateway_to_tls_upstream(
        dir.path(),
        &fake.url(),
        &format!("ca_file = {ca}\nca_only = true\nhttp2 = false"),
    )
    .await;
    let resp = client::get(&gw.url("/api/v1/h1")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(fake.last_request().unwrap().version, Version::HTTP_11);
}

#[tokio::test]
async fn tls_upstream_offering_only_http1_gets_http1_even_with_http2_enabled() {
    let dir = TempDir::new().expect("temp dir");
    let up_certs = TestCerts::new(&["localhost"]);
    let paths = write_certs(dir.path(), "upstream", &up_certs);
    let fake = FakeUpstream::start_tls(up_certs.server_config(&[ALPN_HTTP1])).await;
    let ca = toml_str(&paths.ca);
    let gw = gateway_to_tls_upstream(
        dir.path(),
        &fake.url(),
        &format!("ca_file = {ca}\nhttp2 = true"),
    )
    .await;
    let resp = client::get(&gw.url("/api/v1/h1")).await;
    assert_eq!(resp.status_u16(), 200, "{}", resp.text());
    assert_eq!(fake.last_request().unwrap().version, Version::HTTP_11);
}

#[tokio::test]
async fn tls_upstream_with_untrusted_certificate_is_a_502_errno_203() {
    let dir = TempDir::new().expect("temp dir");
    let up_certs = TestCerts::new(&["localhost"]);
    let fake = FakeUpstream::start_tls(up_certs.server_config(&[ALPN_H2, ALPN_HTTP1])).await;

    // No ca_file: the webpki roots do not know the test CA.
    let gw = gateway_to_tls_upstream(dir.path(), &fake.url(), "").await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    assert_eq!(resp.status_u16(), 502, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!(
        (body["code"].clone(), body["errno"].clone()),
        (502.into(), 203.into())
    );
    assert!(resp.header("x-fxa-gateway-error").is_some());
    assert_eq!(
        fake.request_count(),
        0,
        "no request may reach an unverified upstream"
    );
    drop(gw);

    // A CA file from another CA, trusted exclusively: still refused.
    let other = TestCerts::new(&["localhost"]);
    let other_paths = write_certs(dir.path(), "other", &other);
    let ca = toml_str(&other_paths.ca);
    let gw = gateway_to_tls_upstream(
        dir.path(),
        &fake.url(),
        &format!("ca_file = {ca}\nca_only = true"),
    )
    .await;
    let resp = client::get(&gw.url("/api/v1/x")).await;
    assert_eq!(resp.status_u16(), 502, "{}", resp.text());
    assert_eq!(resp.json()["errno"], 203);
    assert_eq!(fake.request_count(), 0);
}

// --- Handshakes that never complete ---------------------------------------------------------

#[tokio::test]
async fn stalled_tls_handshakes_do_not_block_other_clients_and_are_cut_off() {
    let (_dir, certs, _fake, gw) =
        gateway_with_one_cert("[limits]\ntls_handshake_timeout = \"1s\"").await;

    // Connections that say nothing, and one that stops inside its ClientHello.
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(TcpStream::connect(gw.addr).await.expect("raw connect"));
    }
    let mut partial = TcpStream::connect(gw.addr).await.expect("raw connect");
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8, 0x01])
        .await
        .expect("partial hello");
    stalled.push(partial);

    // Meanwhile real clients, both protocols, are served at once.
    for alpn in [Alpn::Http1, Alpn::H2] {
        let resp = tokio::time::timeout(
            Duration::from_secs(5),
            certs.client(alpn).get(gw.addr, "localhost", "/api/v1/x"),
        )
        .await
        .unwrap_or_else(|_| panic!("{alpn:?}: a stalled handshake blocked another client"));
        assert_eq!(resp.status_u16(), 200);
    }

    // The stalled connections are closed once the handshake timeout passes.
    for (i, mut s) in stalled.into_iter().enumerate() {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(QUICK, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    // An alert is fine; keep reading until the close.
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert!(read.is_ok(), "stalled connection {i} was never closed");
    }
    let resp = certs
        .client(Alpn::Both)
        .get(gw.addr, "localhost", "/api/v1/x")
        .await;
    assert_eq!(resp.status_u16(), 200);
}

#[tokio::test]
async fn idle_tls_connections_of_both_protocols_do_not_hold_the_drain() {
    let (_dir, certs, _fake, gw) = gateway_with_one_cert("").await;
    let mut h1 = certs
        .client(Alpn::Http1)
        .connect(gw.addr, "localhost")
        .await
        .expect("h1");
    let mut h2 = certs
        .client(Alpn::H2)
        .connect(gw.addr, "localhost")
        .await
        .expect("h2");
    assert_eq!(h1.get("/api/v1/x").await.status_u16(), 200);
    assert_eq!(h2.get("/api/v1/x").await.status_u16(), 200);
    let started = tokio::time::Instant::now();
    tokio::time::timeout(QUICK, gw.stop())
        .await
        .expect("stop hung")
        .expect("gateway run returned an error");
    // drain_timeout is 5s: idle connections must be closed at once, not waited for.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "idle TLS connections held the drain for {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn in_flight_http2_stream_completes_during_the_drain() {
    let (_dir, certs, fake, gw) = gateway_with_one_cert("").await;
    fake.on(
        "/v1/slow",
        Reply::new().delay(Duration::from_millis(800)).body("done"),
    );
    let mut conn = certs
        .client(Alpn::H2)
        .connect(gw.addr, "localhost")
        .await
        .expect("h2");
    let slow = tokio::spawn(async move { conn.try_send("GET", "/api/v1/slow", &[], "").await });
    assert!(fake.wait_for_requests(1, Duration::from_secs(5)).await);
    gw.begin_shutdown();
    let resp = tokio::time::timeout(QUICK, slow)
        .await
        .expect("in-flight h2 stream never finished")
        .expect("task")
        .expect("in-flight h2 stream failed during the drain");
    assert_eq!((resp.status_u16(), resp.text().as_str()), (200, "done"));
    tokio::time::timeout(QUICK, gw.join())
        .await
        .expect("drain never finished")
        .expect("gateway run returned an error");
}
