//! A private CA for tests: made with rcgen in a temporary directory, issuing server
//! certificates (valid, expired, or for other names) into it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::TlsFiles;

/// The names a certificate for a server on this machine is valid for.
pub const LOCAL_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// A CA in a temp dir (`ca.pem`) that issues server certificates into it.
pub struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    /// A new CA; panics when the directory cannot be written (a test's environment is broken).
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir for the CA");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, "novacron test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA certificate");
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("write ca.pem");
        Pki { dir, ca }
    }

    /// The directory the CA and its certificates are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate (PEM), what clients are told to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a certificate for `names` with common name `tag`, written as `<tag>.crt` and
    /// `<tag>.key`; `expired` makes one that ran out in 2021.
    pub fn issue(&self, tag: &str, names: &[&str], expired: bool) -> TlsFiles {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, tag);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        let files = TlsFiles { cert: self.dir.path().join(format!("{tag}.crt")), key: self.dir.path().join(format!("{tag}.key")) };
        std::fs::write(&files.cert, cert.pem()).expect("write cert");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// A valid certificate for this machine's names.
    pub fn local(&self, tag: &str) -> TlsFiles {
        self.issue(tag, &LOCAL_NAMES, false)
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// The DER of the certificate a fresh TLS connection to `addr` (`host:port`) is shown, verified
/// against `ca_file` for the name 127.0.0.1.
pub async fn served_certificate(addr: &str, ca_file: &Path) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(ca.expect("CA cert")).expect("add CA");
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("IP name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("peer certificates")[0].to_vec()
}

/// The DER of the (first) certificate in a PEM file.
pub fn cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).expect("cert PEM").to_vec()
}
