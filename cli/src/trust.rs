//! How the CLI trusts a gateway's TLS certificate: the system roots, a CA file, or a pinned
//! SHA-256 fingerprint (self-signed gateways, trust on first use).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use crate::exit::{CliError, CliResult, Exit, usage};

/// `SHA256:<hex>` of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    format!("SHA256:{}", hex::encode(Sha256::digest(der)))
}

/// Checks and normalises a fingerprint typed by a person (`SHA256:AB12...`, case-insensitive,
/// colons between bytes allowed).
pub fn parse_fingerprint(s: &str) -> CliResult<String> {
    let hexpart = s
        .trim()
        .strip_prefix("SHA256:")
        .or_else(|| s.trim().strip_prefix("sha256:"))
        .unwrap_or(s.trim());
    let clean: String = hexpart
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if clean.len() != 64 || !clean.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(usage(format!(
            "{s:?} is not a certificate fingerprint; expected SHA256: followed by 64 hex digits, as `hoopd dev` prints"
        )));
    }
    Ok(format!("SHA256:{clean}"))
}

/// How a gateway is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The operating system's roots.
    System,
    /// Roots from a PEM file.
    CaFile(std::path::PathBuf),
    /// Exactly this leaf certificate.
    Pin(String),
}

/// Accepts exactly one leaf certificate, by fingerprint, and records what it saw so a mismatch
/// can be reported precisely. Handshake signatures are still verified with the provider.
#[derive(Debug)]
pub struct PinVerifier {
    pin: String,
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    fn new(pin: String, seen: Arc<Mutex<Option<String>>>) -> Self {
        Self {
            pin,
            seen,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        }
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(fp.clone());
        }
        if fp == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate does not match the pinned fingerprint".into(),
            ))
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A verifier that accepts anything and records the leaf: used only to *show* a certificate's
/// fingerprint before the user decides to trust it. Nothing is sent over such a connection.
#[derive(Debug)]
struct CaptureVerifier {
    seen: Arc<Mutex<Option<String>>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaptureVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(fingerprint(end_entity.as_ref()));
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects once and returns the fingerprint of the certificate the gateway presents.
pub async fn probe_fingerprint(gateway: &url::Url) -> CliResult<String> {
    let host = gateway
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_string();
    let port = gateway.port_or_known_default().unwrap_or(443);
    let seen = Arc::new(Mutex::new(None));
    let verifier = CaptureVerifier {
        seen: seen.clone(),
        provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    };
    let config = rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .map_err(|_| {
        CliError::new(
            Exit::Unreachable,
            format!("connecting to {gateway} timed out"),
        )
    })?
    .map_err(|e| {
        CliError::new(
            Exit::Unreachable,
            format!("cannot reach the gateway at {gateway}: {e}"),
        )
    })?;
    let name = ServerName::try_from(host.clone())
        .map_err(|_| usage(format!("{host:?} is not a valid host name")))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        connector.connect(name, tcp),
    )
    .await;
    let fp = seen.lock().ok().and_then(|s| s.clone());
    fp.ok_or_else(|| {
        CliError::new(
            Exit::Unreachable,
            format!("{gateway} did not present a TLS certificate; is it a hoop gateway?"),
        )
    })
}

/// A rustls client configuration (ALPN h2, http/1.1) that trusts the gateway as `trust`
/// says; `seen` records the certificate a pinned gateway presented.
pub fn rustls_config(
    trust: &Trust,
    seen: Arc<Mutex<Option<String>>>,
) -> CliResult<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let builder = rustls::ClientConfig::builder();
    let mut config = match trust {
        Trust::System => builder
            .with_platform_verifier()
            .map_err(|e| {
                crate::exit::internal(format!(
                    "cannot load the system's trusted certificates: {e}"
                ))
            })?
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| usage(format!("cannot read CA file {}: {e}", path.display())))?;
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    usage(format!(
                        "CA file {} is not a PEM bundle: {e}",
                        path.display()
                    ))
                })?;
                roots
                    .add(cert)
                    .map_err(|e| usage(format!("CA file {}: {e}", path.display())))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier::new(pin.clone(), seen)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A built reqwest client plus, for pinned gateways, what certificate it last saw.
