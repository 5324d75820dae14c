//! `[[listeners]]`: addresses, the plain-HTTP-on-loopback rule, and TLS certificates (read and
//! checked here so a bad PEM fails `--check`, not the first handshake).

use std::collections::HashSet;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{Context, UniqueNames, dns_name};
use crate::config::Problems;
use crate::config::model::{CertificateConfig, ListenerConfig, TlsSettings};
use crate::config::net::parse_listen_addr;
use crate::config::raw::{RawCertificate, RawListener, RawTls};
use crate::config::secret::{read_file, resolve_path};

pub fn validate(
    raw: &[Option<RawListener>],
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Vec<Option<ListenerConfig>> {
    let mut names = UniqueNames::new("listener");
    let mut addrs = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let Some(l) = l else {
            out.push(None);
            continue;
        };
        let key = format!("listeners[{i}]");
        if let Some(name) = &l.name {
            names.check(name, &format!("{key}.name"), p);
        }
        let addr = l.addr.as_deref().and_then(|a| {
            parse_listen_addr(a)
                .map_err(|e| p.at(format!("{key}.addr"), e))
                .ok()
        });
        // Port 0 (tests) means "any free port": several such listeners do not clash.
        if let Some(addr) = addr
            && addr.port() != 0
            && !addrs.insert(addr)
        {
            p.at(
                format!("{key}.addr"),
                format!("{addr} is used by another listener"),
            );
        }
        // Checked whatever the address: its files are checked in the same run.
        let tls = l
            .tls
            .as_ref()
            .map(|t| tls(t, &format!("{key}.tls"), ctx, p));
        if let Some(addr) = addr
            && tls.is_none()
            && !addr.ip().is_loopback()
            && !l.allow_plain_non_loopback
        {
            p.at(
                format!("{key}.addr"),
                format!(
                    "plain HTTP on non-loopback address {addr}: add [listeners.tls] \
                     certificates, or set allow_plain_non_loopback = true if a trusted \
                     network really needs it"
                ),
            );
        }
        let (Some(name), Some(addr)) = (&l.name, addr) else {
            out.push(None);
            continue;
        };
        out.push(Some(ListenerConfig {
            name: name.clone(),
            addr,
            tls,
            allow_plain_non_loopback: l.allow_plain_non_loopback,
            // Refresh tokens may only travel between the RP and the OAuth server: a sidecar
            // on loopback is the RP's own host; anywhere else the operator must say so.
            accept_refresh_token: l
                .accept_refresh_token
                .unwrap_or_else(|| addr.ip().is_loopback()),
            allow_underscore_headers: l.allow_underscore_headers,
        }));
    }
    out
}

fn tls(raw: &RawTls, key: &str, ctx: &Context<'_>, p: &mut Problems) -> TlsSettings {
    if raw.certificates.is_empty() {
        p.at(
            format!("{key}.certificates"),
            "a TLS listener needs at least one [[listeners.tls.certificates]]",
        );
    }
    let mut seen = HashSet::new();
    let certificates = raw
        .certificates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let key = format!("{key}.certificates[{i}]");
            let cert = certificate(c.as_ref()?, &key, ctx, p)?;
            for (j, name) in cert.server_names.iter().enumerate() {
                if !seen.insert(name.clone()) {
                    p.at(
                        format!("{key}.server_names[{j}]"),
                        format!("{name:?} is already served by another certificate"),
                    );
                }
            }
            Some(cert)
        })
        .collect();
    TlsSettings { certificates }
}

fn certificate(
    raw: &RawCertificate,
    key: &str,
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<CertificateConfig> {
    let server_names: Vec<String> = raw
        .server_names
        .iter()
        .enumerate()
        .filter_map(|(j, n)| {
            dns_name(n, true)
                .map_err(|e| p.at(format!("{key}.server_names[{j}]"), e))
                .ok()
        })
        .collect();
    let cert_pem = raw.cert.as_ref().and_then(|cert| {
        read_file(&resolve_path(ctx.base_dir, cert))
            .and_then(|pem| check_certificates(&pem).map(|()| pem))
            .map_err(|e| p.at(format!("{key}.cert"), e))
            .ok()
    });
    let key_pem = raw.key.as_ref().and_then(|k| {
        k.resolve_with(ctx.base_dir, ctx.env)
            .and_then(|s| check_private_key(s.expose()).map(|()| s))
            .map_err(|e| p.at(format!("{key}.key"), e))
            .ok()
    });
    Some(CertificateConfig {
        cert_pem: cert_pem?,
        key_pem: key_pem?,
        server_names,
    })
}

/// The PEM holds at least one `CERTIFICATE` block and every one of them decodes.
pub(super) fn check_certificates(pem: &[u8]) -> Result<(), String> {
    let mut count = 0;
    for item in CertificateDer::pem_slice_iter(pem) {
        item.map_err(|e| format!("invalid PEM certificate: {e}"))?;
        count += 1;
    }
    if count == 0 {
        return Err("contains no PEM CERTIFICATE block".to_owned());
    }
    Ok(())
}

/// The PEM holds a private key (PKCS#8, PKCS#1 or SEC1). The message never quotes the input.
fn check_private_key(pem: &[u8]) -> Result<(), String> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(_) => Ok(()),
        Err(pem::Error::NoItemsFound) => Err(
            "contains no PEM private key (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)"
                .to_owned(),
        ),
        Err(_) => Err("the private key is not valid PEM".to_owned()),
    }
}
