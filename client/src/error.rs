//! Errors of the platform API client, and the `application/problem+json` body they carry.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::trust::CertificateProblem;

/// How many characters of a non-problem error body are kept in [`Problem::detail`].
const MAX_PLAIN_DETAIL: usize = 300;

/// An RFC 9457 problem document as the platform answers it on every error.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `https://novacron.dev/problems/conflict`.
    #[serde(rename = "type", default)]
    pub problem_type: String,
    /// The HTTP reason phrase, e.g. `Unprocessable Entity`.
    #[serde(default)]
    pub title: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// A sentence about this occurrence.
    #[serde(default)]
    pub detail: String,
    /// The fields at fault, when the problem is about the request body.
    #[serde(default)]
    pub errors: Vec<ProblemField>,
}

/// One field of the request that the server refused, and why.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ProblemField {
    /// The attribute path, e.g. `cpu_cores` or `policy/no-big-vms`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    /// Reads an error answer: the problem document when the body is one, otherwise a
    /// problem built from the status and (a bounded prefix of) the body text. The HTTP
    /// status always wins over a `status` member in the body.
    pub fn from_answer(status: u16, body: &[u8]) -> Problem {
        if let Ok(mut problem) = serde_json::from_slice::<Problem>(body) {
            problem.status = status;
            if problem.title.is_empty() {
                problem.title = reason_phrase(status).to_string();
            }
            return problem;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let detail = match text.char_indices().nth(MAX_PLAIN_DETAIL) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_string(),
        };
        Problem { problem_type: "about:blank".to_string(), title: reason_phrase(status).to_string(), status, detail, errors: Vec::new() }
    }
}

/// One line: `422 Unprocessable Entity: cpu_cores: must be ...; name: ...`. Field errors
/// replace the detail when present, since the server's detail only summarises them.
impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, one_line(&self.title))?;
        if !self.errors.is_empty() {
            f.write_str(":")?;
            for (i, e) in self.errors.iter().enumerate() {
                let sep = if i == 0 { " " } else { "; " };
                write!(f, "{sep}{}: {}", one_line(&e.field), one_line(&e.message))?;
            }
        } else if !self.detail.is_empty() && self.detail != self.title {
            write!(f, ": {}", one_line(&self.detail))?;
        }
        Ok(())
    }
}

/// The standard reason phrase of a status, or `Error` for unknown ones.
fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error")
}

/// Folds line breaks so that every error stays a single log line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a call to the platform API failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-2xx status; `problem` is what it said.
    #[error("{method} {path}: {problem}")]
    Api {
        /// The HTTP method of the call.
        method: &'static str,
        /// The request path (and query), e.g. `/v1/vms/vm-1`.
        path: String,
        /// The problem document (or one built from the status and body text).
        problem: Problem,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// The request could not be sent or its answer could not be read (connect or I/O error).
    #[error("{method} {path}: {}", transport_message(source))]
    Transport {
        /// The HTTP method of the call.
        method: &'static str,
        /// The request path (and query).
        path: String,
        /// The underlying HTTP client error.
        source: reqwest::Error,
    },
    /// The server's TLS certificate did not verify; retrying cannot help.
    #[error("{method} {path}: the certificate of {endpoint} {problem}")]
    Certificate {
        /// The HTTP method of the call.
        method: &'static str,
        /// The request path (and query).
        path: String,
        /// `https://host:port` of the server.
        endpoint: String,
        /// Why the certificate was refused.
        problem: CertificateProblem,
    },
    /// No complete answer arrived within the per-attempt timeout.
    #[error("{method} {path}: no answer within {after:?}")]
    Timeout {
        /// The HTTP method of the call.
        method: &'static str,
        /// The request path (and query).
        path: String,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The server answered 2xx but the body was not what the API promises.
    #[error("{method} {path}: could not read the answer: {message}")]
    Decode {
        /// The HTTP method of the call.
        method: &'static str,
        /// The request path (and query).
        path: String,
        /// What was wrong with the body.
        message: String,
    },
    /// Every allowed attempt failed with a retryable error; `last` is the final one.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// How many attempts were made, the first included.
        attempts: u32,
        /// The error of the last attempt.
        last: Box<Error>,
    },
    /// A retry was due but the retry budget shared by this client's clones was empty.
    #[error("retry budget exhausted, not retrying: {last}")]
    RetryBudgetExhausted {
        /// The error that would have been retried.
        last: Box<Error>,
    },
    /// The client configuration is unusable (bad endpoint, empty API key, ...).
    #[error("invalid client configuration: {0}")]
    Config(String),
}

