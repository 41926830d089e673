//! AutoMTLS for go-plugin: a fresh self-signed server certificate, and a TLS acceptor that
//! requires the client certificate Terraform passed in `PLUGIN_CLIENT_CERT`.

use base64::Engine as _;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, SslVerifyMode, SslVersion, select_next_proto};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509, X509NameBuilder};

/// The server side of AutoMTLS.
pub struct AutoMtls {
    /// Accepts connections, requiring the client certificate.
    pub acceptor: SslAcceptor,
    /// The server certificate as the handshake line carries it (base64 of DER, no padding).
    pub cert_line: String,
}

fn server_identity() -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "localhost")?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "NovaCron")?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::from_unix(i64::try_from(now).unwrap_or(0) - 30)?;
    b.set_not_before(&not_before)?;
    let not_after = Asn1Time::days_from_now(3650)?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().digital_signature().key_encipherment().key_agreement().key_cert_sign().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
    let san = SubjectAlternativeName::new().dns("localhost").build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// Builds the acceptor for a client certificate in PEM.
pub fn auto_mtls(client_cert_pem: &str) -> anyhow::Result<AutoMtls> {
    let client = X509::from_pem(client_cert_pem.as_bytes()).map_err(|e| anyhow::anyhow!("PLUGIN_CLIENT_CERT is not a PEM certificate: {e}"))?;
    let (cert, key) = server_identity()?;
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    builder.set_private_key(&key)?;
    builder.set_certificate(&cert)?;
    builder.check_private_key()?;
    builder.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    let mut store = X509StoreBuilder::new()?;
    store.add_cert(client)?;
    builder.set_verify_cert_store(store.build())?;
    builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    // gRPC clients insist on HTTP/2 being negotiated through ALPN.
    builder.set_alpn_select_callback(|_, offered| select_next_proto(b"\x02h2", offered).ok_or(AlpnError::NOACK));
    let der = cert.to_der()?;
    Ok(AutoMtls { acceptor: builder.build(), cert_line: base64::engine::general_purpose::STANDARD_NO_PAD.encode(der) })
}
