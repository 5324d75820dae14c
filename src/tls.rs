//! rustls configuration for both sides: the server side terminates TLS 1.2+/1.3 with modern
//! AEAD suites only and picks the certificate by SNI from a [`CertStore`] that a reload swaps
//! (new handshakes see the new certificates; the listener, its socket and its session cache
//! stay); the client side verifies upstreams against the webpki roots and/or an upstream's own
//! CA.
//!
//! One crypto provider only (aws-lc-rs), always passed explicitly.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Server config for a TLS listener: ALPN h2 then http/1.1, certificates from `certs` by SNI.
pub fn server_config(certs: Arc<CertStore>) -> anyhow::Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// Client config for an upstream. No ALPN here: hyper-rustls sets it from the enabled versions.
pub fn client_config(ca_pem: Option<&[u8]>, ca_only: bool) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if !ca_only {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    if let Some(pem) = ca_pem {
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots
                .add(cert.context("upstream CA file")?)
                .context("upstream CA certificate")?;
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// A listener's certificates, replaced whole on reload: a handshake takes one snapshot of
/// them, so it never sees half of an old set and half of a new one.
pub struct CertStore(ArcSwap<SniResolver>);

impl CertStore {
    pub fn new(resolver: SniResolver) -> CertStore {
        CertStore(ArcSwap::from_pointee(resolver))
    }

    /// Loads certificates for `settings` (checking that each key matches its certificate).
    pub fn load(settings: &TlsSettings) -> anyhow::Result<SniResolver> {
        SniResolver::new(settings, &provider())
    }

    /// New handshakes use `resolver` from now on.
    pub fn replace(&self, resolver: SniResolver) {
        self.0.store(Arc::new(resolver));
    }
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CertStore").field(&self.0.load()).finish()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load().resolve(hello)
    }
}

/// Picks a certificate by SNI name (exact, then `*.` wildcard), else the first one configured.
#[derive(Debug)]
pub struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(settings: &TlsSettings, provider: &CryptoProvider) -> anyhow::Result<SniResolver> {
        let mut by_name = HashMap::new();
        let mut default = None;
        for (i, c) in settings.certificates.iter().enumerate() {
            let certs = CertificateDer::pem_slice_iter(&c.cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("certificate {i}: PEM"))?;
            let key = PrivateKeyDer::from_pem_slice(c.key_pem.expose())
                .with_context(|| format!("certificate {i}: private key PEM"))?;
            let certified = Arc::new(CertifiedKey::from_der(certs, key, provider).with_context(
                || format!("certificate {i}: key does not load or does not match"),
            )?);
            for name in &c.server_names {
                by_name.insert(name.to_ascii_lowercase(), certified.clone());
            }
            default.get_or_insert(certified);
        }
        let default = default.context("a TLS listener needs at least one certificate")?;
        Ok(SniResolver { by_name, default })
    }

    fn lookup(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.by_name.get(&name) {
            return Some(k.clone());
        }
        let (_, parent) = name.split_once('.')?;
        self.by_name.get(&format!("*.{parent}")).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|n| self.lookup(n))
            .or_else(|| Some(self.default.clone()))
    }
}
