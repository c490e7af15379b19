//! A TLS client that accepts any server certificate.
//!
//! chatgate's default TLS listener uses a self-signed certificate, and the
//! generator measures speed, not trust: it verifies nothing. It uses the
//! `ring` provider, which builds without cmake.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::LoadError;

/// Accepts every certificate; still checks handshake signatures so the
/// handshake costs what a real client's does.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The process-wide connector, built on first use.
fn connector() -> Result<TlsConnector, LoadError> {
    static CONNECTOR: OnceLock<Result<TlsConnector, String>> = OnceLock::new();
    CONNECTOR
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            };
            let config =
                ClientConfig::builder_with_provider(Arc::<CryptoProvider>::clone(&provider))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth();
            Ok(TlsConnector::from(Arc::new(config)))
        })
        .clone()
        .map_err(LoadError::Tls)
}

/// Runs the TLS handshake over `tcp`, naming `host` as the server.
pub async fn connect(host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, LoadError> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| LoadError::Tls(e.to_string()))?;
    connector()?
        .connect(name, tcp)
        .await
        .map_err(|e| LoadError::Tls(e.to_string()))
}
