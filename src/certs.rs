//! `fxa-gateway gen-cert`: a development CA and ECDSA P-256 server certificates it signs,
//! written as PEM files, so no private key ever needs to live in git.
//!
//! The CA lives in the output directory (`ca.pem`, `ca-key.pem`) and is made only when the
//! directory has none: every later run signs with it, so one `--cacert ca.pem` trusts every
//! certificate issued there (`--file api --name api.example` adds `api.pem` / `api-key.pem`).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
/// Server certificates live 397 days (the CA/Browser Forum limit; Apple's clients refuse more
/// than 825 even from a private CA, and testssl.sh flags longer ones), the CA ten years.
const SERVER_DAYS: i64 = 397;
const CA_DAYS: i64 = 3650;

/// The development CA: its certificate (PEM) and the issuer that signs with its key.
pub struct DevCa {
    pub cert_pem: String,
    /// The CA's private key, PEM.
    pub key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A server certificate and its private key, PEM.
pub struct DevCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a new CA (ECDSA P-256).
pub fn new_ca() -> anyhow::Result<DevCa> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let params = ca_params()?;
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok(DevCa {
        cert_pem: cert.pem(),
        key_pem,
        issuer: Issuer::new(params, key),
    })
}

/// The CA made by an earlier run, from its certificate and key PEM.
pub fn ca_from_pem(cert_pem: &str, key_pem: &str) -> anyhow::Result<DevCa> {
    let key = KeyPair::from_pem(key_pem).context("the CA key is not a PEM private key")?;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .context("the CA certificate is not PEM")?;
    // The issuer is rebuilt from the same parameters (subject, key identifier from the key),
    // so the key must be the one the certificate carries.
    let public = key.public_key_raw();
    if !der.windows(public.len()).any(|w| w == public) {
        bail!("the CA key does not belong to the CA certificate");
    }
    Ok(DevCa {
        cert_pem: cert_pem.to_owned(),
        key_pem: key_pem.to_owned(),
        issuer: Issuer::new(ca_params()?, key),
    })
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "fxa-gateway development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    valid_for(&mut params, CA_DAYS);
    Ok(params)
}

/// From a day ago (clocks behind) for `days` from now; without this rcgen issues certificates
/// valid from 1975 to 4096.
fn valid_for(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days);
}

impl DevCa {
    /// A server certificate for `names` (DNS names or IP addresses), ECDSA P-256.
    pub fn issue(&self, names: &[String]) -> anyhow::Result<DevCertificate> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("localhost"),
        );
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into()?),
            };
            params.subject_alt_names.push(san);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        valid_for(&mut params, SERVER_DAYS);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(DevCertificate {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Issues a certificate for `names` into `dir` as `<file>.pem` and `<file>-key.pem`, signed by
/// the CA in `dir` (made first when `dir` has none). Returns the files written.
pub fn generate_in(dir: &Path, file: &str, names: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    if file.is_empty() || file.contains(['/', '\\']) || file == "ca" {
        bail!("--file {file:?}: give a plain name other than \"ca\" (e.g. \"api\")");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let mut written = Vec::new();
    let ca = match (ca_cert.exists(), ca_key.exists()) {
        (true, true) => {
            let cert = std::fs::read_to_string(&ca_cert)
                .with_context(|| format!("reading {}", ca_cert.display()))?;
            let key = std::fs::read_to_string(&ca_key)
                .with_context(|| format!("reading {}", ca_key.display()))?;
            ca_from_pem(&cert, &key)
                .with_context(|| format!("using the CA in {}", dir.display()))?
        }
        (false, false) => {
            let ca = new_ca()?;
            write_file(&ca_key, &ca.key_pem, true)?;
            write_file(&ca_cert, &ca.cert_pem, false)?;
            written.extend([ca_cert, ca_key]);
            ca
        }
        (true, false) => bail!(
            "{} exists without its key {}: certificates signed by it cannot be added; \
             remove {} to start a new CA (clients must then trust the new one)",
            ca_cert.display(),
            ca_key.display(),
            ca_cert.display()
        ),
        (false, true) => bail!(
            "{} exists without its certificate {}; remove it to start a new CA",
            ca_key.display(),
            ca_cert.display()
        ),
    };
    let leaf = ca.issue(names)?;
    let (cert_path, key_path) = (
        dir.join(format!("{file}.pem")),
        dir.join(format!("{file}-key.pem")),
    );
    write_file(&key_path, &leaf.key_pem, true)?;
    write_file(&cert_path, &leaf.cert_pem, false)?;
    written.extend([cert_path, key_path]);
    Ok(written)
}

/// Writes a PEM file; a private key is created with mode 0600 (never readable by others, not
/// even for a moment).
fn write_file(path: &Path, pem: &str, private: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    if private {
        // An existing file keeps its mode on open: narrow it too.
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = private;
    f.write_all(pem.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