#[derive(Clone)]
pub struct TrustedClient {
    /// The client.
    pub http: reqwest::Client,
    /// The trust it applies.
    pub trust: Trust,
    seen: Arc<Mutex<Option<String>>>,
}

impl TrustedClient {
    /// What the pinned verifier last saw (shared with tunnel connections).
    pub fn seen(&self) -> Arc<Mutex<Option<String>>> {
        self.seen.clone()
    }

    /// Builds a client that trusts the gateway as `trust` says. No redirects are followed.
    pub fn new(trust: Trust) -> CliResult<Self> {
        let seen = Arc::new(Mutex::new(None));
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(std::time::Duration::from_secs(10))
            .user_agent(concat!("hoop/", env!("CARGO_PKG_VERSION")));
        let builder = match &trust {
            Trust::System => builder,
            Trust::CaFile(path) => builder.tls_certs_only(load_ca(path)?),
            Trust::Pin(pin) => {
                let mut config = rustls::ClientConfig::builder()
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(PinVerifier::new(
                        pin.clone(),
                        seen.clone(),
                    )))
                    .with_no_client_auth();
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                builder.tls_backend_preconfigured(config)
            }
        };
        let http = builder
            .build()
            .map_err(|e| crate::exit::internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { http, trust, seen })
    }

    /// Turns a transport error into the right exit code, naming a changed certificate exactly.
    pub fn explain(&self, gateway: &str, err: &reqwest::Error) -> CliError {
        self.explain_text(gateway, &error_chain(err), err.is_timeout())
    }

    /// Same as [`TrustedClient::explain`] for errors that are not reqwest's (tunnels).
    pub fn explain_text(&self, gateway: &str, text: &str, timeout: bool) -> CliError {
        if let Trust::Pin(pin) = &self.trust
            && let Some(seen) = self.seen.lock().ok().and_then(|s| s.clone())
            && &seen != pin
        {
            {
                {
                    return CliError::new(
                        Exit::Certificate,
                        format!(
                            "the gateway {gateway} presented certificate {seen}, but {pin} is pinned. \
                             If its certificate was replaced on purpose, check the new fingerprint with its operator \
                             and run `hoop login --gateway {gateway} --fingerprint {seen}`; otherwise someone may be \
                             intercepting the connection"
                        ),
                    );
                }
            }
        }
        if text.contains("certificate")
            || text.contains("UnknownIssuer")
            || text.contains("invalid peer")
        {
            return CliError::new(
                Exit::Certificate,
                format!(
                    "the gateway {gateway}'s certificate is not trusted ({text}); give --ca-file, or for a \
                     self-signed gateway run `hoop login --gateway {gateway}` to pin it"
                ),
            );
        }
        if timeout {
            return CliError::new(
                Exit::Timeout,
                format!("the gateway {gateway} did not answer in time"),
            );
        }
        CliError::new(
            Exit::Unreachable,
            format!("cannot reach the gateway {gateway}: {text}"),
        )
    }
}

/// The error and its sources on one line.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn load_ca(path: &Path) -> CliResult<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .map_err(|e| usage(format!("cannot read CA file {}: {e}", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        usage(format!(
            "CA file {} is not a PEM bundle: {e}",
            path.display()
        ))
    })?;
    if certs.is_empty() {
        return Err(usage(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_leniently_and_reject_garbage() {
        let hex64 = "AB".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("SHA256:{hex64}")).unwrap(),
            format!("SHA256:{}", "ab".repeat(32))
        );
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&colons).unwrap(),
            format!("SHA256:{}", "ab".repeat(32))
        );
        assert!(parse_fingerprint("SHA256:abc").is_err());
        assert!(parse_fingerprint(&format!("SHA256:{}", "zz".repeat(32))).is_err());
    }
}
