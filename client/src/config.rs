//! Client settings, and their validation into the base URL and credentials a client uses.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::HeaderValue;

use crate::error::Error;

/// The platform endpoint every NovaCron program uses when none is configured (the provider's
/// `endpoint`, the reconciler's `--endpoint` and serve `endpoint`).
pub const DEFAULT_ENDPOINT: &str = "http://localhost:8080";
/// The default time allowed for one attempt of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The default number of retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 4;

/// How to reach and authenticate to the platform API.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URL of the platform, e.g. `http://127.0.0.1:8080`; `/v1/...` is appended.
    pub endpoint: String,
    /// The API key sent as `Authorization: Bearer <key>`. Never printed.
    pub api_key: String,
    /// Time allowed for one attempt (connect, send, whole answer); default 30 s.
    pub timeout: Duration,
    /// Retries after the first attempt for retryable failures; default 4.
    pub max_retries: u32,
    /// The `User-Agent` header; default `novacron-client/<version>`.
    pub user_agent: String,
    /// PEM bundle of CA certificates trusted besides the built-in roots (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Accept any server certificate. Only for trying things out: a warning is logged for
    /// every client built with it.
    pub insecure: bool,
}

impl ClientConfig {
    /// Settings for `endpoint` and `api_key`, with the default timeout, retries and user agent.
    pub fn new(endpoint: impl Into<String>, api_key: impl Into<String>) -> Self {
        ClientConfig {
            endpoint: endpoint.into(),
            api_key: api_key.into(),
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            user_agent: concat!("novacron-client/", env!("CARGO_PKG_VERSION")).to_string(),
            ca_file: None,
            insecure: false,
        }
    }

    /// Checks the settings and derives what requests are built from.
    pub(crate) fn validate(&self) -> Result<Validated, Error> {
        let base = parse_endpoint(&self.endpoint)?;
        if self.api_key.trim().is_empty() {
            return Err(Error::Config("api_key is empty; set it (e.g. from NOVACRON_API_KEY)".to_string()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", self.api_key))
            .map_err(|_| Error::Config("api_key holds characters that cannot be sent in an HTTP header".to_string()))?;
        authorization.set_sensitive(true);
        if self.timeout.is_zero() {
            return Err(Error::Config("timeout must be greater than zero".to_string()));
        }
        let user_agent =
            HeaderValue::from_str(&self.user_agent).map_err(|_| Error::Config(format!("user_agent {:?} is not a valid header value", self.user_agent)))?;
        let endpoint = self.endpoint.trim().trim_end_matches('/').to_string();
        Ok(Validated { base, endpoint, authorization, user_agent })
    }
}

/// The api key is shown only as whether it is set.
impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.api_key.is_empty() { "<empty>" } else { "<redacted>" };
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("api_key", &format_args!("{key}"))
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("user_agent", &self.user_agent)
            .field("ca_file", &self.ca_file)
            .field("insecure", &self.insecure)
            .finish()
    }
}

/// A configuration that passed [`ClientConfig::validate`].
pub(crate) struct Validated {
    /// The endpoint as a URL whose path ends without a slash.
    pub(crate) base: Url,
    /// The endpoint as given, without trailing slashes.
    pub(crate) endpoint: String,
    /// `Bearer <key>`, marked sensitive so HTTP-layer logging hides it.
    pub(crate) authorization: HeaderValue,
    /// The `User-Agent` header.
    pub(crate) user_agent: HeaderValue,
}

/// Parses the endpoint: an absolute http(s) URL with a host, without credentials, query or fragment.
fn parse_endpoint(endpoint: &str) -> Result<Url, Error> {
    let trimmed = endpoint.trim();
    let hint = "expected an http:// or https:// URL such as http://127.0.0.1:8080";
    if trimmed.is_empty() {
        return Err(Error::Config(format!("endpoint is empty; {hint}")));
    }
    let url = Url::parse(trimmed).map_err(|e| Error::Config(format!("endpoint {trimmed:?} is not a URL ({e}); {hint}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!("endpoint {trimmed:?} has scheme {:?}; {hint}", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
        return Err(Error::Config(format!("endpoint {trimmed:?} has no host; {hint}")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Printing the endpoint back would leak the credentials it carries.
        return Err(Error::Config("endpoint must not carry user:password; pass the key as api_key".to_string()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!("endpoint {trimmed:?} must not have a query or fragment; {hint}")));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(endpoint: &str) -> String {
        match ClientConfig::new(endpoint, "k").validate() {
            Err(Error::Config(msg)) => msg,
            Err(other) => panic!("expected a config error, got {other}"),
            Ok(_) => panic!("expected {endpoint:?} to be refused"),
        }
    }

    #[test]
    fn defaults() {
        let c = ClientConfig::new("http://127.0.0.1:8080", "secret");
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.max_retries, 4);
        assert!(c.user_agent.starts_with("novacron-client/"));
    }

    #[test]
    fn debug_redacts_the_api_key() {
        let c = ClientConfig::new("http://127.0.0.1:8080", "s3cr3t-key-value");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("api_key: <redacted>"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:8080"), "{shown}");
        let empty = format!("{:?}", ClientConfig::new("http://h", ""));
        assert!(empty.contains("api_key: <empty>"), "{empty}");
    }

    #[test]
    fn endpoint_validation_messages_say_what_is_expected() {
        let msg = config_error("localhost:8080");
        assert_eq!(msg, "endpoint \"localhost:8080\" has scheme \"localhost\"; expected an http:// or https:// URL such as http://127.0.0.1:8080");
        assert!(config_error("ftp://example.com").contains("has scheme \"ftp\""));
        assert!(config_error("127.0.0.1:8080").contains("is not a URL"));
        assert!(config_error("").starts_with("endpoint is empty"));
        assert!(config_error("http://h/?x=1").contains("must not have a query"));
        let creds = config_error("http://admin:hunter2@h:8080");
        assert!(!creds.contains("hunter2"), "{creds}");
    }

    #[test]
    fn api_key_must_be_set_and_sendable() {
        let err = ClientConfig::new("http://h", "  ").validate().err().expect("empty key refused");
        assert_eq!(err.to_string(), "invalid client configuration: api_key is empty; set it (e.g. from NOVACRON_API_KEY)");
        let err = ClientConfig::new("http://h", "bad\nkey").validate().err().expect("newline refused");
        assert!(!err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn valid_endpoints_keep_their_base_path() {
        let v = ClientConfig::new("https://api.example.com/novacron/", "k").validate().expect("valid");
        assert_eq!(v.endpoint, "https://api.example.com/novacron");
        assert_eq!(v.base.path(), "/novacron/");
        assert!(v.authorization.is_sensitive());
        let mut zero = ClientConfig::new("http://h", "k");
        zero.timeout = Duration::ZERO;
        assert!(zero.validate().is_err());
    }
}
