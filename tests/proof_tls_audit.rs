//! Issue 15 ("Proof that it holds"), TLS audit: what `scripts/tls-audit.sh` (testssl.sh against
//! the TLS listener, docs/tls-audit.md) found, held by the normal suite.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fxa_gateway::certs;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use support::raw;

const DAY: Duration = Duration::from_secs(86_400);

/// testssl.sh rated `gen-cert`'s server certificate HIGH for its validity (rcgen's default:
/// 1975 to 4096, 774,680 days); Apple's clients refuse any server certificate valid for more
/// than 825 days. It now lives 397 days from a day ago, for server authentication only.
#[test]
fn gen_cert_server_certificates_are_valid_397_days_for_server_auth() {
    let ca = certs::new_ca().expect("CA");
    let leaf = ca.issue(&["localhost".to_owned()]).expect("leaf");
    let verifier =
        rustls::client::WebPkiServerVerifier::builder(Arc::new(raw::ca_roots(&ca.cert_pem)))
            .build()
            .expect("verifier");
    let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).expect("leaf PEM");
    let name = ServerName::try_from("localhost").expect("name");
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    // The verifier also requires the serverAuth extended key usage when one is present.
    let at = |t: Duration| {
        verifier
            .verify_server_cert(&der, &[], &name, &[], UnixTime::since_unix_epoch(t))
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    };
    assert_eq!(at(now), Ok(()));
    assert_eq!(at(now - DAY / 2), Ok(()), "a clock a little behind");
    assert_eq!(at(now + 396 * DAY), Ok(()));
    let late = at(now + 398 * DAY).expect_err("expired after 397 days");
    assert!(late.contains("Expired"), "{late}");
    let early = at(now - 2 * DAY).expect_err("not valid before yesterday");
    assert!(early.contains("NotValidYet"), "{early}");
}
