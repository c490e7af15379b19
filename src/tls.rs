//! The server's certificate: loading, first-run generation and reloading.
//!
//! With `--cert`/`--key` the given PEM files are used. Without them the
//! pair [`DEFAULT_CERT`] and [`DEFAULT_KEY`] in the certificate directory
//! (`--cert-dir`, by default `--state-dir`) is used, and generated
//! (self-signed, for localhost, 127.0.0.1 and ::1) when it does not exist
//! yet, so the default run serves TLS with no setup, and a service whose
//! working directory is read-only writes it where it keeps its state. [`Certificates::reload`] swaps in a new
//! pair for new handshakes; connections already up keep theirs, and a bad
//! file leaves the old pair in place.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

/// The certificate's file in the certificate directory, when no `--cert`
/// is given.
pub const DEFAULT_CERT: &str = "cert.pem";
/// The key's file in the certificate directory, when no `--key` is given.
pub const DEFAULT_KEY: &str = "key.pem";

/// What can go wrong with a certificate pair.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The files do not hold a usable certificate chain and key.
    #[error("{0}")]
    Invalid(String),
}

/// The current TLS configuration, shared by every TLS listener.
#[derive(Debug)]
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    /// Read once per handshake; replaced whole on reload.
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificates {
    /// Loads the pair at the given paths, or the default pair in `dir`
    /// (generating it, and `dir`, if both files are missing).
    pub fn load(
        cert: Option<&Path>,
        key: Option<&Path>,
        dir: &Path,
    ) -> Result<Arc<Self>, CertError> {
        let (cert, key) = paths(cert, key, dir)?;
        if !cert.exists() && !key.exists() {
            generate(&cert, &key)?;
        }
        let config = build(&cert, &key)?;
        Ok(Arc::new(Certificates {
            cert,
            key,
            current: RwLock::new(config),
        }))
    }

    /// Checks what [`Certificates::load`] would load, without generating
    /// anything: a pair that exists must be usable; a default pair that
    /// does not exist yet is fine, since it would be generated.
    pub fn check(cert: Option<&Path>, key: Option<&Path>, dir: &Path) -> Result<(), CertError> {
        let generated = cert.is_none();
        let (cert, key) = paths(cert, key, dir)?;
        if generated && !cert.exists() && !key.exists() {
            return Ok(());
        }
        build(&cert, &key).map(drop)
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again; on any error keeps the old pair and says why.
    pub fn reload(&self) -> Result<(), CertError> {
        let config = build(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }
}

/// The pair's paths: both given, or both the defaults in `dir`.
fn paths(
    cert: Option<&Path>,
    key: Option<&Path>,
    dir: &Path,
) -> Result<(PathBuf, PathBuf), CertError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok((cert.to_owned(), key.to_owned())),
        (None, None) => Ok((dir.join(DEFAULT_CERT), dir.join(DEFAULT_KEY))),
        _ => Err(CertError::Invalid("--cert and --key go together".into())),
    }
}

fn build(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, CertError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |e: rustls::pki_types::pem::Error| match e {
            rustls::pki_types::pem::Error::Io(source) => CertError::Io { path, source },
            other => CertError::Invalid(format!("{}: {other}", path.display())),
        }
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(io_err(cert_path))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(cert_path))?;
    if chain.is_empty() {
        return Err(CertError::Invalid(format!(
            "{}: no certificate found",
            cert_path.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(io_err(key_path))?;
    let fingerprint = fingerprint(&chain[0]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| CertError::Invalid(format!("{}: {e}", cert_path.display())))?;
    // Chat sessions are long-lived; resumption tickets would cost memory per
    // connection for a saving no chat user notices.
    config.send_tls13_tickets = 0;
    info!(cert = %cert_path.display(), sha256 = %fingerprint, "certificate loaded");
    Ok(Arc::new(config))
}

/// The SHA-256 fingerprint of a certificate, as `AB:CD:...`, which is what
/// a user compares against a browser's or `openssl x509 -fingerprint`'s.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Writes a new self-signed pair for local use.
fn generate(cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| CertError::Invalid(format!("cannot generate a certificate: {e}")))?;
    if let Some(dir) = cert_path.parent() {
        fs::create_dir_all(dir).map_err(|source| CertError::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    write_file(
        key_path,
        generated.signing_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_file(cert_path, generated.cert.pem().as_bytes(), 0o644)?;
    warn!(
        cert = %cert_path.display(),
        sha256 = %fingerprint(generated.cert.der()),
        "generated a self-signed certificate for localhost; give --cert and --key to use a real one"
    );
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| CertError::Io {
            path: path.to_owned(),
            source,
        })?;
    file.write_all(contents).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}
