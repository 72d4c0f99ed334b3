//! Optional mutual TLS between nodes (`CKV_TLS_CERT`, `CKV_TLS_KEY`, `CKV_TLS_CA`, PEM files).
//!
//! The port stays shared: a connection whose first byte is a TLS handshake record is served over
//! TLS and must present a client certificate signed by the CA; any other connection is plain
//! HTTP (the public REST API). With TLS configured, internal calls are accepted only over such a
//! verified connection (`rpc::auth`), and this node calls its peers over TLS with its own
//! certificate, verifying theirs against the CA and their IP (certificates carry the node's IP
//! as a subject alternative name). Loading only; no serving here.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::config::TlsFiles;

/// The PEM material of this node.
#[derive(Clone)]
pub struct TlsMaterial {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {0}")]
pub struct TlsError(String);

fn e(what: &str, err: impl std::fmt::Display) -> TlsError {
    TlsError(format!("{what}: {err}"))
}

impl TlsMaterial {
    /// Reads the three PEM files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |p: &str| std::fs::read(p).map_err(|err| e(p, err));
        Ok(Self {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            ca: read(&files.ca)?,
        })
    }

    /// The server side: our certificate, client certificates required and verified by the CA.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let provider = Arc::new(crypto::ring::default_provider());
        let certs = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| e("CKV_TLS_CERT", err))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|err| e("CKV_TLS_KEY", err))?;
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(&self.ca) {
            roots
                .add(ca.map_err(|err| e("CKV_TLS_CA", err))?)
                .map_err(|err| e("CKV_TLS_CA", err))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|err| e("client verifier", err))?;
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| e("protocol versions", err))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|err| e("certificate", err))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(cfg)))
    }

    /// The client side: our certificate as identity, peers verified by the CA.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
}
