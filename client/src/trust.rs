//! Which server certificates the client trusts (a private CA bundle, or none checked), and a
//! refused certificate told as the reason a person can act on instead of a TLS stack trace.

use std::error::Error as StdError;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls::CertificateError;

use crate::error::Error;

/// Reads a PEM bundle of CA certificates to trust besides the built-in roots.
pub(crate) fn ca_bundle(path: &Path) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem =
        std::fs::read(path).map_err(|e| Error::Config(format!("ca_file {}: cannot read it ({e}); pass a PEM file of CA certificates", path.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| Error::Config(format!("ca_file {}: not a PEM certificate bundle ({e}); pass a PEM file of CA certificates", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("ca_file {}: no PEM certificate in it; pass a PEM file of CA certificates", path.display())));
    }
    Ok(certs)
}

/// Why the server's certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertificateProblem {
    /// The chain does not lead to a trusted root: a private CA the client was not given.
    UnknownIssuer,
    /// The certificate does not name the host the client connected to.
    NameMismatch {
        /// The host of the endpoint.
        expected: String,
        /// The names the certificate holds (empty when rustls did not say).
        presented: Vec<String>,
    },
    /// The certificate's validity ended; `ago` is how long ago, when known.
    Expired {
        /// Time since `notAfter`.
        ago: Option<Duration>,
    },
    /// The certificate's validity has not begun.
    NotValidYet,
    /// Any other refusal, as rustls words it.
    Other(String),
}

/// Completes "the certificate of <endpoint> ...".
impl fmt::Display for CertificateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertificateProblem::UnknownIssuer => f.write_str("is not signed by a trusted CA: pass ca_file / --ca-file with your CA"),
            CertificateProblem::NameMismatch { expected, presented } if presented.is_empty() => {
                write!(f, "is not valid for {expected}: use an endpoint with a name the certificate holds, or reissue it for {expected}")
            }
            CertificateProblem::NameMismatch { expected, presented } => write!(
                f,
                "is not valid for {expected} (it is for {}): use an endpoint with one of those names, or reissue it for {expected}",
                presented.join(", ")
            ),
            CertificateProblem::Expired { ago: Some(ago) } => write!(f, "expired {} ago: renew the server's certificate", rough(*ago)),
            CertificateProblem::Expired { ago: None } => f.write_str("has expired: renew the server's certificate"),
            CertificateProblem::NotValidYet => f.write_str("is not valid yet: check the clocks of the server and this machine"),
            CertificateProblem::Other(reason) => write!(f, "was refused: {reason}"),
        }
    }
}

/// A duration to the unit a person reads: days, hours, minutes or seconds.
fn rough(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// The certificate problem somewhere in an error's cause chain. rustls errors arrive wrapped
/// in (nested) `io::Error`s, whose `source()` skips the wrapped error, so those are opened too.
pub(crate) fn certificate_problem(err: &(dyn StdError + 'static)) -> Option<CertificateProblem> {
    let mut next = Some(err);
    while let Some(e) = next {
        let mut inner = e;
        while let Some(wrapped) = inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            inner = wrapped;
        }
        if let Some(rustls::Error::InvalidCertificate(why)) = inner.downcast_ref::<rustls::Error>() {
            return Some(describe(why));
        }
        next = e.source();
    }
    None
}

/// `DnsName("a.example")` as rustls words a presented name, shown as `a.example`.
fn bare_name(presented: &str) -> String {
    match (presented.find('('), presented.rfind(')')) {
        (Some(open), Some(close)) if open < close => presented[open + 1..close].trim_matches('"').to_string(),
        _ => presented.to_string(),
    }
}

fn describe(why: &CertificateError) -> CertificateProblem {
    match why {
        CertificateError::UnknownIssuer => CertificateProblem::UnknownIssuer,
        CertificateError::NotValidForNameContext { expected, presented } => {
            CertificateProblem::NameMismatch { expected: expected.to_str().into_owned(), presented: presented.iter().map(|p| bare_name(p)).collect() }
        }
        CertificateError::NotValidForName => CertificateProblem::NameMismatch { expected: "this endpoint".to_string(), presented: Vec::new() },
        CertificateError::ExpiredContext { time, not_after } => {
            CertificateProblem::Expired { ago: Some(Duration::from_secs(time.as_secs().saturating_sub(not_after.as_secs()))) }
        }
        CertificateError::Expired => CertificateProblem::Expired { ago: None },
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => CertificateProblem::NotValidYet,
        other => CertificateProblem::Other(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::{ServerName, UnixTime};

    use super::*;

    fn wrapped(why: CertificateError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::InvalidCertificate(why))
    }

    #[test]
    fn a_rustls_error_inside_io_error_is_found() {
        let found = certificate_problem(&wrapped(CertificateError::UnknownIssuer));
        assert_eq!(found, Some(CertificateProblem::UnknownIssuer));
        // hyper-util wraps the TLS connector's io::Error in another one.
        let twice = std::io::Error::other(wrapped(CertificateError::UnknownIssuer));
        assert_eq!(certificate_problem(&twice), Some(CertificateProblem::UnknownIssuer));
        assert_eq!(certificate_problem(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn messages_say_what_to_do() {
        assert_eq!(CertificateProblem::UnknownIssuer.to_string(), "is not signed by a trusted CA: pass ca_file / --ca-file with your CA");
        let name = describe(&CertificateError::NotValidForNameContext {
            expected: ServerName::try_from("127.0.0.1").expect("an IP"),
            presented: vec!["DnsName(\"other.example\")".to_string()],
        });
        assert_eq!(
            name.to_string(),
            "is not valid for 127.0.0.1 (it is for other.example): use an endpoint with one of those names, or reissue it for 127.0.0.1"
        );
        let expired = describe(&CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(Duration::from_secs(10 * 86_400)),
            not_after: UnixTime::since_unix_epoch(Duration::from_secs(7 * 86_400)),
        });
        assert_eq!(expired.to_string(), "expired 3 days ago: renew the server's certificate");
        assert_eq!(describe(&CertificateError::Expired).to_string(), "has expired: renew the server's certificate");
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let missing = dir.path().join("missing.pem");
        let err = ca_bundle(&missing).expect_err("missing file refused").to_string();
        assert!(err.starts_with(&format!("invalid client configuration: ca_file {}: cannot read it", missing.display())), "{err}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = ca_bundle(&empty).expect_err("empty bundle refused").to_string();
        assert!(err.contains("no PEM certificate in it"), "{err}");
    }
}
