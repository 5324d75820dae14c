//! Raw-socket helpers shared by the edge tests: TLS client set-up trusting a test CA.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A root store holding every certificate of `ca_pem` (the crypto provider installed first).
pub fn ca_roots(ca_pem: &str) -> rustls::RootCertStore {
    super::client::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    roots
}

/// A client config trusting `ca_pem`, offering the one ALPN protocol `alpn`.
pub fn tls_client_config(ca_pem: &str, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(ca_roots(ca_pem))
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// A TLS connection to `addr` for `localhost`, trusting `ca_pem` and offering `alpn`.
pub async fn tls_connect(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(tls_client_config(ca_pem, alpn));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}
