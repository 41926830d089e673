//! Describing a call before it is sent: method, URL, headers, body and whether repeating it is safe.

use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue, IF_MATCH};
use reqwest::{Method, Url};

use crate::error::Error;
use crate::retry::Idempotency;

/// The header that makes a POST safe to repeat.
pub(crate) const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The media type of API request bodies.
pub(crate) const JSON: &str = "application/json";
/// The media type of PATCH bodies.
pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    Get,
    Post,
    Patch,
    Delete,
}

impl Verb {
    /// The method name, as errors and logs show it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Patch => "PATCH",
            Verb::Delete => "DELETE",
        }
    }

    /// The method for reqwest.
    pub(crate) fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        }
    }
}

/// A serialized request body with its media type.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    pub(crate) bytes: Vec<u8>,
    pub(crate) content_type: &'static str,
}

/// Everything needed to send (and re-send) one call. No Debug on purpose: bodies may carry `user_data`.
pub(crate) struct Call {
    pub(crate) verb: Verb,
    pub(crate) url: Url,
    /// Path and query relative to the host, for errors and logs.
    pub(crate) path: String,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Option<Body>,
    /// Time allowed per attempt.
    pub(crate) timeout: Duration,
    /// False for calls that must report the current state at once (health checks).
    pub(crate) retry: bool,
    /// A dry run (`dry_run=true`): the server writes nothing, so repeating it is always safe.
    pub(crate) dry_run: bool,
}

