//! Turning a raw answer into a value or an error: status, problem body, headers, JSON decoding.

use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use crate::error::{Error, Problem};
use crate::headers;
use crate::object::{Object, Response};
use crate::request::Call;
use crate::retry::Outcome;
use crate::trust;

/// A raw answer, before decoding.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// The error and retry outcome of a non-2xx answer.
pub(crate) fn api_failure(call: &Call, answer: &Answer) -> (Error, Outcome) {
    let retry_after = headers::retry_after(&answer.headers);
    let problem = Problem::from_answer(answer.status, &answer.body);
    let outcome = Outcome::Status { status: answer.status, retry_after };
    (Error::Api { method: call.verb.as_str(), path: call.path.clone(), problem, retry_after }, outcome)
}

/// The error and retry outcome of a failure below HTTP.
pub(crate) fn transport_failure(call: &Call, source: reqwest::Error) -> (Error, Outcome) {
    let (method, path) = (call.verb.as_str(), call.path.clone());
    if source.is_timeout() {
        return (Error::Timeout { method, path, after: call.timeout }, Outcome::Interrupted);
    }
    if let Some(problem) = trust::certificate_problem(&source) {
        // The origin only: the certificate belongs to the host, not to the path.
        let endpoint = source.url().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        return (Error::Certificate { method, path, endpoint, problem }, Outcome::Fatal);
    }
    let outcome = if source.is_builder() {
        Outcome::Fatal
    } else if source.is_connect() {
        Outcome::ConnectFailed
    } else {
        Outcome::Interrupted
    };
    (Error::Transport { method, path, source }, outcome)
}

/// Decodes a JSON answer body.
pub(crate) fn decode<T: DeserializeOwned>(call: &Call, answer: &Answer) -> Result<T, Error> {
    serde_json::from_slice(&answer.body).map_err(|e| Error::Decode { method: call.verb.as_str(), path: call.path.clone(), message: e.to_string() })
}

/// Decodes an object answer together with its meaningful headers.
pub(crate) fn respond(call: &Call, answer: Answer) -> Result<Response<Object>, Error> {
    Ok(Response {
        value: decode(call, &answer)?,
        etag: headers::etag(&answer.headers),
        status: answer.status,
        warnings: headers::warnings(&answer.headers),
        replayed: headers::replayed(&answer.headers),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::Url;
    use reqwest::header::HeaderValue;

    use super::*;
    use crate::request::Verb;

    fn call() -> Call {
        let base = Url::parse("http://127.0.0.1:8080").expect("a URL");
        Call::new(Verb::Get, &base, &["v1", "vms", "vm-1"], &[], Duration::from_secs(1))
    }

    fn answer(status: u16, headers: &[(&'static str, &'static str)], body: &str) -> Answer {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(*n, HeaderValue::from_static(v));
        }
        Answer { status, headers: map, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn rate_limited_answers_carry_retry_after_to_error_and_outcome() {
        let (err, outcome) = api_failure(&call(), &answer(429, &[("retry-after", "2")], r#"{"status":429,"detail":"slow down"}"#));
        assert_eq!(outcome, Outcome::Status { status: 429, retry_after: Some(Duration::from_secs(2)) });
        assert!(matches!(err, Error::Api { retry_after: Some(d), .. } if d == Duration::from_secs(2)));
        assert_eq!(err.to_string(), "GET /v1/vms/vm-1: 429 Too Many Requests: slow down");
    }

    #[test]
    fn undecodable_bodies_are_decode_errors_naming_the_call() {
        let err = respond(&call(), answer(200, &[], "not json")).expect_err("not an object");
        assert_eq!(err.metric_label(), "decode");
        assert!(err.to_string().starts_with("GET /v1/vms/vm-1: could not read the answer: "), "{err}");
    }

    #[test]
    fn object_answers_keep_status_and_etag() {
        let r = respond(&call(), answer(200, &[("etag", "\"5\"")], r#"{"id":"vm-1","version":5}"#)).expect("an object");
        assert_eq!((r.status, r.etag.as_deref(), r.value.version(), r.replayed), (200, Some("\"5\""), 5, false));
        assert!(r.warnings.is_empty());
    }
}