/// What went wrong, by phase, with the innermost cause ("Connection refused"), which is the
/// part a person needs; reqwest's own message alone is only "error sending request for url".
fn transport_message(err: &reqwest::Error) -> String {
    let phase = if err.is_connect() {
        "could not connect"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut root: &dyn std::error::Error = err;
    while let Some(next) = root.source() {
        root = next;
    }
    format!("{phase}: {root}")
}

impl Error {
    /// The HTTP status the server answered with, looking through retry wrappers.
    pub fn status(&self) -> Option<u16> {
        self.problem().map(|p| p.status)
    }

    /// The server's problem document, looking through retry wrappers.
    pub fn problem(&self) -> Option<&Problem> {
        match self.innermost() {
            Error::Api { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The object does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The change conflicts with the object's state: immutable field, name taken, in use (409).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// The `If-Match` ETag is stale: someone else changed the object (412).
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412)
    }

    /// The failure is transient, so a later attempt may succeed: connect and I/O errors,
    /// timeouts, 429 and 500/502/503/504. Looks through retry wrappers, so an exhausted
    /// retry of a transient failure is still reported as retryable (worth a later requeue).
    pub fn is_retryable(&self) -> bool {
        match self.innermost() {
            Error::Api { problem, .. } => matches!(problem.status, 429 | 500 | 502 | 503 | 504),
            Error::Transport { source, .. } => !source.is_builder(),
            Error::Timeout { .. } => true,
            _ => false,
        }
    }

    /// A short, fixed label for metrics, e.g. `not_found`, `rate_limited`, `timeout`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Api { problem, .. } => match problem.status {
                400 => "bad_request",
                401 => "unauthorized",
                403 => "forbidden",
                404 => "not_found",
                409 => "conflict",
                412 => "precondition_failed",
                422 => "unprocessable",
                429 => "rate_limited",
                500..=599 => "server_error",
                _ => "client_error",
            },
            Error::Transport { .. } => "transport",
            Error::Certificate { .. } => "certificate",
            Error::Timeout { .. } => "timeout",
            Error::Decode { .. } => "decode",
            Error::RetriesExhausted { .. } => "retries_exhausted",
            Error::RetryBudgetExhausted { .. } => "retry_budget_exhausted",
            Error::Config(_) => "config",
        }
    }

    /// The fields the server refused, or an empty slice.
    pub fn field_errors(&self) -> &[ProblemField] {
        self.problem().map(|p| p.errors.as_slice()).unwrap_or(&[])
    }

    /// The error behind any retry wrappers.
    fn innermost(&self) -> &Error {
        match self {
            Error::RetriesExhausted { last, .. } | Error::RetryBudgetExhausted { last } => last.innermost(),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validation_problem() -> Problem {
        let body = br#"{"type":"https://novacron.dev/problems/validation","title":"Unprocessable Entity","status":422,
            "detail":"invalid vm: check cpu_cores, name",
            "errors":[{"field":"cpu_cores","message":"cpu_cores must be between 1 and 128, not 0"},
                      {"field":"name","message":"name must match ^[a-z][a-z0-9-]*$"}]}"#;
        Problem::from_answer(422, body)
    }

    fn api(method: &'static str, path: &str, problem: Problem) -> Error {
        Error::Api { method, path: path.to_string(), problem, retry_after: None }
    }

    #[test]
    fn problem_json_is_parsed_with_field_errors() {
        let p = validation_problem();
        assert_eq!(p.problem_type, "https://novacron.dev/problems/validation");
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 2);
        assert_eq!(p.errors[0].field, "cpu_cores");
    }

    #[test]
    fn api_error_display_is_one_line_keeping_field_names() {
        let e = api("POST", "/v1/vms", validation_problem());
        assert_eq!(
            e.to_string(),
            "POST /v1/vms: 422 Unprocessable Entity: cpu_cores: cpu_cores must be between 1 and 128, not 0; \
             name: name must match ^[a-z][a-z0-9-]*$"
        );
    }

    #[test]
    fn api_error_display_uses_detail_without_field_errors() {
        let body = br#"{"type":"t","title":"Precondition Failed","status":412,"detail":"If-Match \"2\" but the vm is at\nversion 3"}"#;
        let e = api("PATCH", "/v1/vms/vm-1", Problem::from_answer(412, body));
        assert_eq!(e.to_string(), "PATCH /v1/vms/vm-1: 412 Precondition Failed: If-Match \"2\" but the vm is at version 3");
        assert!(e.is_precondition_failed());
    }

    #[test]
    fn non_problem_body_becomes_a_problem_from_status_and_text() {
        let p = Problem::from_answer(502, b"  <html>Bad gateway</html>\n");
        assert_eq!(p.status, 502);
        assert_eq!(p.title, "Bad Gateway");
        assert_eq!(p.detail, "<html>Bad gateway</html>");
        assert!(p.errors.is_empty());
        let empty = Problem::from_answer(503, b"");
        assert_eq!(api("GET", "/readyz", empty).to_string(), "GET /readyz: 503 Service Unavailable");
    }

    #[test]
    fn long_plain_bodies_are_truncated() {
        let body = "x".repeat(5000);
        let p = Problem::from_answer(500, body.as_bytes());
        assert_eq!(p.detail.chars().count(), MAX_PLAIN_DETAIL + 1);
    }

    #[test]
    fn http_status_wins_over_body_status_and_missing_title_is_filled() {
        let p = Problem::from_answer(404, br#"{"status":500,"detail":"no vm vm-9"}"#);
        assert_eq!(p.status, 404);
        assert_eq!(p.title, "Not Found");
    }

    #[test]
    fn classification_looks_through_retry_wrappers() {
        let unavailable = Problem::from_answer(503, br#"{"title":"Service Unavailable","status":503,"detail":"chaos"}"#);
        let e = Error::RetriesExhausted { attempts: 5, last: Box::new(api("GET", "/v1/vms", unavailable)) };
        assert_eq!(e.status(), Some(503));
        assert!(e.is_retryable());
        assert_eq!(e.metric_label(), "retries_exhausted");
        assert_eq!(e.to_string(), "gave up after 5 attempts: GET /v1/vms: 503 Service Unavailable: chaos");

        let conflict = Problem::from_answer(409, br#"{"status":409,"errors":[{"field":"cidr","message":"immutable"}]}"#);
        let e = Error::RetryBudgetExhausted { last: Box::new(api("PATCH", "/v1/networks/n1", conflict)) };
        assert!(e.is_conflict());
        assert!(!e.is_retryable());
        assert_eq!(e.field_errors()[0].field, "cidr");
    }

    #[test]
    fn metric_labels_follow_status() {
        let label = |s| api("GET", "/", Problem::from_answer(s, b"")).metric_label();
        assert_eq!(label(404), "not_found");
        assert_eq!(label(429), "rate_limited");
        assert_eq!(label(504), "server_error");
        assert_eq!(label(418), "client_error");
        let t = Error::Timeout { method: "GET", path: "/v1/events".into(), after: Duration::from_secs(3) };
        assert_eq!(t.metric_label(), "timeout");
        assert!(t.is_retryable());
        assert!(!Error::Config("x".into()).is_retryable());
        assert!(Error::Config("x".into()).field_errors().is_empty());
    }
}