impl Call {
    /// A call to `base` + `segments` (each percent-encoded as one path segment) + `query`.
    pub(crate) fn new(verb: Verb, base: &Url, segments: &[&str], query: &[(&str, String)], timeout: Duration) -> Call {
        let mut url = base.clone();
        {
            let mut path = url.path_segments_mut().expect("the endpoint was validated to be a base URL");
            path.pop_if_empty();
            path.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Call { verb, url, path, headers: Vec::new(), body: None, timeout, retry: true, dry_run: false }
    }

    /// Makes this write a dry run: adds `dry_run=true` to the query.
    pub(crate) fn dry_run(mut self) -> Call {
        self.url.query_pairs_mut().append_pair("dry_run", "true");
        self.path = match self.url.query() {
            Some(q) => format!("{}?{q}", self.url.path()),
            None => self.url.path().to_string(),
        };
        self.dry_run = true;
        self
    }

    /// Attaches a JSON body, serialized once so that retries resend the same bytes.
    pub(crate) fn body(mut self, value: &serde_json::Value, content_type: &'static str) -> Call {
        let bytes = serde_json::to_vec(value).expect("a serde_json::Value always serializes");
        self.body = Some(Body { bytes, content_type });
        self
    }

    /// Adds a header; `what` names it in the error when the value cannot be sent.
    pub(crate) fn header(mut self, name: HeaderName, value: &str, what: &str) -> Result<Call, Error> {
        let value = HeaderValue::from_str(value).map_err(|_| Error::Config(format!("{what} {value:?} is not a valid HTTP header value")))?;
        self.headers.push((name, value));
        Ok(self)
    }

    /// Whether repeating the call is safe if an earlier attempt may have been applied.
    pub(crate) fn idempotency(&self) -> Idempotency {
        let has = |name: &str| self.headers.iter().any(|(n, _)| n.as_str() == name);
        let safe = self.dry_run
            || match self.verb {
                Verb::Get | Verb::Delete => true,
                Verb::Post => has(IDEMPOTENCY_KEY),
                Verb::Patch => has(IF_MATCH.as_str()),
            };
        if safe { Idempotency::Safe } else { Idempotency::Unsafe }
    }
}

/// `If-Match` takes quoted entity tags; accept a bare version (`3`) as well as `"3"`, `W/"3"` or `*`.
pub(crate) fn quote_etag(etag: &str) -> String {
    let etag = etag.trim();
    if etag == "*" || etag.starts_with('"') || etag.starts_with("W/") { etag.to_string() } else { format!("\"{etag}\"") }
}

/// A fresh random key for `Idempotency-Key`: 128 random bits in hex.
pub(crate) fn new_idempotency_key() -> String {
    format!("{:032x}", fastrand::u128(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(s: &str) -> Url {
        Url::parse(s).expect("a URL")
    }

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn urls_join_segments_and_query() {
        let c = Call::new(Verb::Get, &base("http://127.0.0.1:8080"), &["v1", "vms"], &[("name", "web 1".into()), ("page_size", "500".into())], T);
        assert_eq!(c.url.as_str(), "http://127.0.0.1:8080/v1/vms?name=web+1&page_size=500");
        assert_eq!(c.path, "/v1/vms?name=web+1&page_size=500");
    }

    #[test]
    fn ids_are_escaped_as_one_segment() {
        let c = Call::new(Verb::Get, &base("http://h/"), &["v1", "vms", "../x?y"], &[], T);
        assert_eq!(c.path, "/v1/vms/..%2Fx%3Fy");
    }

    #[test]
    fn a_base_path_is_kept() {
        let c = Call::new(Verb::Delete, &base("https://h/novacron/"), &["v1", "networks", "n1"], &[], T);
        assert_eq!(c.url.as_str(), "https://h/novacron/v1/networks/n1");
        let c = Call::new(Verb::Delete, &base("https://h/novacron"), &["readyz"], &[], T);
        assert_eq!(c.url.as_str(), "https://h/novacron/readyz");
    }

    #[test]
    fn idempotency_follows_method_and_headers() {
        let b = base("http://h");
        let call = |verb| Call::new(verb, &b, &["v1", "vms"], &[], T);
        assert_eq!(call(Verb::Get).idempotency(), Idempotency::Safe);
        assert_eq!(call(Verb::Delete).idempotency(), Idempotency::Safe);
        assert_eq!(call(Verb::Post).idempotency(), Idempotency::Unsafe);
        assert_eq!(call(Verb::Patch).idempotency(), Idempotency::Unsafe);
        let keyed = call(Verb::Post).header(HeaderName::from_static(IDEMPOTENCY_KEY), "k1", "idempotency key").expect("valid");
        assert_eq!(keyed.idempotency(), Idempotency::Safe);
        let guarded = call(Verb::Patch).header(IF_MATCH, "\"3\"", "If-Match").expect("valid");
        assert_eq!(guarded.idempotency(), Idempotency::Safe);
        assert_eq!(call(Verb::Post).dry_run().idempotency(), Idempotency::Safe, "a dry run writes nothing");
        assert_eq!(call(Verb::Patch).dry_run().idempotency(), Idempotency::Safe, "a dry run writes nothing");
    }

    #[test]
    fn dry_runs_add_the_flag_to_url_and_path() {
        let c = Call::new(Verb::Patch, &base("http://h"), &["v1", "vms", "vm-1"], &[], T).dry_run();
        assert_eq!(c.url.as_str(), "http://h/v1/vms/vm-1?dry_run=true");
        assert_eq!(c.path, "/v1/vms/vm-1?dry_run=true");
    }

    #[test]
    fn invalid_header_values_are_config_errors() {
        let c = Call::new(Verb::Post, &base("http://h"), &["v1", "vms"], &[], T);
        let err = c.header(HeaderName::from_static(IDEMPOTENCY_KEY), "a\nb", "idempotency key").err().expect("refused");
        assert_eq!(err.metric_label(), "config");
    }

    #[test]
    fn etags_are_quoted_when_bare() {
        assert_eq!(quote_etag("3"), "\"3\"");
        assert_eq!(quote_etag("\"3\""), "\"3\"");
        assert_eq!(quote_etag("W/\"3\""), "W/\"3\"");
        assert_eq!(quote_etag("*"), "*");
    }

    #[test]
    fn idempotency_keys_are_fresh() {
        let (a, b) = (new_idempotency_key(), new_idempotency_key());
        assert_eq!(a.len(), 32);
        assert_ne!(a, b);
    }
}
