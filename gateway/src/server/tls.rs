//! TLS for the WebSocket listener: a rustls server configuration from the PEM certificate
//! chain and private key named in `gateway.tls`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The TLS certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no PEM certificate.
    #[error(
        "gateway.tls.cert: cannot read a PEM certificate chain from {path}: {detail}; point it at a PEM file (-----BEGIN CERTIFICATE-----)"
    )]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The key file could not be read or holds no PEM private key.
    #[error(
        "gateway.tls.key: cannot read a PEM private key from {path}: {detail}; point it at an unencrypted PKCS#8, PKCS#1 or SEC1 PEM key"
    )]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The certificate and key do not form a valid server configuration.
    #[error(
        "gateway.tls: the certificate {cert} and key {key} cannot be used together: {detail}; check that the key belongs to the certificate"
    )]
    Config {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        detail: String,
    },
}

/// Builds a TLS acceptor (TLS 1.2 and 1.3, ring provider) from PEM files.
pub fn load_tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Certificate {
            path: cert.to_owned(),
            detail: e.to_string(),
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate {
            path: cert.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert.to_owned(),
            detail: "the file contains no certificate".to_owned(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, private_key))
        .map_err(|e| TlsError::Config {
            cert: cert.to_owned(),
            key: key.to_owned(),
            detail: e.to_string(),
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
