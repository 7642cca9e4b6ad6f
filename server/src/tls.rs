//! The gateway's TLS: a given certificate, or a self-signed one created in the data dir (its
//! SHA-256 fingerprint is what `hoop login` pins).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// The certificate the gateway serves, with its pin.
pub struct TlsMaterial {
    /// rustls server configuration (ALPN h2 and http/1.1).
    pub config: Arc<ServerConfig>,
    /// `SHA256:<hex>` of the leaf certificate.
    pub fingerprint: String,
    /// True when hoopd created the certificate itself.
    pub self_signed: bool,
    /// Where the certificate is.
    pub cert_path: PathBuf,
}

/// Writes a file readable only by its owner, atomically enough for key material.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `SHA256:<hex>` of a DER certificate, the form `hoop` shows and pins.
pub fn fingerprint(der: &[u8]) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(der)))
}

/// Loads the configured certificate, or creates (once) a self-signed one in `data_dir` for
/// `localhost`, `127.0.0.1`, `::1` and `extra_names`.
pub fn load_or_create(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    extra_names: &[String],
) -> Result<TlsMaterial, String> {
    let (cert_path, key_path, self_signed) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_path_buf(), k.to_path_buf(), false),
        _ => {
            let c = data_dir.join("tls.crt");
            let k = data_dir.join("tls.key");
            if !c.exists() || !k.exists() {
                let mut names = vec![
                    "localhost".to_string(),
                    "127.0.0.1".to_string(),
                    "::1".to_string(),
                ];
                for n in extra_names {
                    if !names.contains(n) {
                        names.push(n.clone());
                    }
                }
                let ck = rcgen::generate_simple_self_signed(names)
                    .map_err(|e| format!("cannot create a self-signed certificate: {e}"))?;
                let _ = std::fs::remove_file(&k);
                write_private(&k, ck.signing_key.serialize_pem().as_bytes())?;
                std::fs::write(&c, ck.cert.pem())
                    .map_err(|e| format!("cannot write {}: {e}", c.display()))?;
            }
            (c, k, true)
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| format!("cannot read certificate {}: {e}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in {}: {e}", cert_path.display()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| format!("no certificate in {}", cert_path.display()))?;
    let fingerprint = fingerprint(leaf.as_ref());
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("cannot read private key {}: {e}", key_path.display()))?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config: Arc::new(config),
        fingerprint,
        self_signed,
        cert_path,
    })
}
