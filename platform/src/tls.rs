//! HTTPS for the platform: PEM files loaded into a certificate that SIGHUP can swap, and the
//! accept loop that serves the API over TLS.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

/// A handshake that has not finished by then is dropped, so silent peers cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key the platform serves HTTPS with (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file holding the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file holding the private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why the certificate files cannot be served; each message names the flag and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{flag} {}: cannot read it ({source}); pass a readable PEM file", path.display())]
    Read {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The certificate file holds no (readable) PEM certificate.
    #[error("--tls-cert {}: no PEM certificate in it{}; pass the server certificate (then its chain) as PEM", path.display(), detail(reason))]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, when it said something.
        reason: Option<String>,
    },
    /// The key file holds no (readable) PEM private key.
    #[error("--tls-key {}: no PEM private key in it{}; pass the certificate's private key as PEM (PKCS#8, PKCS#1 or SEC1)", path.display(), detail(reason))]
    NoKey {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, when it said something.
        reason: Option<String>,
    },
    /// The private key is of a kind rustls cannot sign with.
    #[error("--tls-key {}: unsupported private key ({reason}); pass an RSA, ECDSA (P-256/P-384) or Ed25519 key", path.display())]
    UnsupportedKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("--tls-key {} does not match the certificate in --tls-cert {}; pass the key the certificate was issued for", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The first certificate could not be parsed.
    #[error("--tls-cert {}: the certificate cannot be used ({reason}); pass a valid X.509 certificate as PEM", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
}

fn detail(reason: &Option<String>) -> String {
    reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the files into what a handshake presents.
pub(crate) fn load(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read("--tls-cert", &files.cert)?;
    let key_pem = read("--tls-key", &files.key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::NoCertificate { path: files.cert.clone(), reason: Some(e.to_string()) })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: files.cert.clone(), reason: None });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey { path: files.key.clone(), reason: None },
        other => TlsError::NoKey { path: files.key.clone(), reason: Some(other.to_string()) },
    })?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(|e| TlsError::UnsupportedKey { path: files.key.clone(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key type cannot tell its public key; the handshake will show a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { key: files.key.clone(), cert: files.cert.clone() })
        }
        Err(other) => Err(TlsError::BadCertificate { path: files.cert.clone(), reason: other.to_string() }),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { flag, path: path.to_path_buf(), source })
}

/// The served certificate: every new handshake takes the current one, so a reload reaches new
/// connections while open ones keep the certificate they were set up with.
pub(crate) struct ReloadableCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Loads the files once; a start with bad files fails here.
    pub(crate) fn open(files: TlsFiles) -> Result<ReloadableCert, TlsError> {
        let first = load(&files)?;
        Ok(ReloadableCert { files, current: RwLock::new(Arc::new(first)) })
    }

    /// Reads the files again and serves them from the next handshake on; on error the
    /// certificate in use stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let next = Arc::new(load(&self.files)?);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        Ok(())
    }

    /// The rustls configuration serving this certificate: TLS 1.2 and 1.3, HTTP/1.1 by ALPN
    /// (the workspace builds axum without HTTP/2).
    pub(crate) fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone())
    }
}

/// Accepts TCP connections, completes their TLS handshake and serves `router` on them until
/// `stopped` fires; then stops accepting and waits for in-flight requests to finish.
pub(crate) async fn serve(listener: TcpListener, router: Router, config: rustls::ServerConfig, stopped: oneshot::Receiver<()>) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stopped);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Like axum::serve: out of file descriptors and the like pass; keep accepting.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
