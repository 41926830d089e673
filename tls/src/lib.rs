//! HTTPS for NovaCron's servers: the platform (`--tls-cert`, `--tls-key`) and the reconciler's
//! `serve` (`tls_cert`, `tls_key` in its config). PEM files are checked when the server starts,
//! reread on demand (SIGHUP) without dropping open connections, and served by [`serve`], an accept
//! loop that completes each TLS handshake before handing the connection to an axum router.

use std::fmt;
use std::future::Future;
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
use tokio_rustls::TlsAcceptor;

#[cfg(feature = "testing")]
pub mod testing;

/// A handshake that has not finished by then is dropped, so silent peers cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate chain and private key a server presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM file holding the server certificate, then any intermediates.
    pub cert: PathBuf,
    /// PEM file holding the private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How the user named the two files, so that every error points at what to change: the
/// platform's flags or the serve config's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The certificate's flag or key, e.g. `--tls-cert`.
    pub cert: &'static str,
    /// The private key's flag or key, e.g. `--tls-key`.
    pub key: &'static str,
}

impl Setting {
    /// The platform's command-line flags.
    pub const FLAGS: Setting = Setting { cert: "--tls-cert", key: "--tls-key" };
    /// The keys of the reconciler's serve config.
    pub const CONFIG_KEYS: Setting = Setting { cert: "tls_cert", key: "tls_key" };
}

/// Why the certificate files cannot be served; each message names the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{setting} {}: cannot read it ({source}); pass a readable PEM file", path.display())]
    Read {
        /// The flag or config key that named the file.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The certificate file holds no (readable) PEM certificate.
    #[error("{setting} {}: no PEM certificate in it{}; pass the server certificate (then its chain) as PEM", path.display(), detail(reason))]
    NoCertificate {
        /// The certificate's flag or config key.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, when it said something.
        reason: Option<String>,
    },
    /// The key file holds no (readable) PEM private key.
    #[error("{setting} {}: no PEM private key in it{}; pass the certificate's private key as PEM (PKCS#8, PKCS#1 or SEC1)", path.display(), detail(reason))]
    NoKey {
        /// The key's flag or config key.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What the PEM parser said, when it said something.
        reason: Option<String>,
    },
    /// The private key is of a kind rustls cannot sign with.
    #[error("{setting} {}: unsupported private key ({reason}); pass an RSA, ECDSA (P-256/P-384) or Ed25519 key", path.display())]
    UnsupportedKey {
        /// The key's flag or config key.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("{} {} does not match the certificate in {} {}; pass the key the certificate was issued for", setting.key, key.display(), setting.cert, cert.display())]
    KeyMismatch {
        /// How the two files were named.
        setting: Setting,
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// The first certificate could not be parsed.
    #[error("{setting} {}: the certificate cannot be used ({reason}); pass a valid X.509 certificate as PEM", path.display())]
    BadCertificate {
        /// The certificate's flag or config key.
        setting: &'static str,
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
fn load(files: &TlsFiles, setting: Setting) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read(setting.cert, &files.cert)?;
    let key_pem = read(setting.key, &files.key)?;
    let no_cert = |reason| TlsError::NoCertificate { setting: setting.cert, path: files.cert.clone(), reason };
    let chain = CertificateDer::pem_slice_iter(&cert_pem).collect::<Result<Vec<_>, _>>().map_err(|e| no_cert(Some(e.to_string())))?;
    if chain.is_empty() {
        return Err(no_cert(None));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::NoKey {
        setting: setting.key,
        path: files.key.clone(),
        reason: match e {
            pem::Error::NoItemsFound => None,
            other => Some(other.to_string()),
        },
    })?;
    let signing_key = provider().key_provider.load_private_key(key).map_err(|e| TlsError::UnsupportedKey {
        setting: setting.key,
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        // `Unknown`: the key type cannot tell its public key; the handshake will show a mismatch.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsError::KeyMismatch { setting, key: files.key.clone(), cert: files.cert.clone() })
        }
        Err(other) => Err(TlsError::BadCertificate { setting: setting.cert, path: files.cert.clone(), reason: other.to_string() }),
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { setting, path: path.to_path_buf(), source })
}

/// The served certificate: every new handshake takes the current one, so a reload reaches new
/// connections while open ones keep the certificate they were set up with.
pub struct ReloadableCert {
    files: TlsFiles,
    setting: Setting,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    /// Loads the files once; a start with bad files fails here, before anything listens.
    pub fn open(files: TlsFiles, setting: Setting) -> Result<Arc<ReloadableCert>, TlsError> {
        let first = load(&files, setting)?;
        Ok(Arc::new(ReloadableCert { files, setting, current: RwLock::new(Arc::new(first)) }))
    }

    /// The files served.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again and serves them from the next handshake on; on error the
    /// certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let next = Arc::new(load(&self.files, self.setting)?);
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = next;
        Ok(())
    }

    /// The rustls configuration serving this certificate: TLS 1.2 and 1.3 (1.3 preferred),
    /// HTTP/1.1 by ALPN (the workspace builds axum without HTTP/2).
    fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
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
/// `shutdown` completes; then stops accepting and waits for in-flight requests to finish.
/// A connection that speaks plain HTTP fails its handshake and gets no HTTP answer.
pub async fn serve(listener: TcpListener, router: Router, cert: Arc<ReloadableCert>, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(cert.server_config()));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
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
            () = &mut shutdown => break,
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
