//! API errors and their `application/problem+json` answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use novacron_schemas::{FieldError, Violation};
use serde::Serialize;

/// Why a request was refused. Each variant maps to one HTTP status and problem type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed JSON, unknown or read-only fields, bad query parameters (400).
    #[error("bad request: {detail}")]
    BadRequest {
        /// Summary.
        detail: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// Missing or wrong API key; the same answer for both (401). `basic` where the basic-auth
    /// password is accepted too (the Terraform state backend), so the answer says how to send it.
    #[error("unauthorized")]
    Unauthorized {
        /// Whether the route takes basic auth.
        basic: bool,
    },
    /// The key authenticated but lacks the scope the call needs (403). Names the key, never
    /// its secret.
    #[error("API key {key:?} lacks the scope {missing}")]
    MissingScope {
        /// The key's name.
        key: String,
        /// The scope the call needs.
        missing: crate::auth::Scope,
        /// The scopes the key has.
        has: crate::auth::Scopes,
    },
    /// An enabled policy in `block` mode denied the write (403).
    #[error("denied by policy: {}", .violations.iter().map(|(p, m)| format!("{p}: {m}")).collect::<Vec<_>>().join("; "))]
    PolicyDenied {
        /// (policy name, violation message) pairs.
        violations: Vec<(String, String)>,
    },
    /// No such object or collection (404).
    #[error("not found: {detail}")]
    NotFound {
        /// What was looked for.
        detail: String,
    },
    /// The method is not allowed here, e.g. writing the template catalogue (405).
    #[error("method not allowed: {detail}")]
    MethodNotAllowed {
        /// What to do instead.
        detail: String,
    },
    /// Name taken, immutable field changed, object in use, size shrink (409).
    #[error("conflict: {detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// `If-Match` names a version that is no longer current (412).
    #[error("precondition failed: {detail}")]
    PreconditionFailed {
        /// Which versions differ.
        detail: String,
    },
    /// The body is over the size limit (413).
    #[error("payload too large")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Values out of range or ill-formed, broken references, Rego that does not compile (422).
    #[error("unprocessable: {detail}")]
    Unprocessable {
        /// Summary.
        detail: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// Over `--rate-limit-rps` (429).
    #[error("rate limited")]
    RateLimited {
        /// Seconds until a request will be accepted.
        retry_after_secs: u64,
    },
    /// Injected by `--chaos-error-rate`, or the store is unavailable (503).
    #[error("unavailable: {detail}")]
    Unavailable {
        /// Why.
        detail: String,
    },
    /// A bug or an I/O failure in the server (500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(format!("database: {e}"))
    }
}

impl ApiError {
    /// Turns schema validation errors into the right status: 400 for unknown or read-only
    /// fields, 409 for immutable or grow-only changes, 422 for everything else.
    pub fn from_fields(kind: &str, errors: Vec<FieldError>) -> ApiError {
        let has = |vs: &[Violation]| errors.iter().any(|e| vs.contains(&e.violation));
        let fields_where =
            |pred: &dyn Fn(Violation) -> bool| errors.iter().filter(|e| pred(e.violation)).map(|e| e.field.as_str()).collect::<Vec<_>>().join(", ");
        let unwritable = |v: Violation| matches!(v, Violation::Unknown | Violation::ReadOnly);
        if has(&[Violation::Unknown, Violation::ReadOnly]) {
            let others = fields_where(&|v| !unwritable(v));
            let mut detail = format!("the {kind} body has fields that cannot be written: {}", fields_where(&unwritable));
            if !others.is_empty() {
                detail.push_str(&format!("; also invalid: {others}"));
            }
            ApiError::BadRequest { detail, errors }
        } else if has(&[Violation::Immutable, Violation::GrowOnly]) {
            let detail = errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
            ApiError::Conflict { detail, errors }
        } else {
            ApiError::Unprocessable { detail: format!("invalid {kind}: check {}", fields_where(&|_| true)), errors }
        }
    }

    /// One field error with a given classification, as the right status.
    pub fn field(kind: &str, field: &str, violation: Violation, message: impl Into<String>) -> ApiError {
        ApiError::from_fields(kind, vec![FieldError { field: field.to_string(), message: message.into(), violation }])
    }

    /// A bad query parameter or header (400) naming it.
    pub fn bad_param(field: &str, message: String) -> ApiError {
        ApiError::BadRequest { detail: message.clone(), errors: vec![FieldError { field: field.into(), message, violation: Violation::Format }] }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::MissingScope { .. } | ApiError::PolicyDenied { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad-request",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::MissingScope { .. } => "missing-scope",
            ApiError::PolicyDenied { .. } => "policy-denied",
            ApiError::NotFound { .. } => "not-found",
            ApiError::MethodNotAllowed { .. } => "method-not-allowed",
            ApiError::Conflict { .. } => "conflict",
            ApiError::PreconditionFailed { .. } => "precondition-failed",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::Unprocessable { .. } => "validation",
            ApiError::RateLimited { .. } => "rate-limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn problem(&self) -> Problem {
        let status = self.status();
        let (detail, errors) = match self {
            ApiError::BadRequest { detail, errors } | ApiError::Conflict { detail, errors } | ApiError::Unprocessable { detail, errors } => {
                (detail.clone(), errors.iter().map(|e| ProblemField { field: e.field.clone(), message: e.message.clone() }).collect())
            }
            ApiError::Unauthorized { basic: false } => ("a valid API key is required: send Authorization: Bearer <key>".to_string(), vec![]),
            ApiError::Unauthorized { basic: true } => (
                "a valid API key is required: Terraform's backend \"http\" sends it as the basic-auth password \
                 (set username = \"terraform\" in the backend block and the key in TF_HTTP_PASSWORD); other clients send Authorization: Bearer <key>"
                    .to_string(),
                vec![],
            ),
            ApiError::MissingScope { key, missing, has } => {
                (format!("API key {key:?} lacks the scope \"{missing}\" (it has {has}); use a key with {missing}, or add the scope to this key"), vec![])
            }
            ApiError::PolicyDenied { violations } => (
                format!("denied by {} policy violation(s)", violations.len()),
                violations.iter().map(|(p, m)| ProblemField { field: format!("policy/{p}"), message: m.clone() }).collect(),
            ),
            ApiError::NotFound { detail }
            | ApiError::MethodNotAllowed { detail }
            | ApiError::PreconditionFailed { detail }
            | ApiError::Unavailable { detail } => (detail.clone(), vec![]),
            ApiError::PayloadTooLarge { limit } => (format!("the body is larger than {limit} bytes; send less"), vec![]),
            ApiError::RateLimited { retry_after_secs } => (format!("too many requests; retry after {retry_after_secs} s"), vec![]),
            ApiError::Internal(_) => ("the server failed; the request was not applied".to_string(), vec![]),
        };
        Problem {
            problem_type: format!("https://novacron.dev/problems/{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

#[derive(Serialize)]
struct Problem {
    #[serde(rename = "type")]
    problem_type: String,
    title: String,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<ProblemField>,
}

#[derive(Serialize)]
struct ProblemField {
    field: String,
    message: String,
}

/// A problem answer carrying extension members beside the standard ones (RFC 9457 allows
/// them): a 423 merges the lock holder's info in, so Terraform, which reads the body as lock
/// info, finds the holder's `ID` there.
pub fn problem_with_members(status: StatusCode, slug: &str, detail: String, members: &serde_json::Map<String, serde_json::Value>) -> Response {
    let mut body = members.clone();
    body.insert("type".into(), format!("https://novacron.dev/problems/{slug}").into());
    body.insert("title".into(), status.canonical_reason().unwrap_or("Error").into());
    body.insert("status".into(), status.as_u16().into());
    body.insert("detail".into(), detail.into());
    let mut resp = (status, serde_json::Value::Object(body).to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(msg) = &self {
            tracing::error!(error = %msg, "request failed");
        }
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        match &self {
            ApiError::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::Unauthorized { basic } => {
                if *basic {
                    headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"novacron\", charset=\"UTF-8\""));
                }
                headers.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"novacron\""));
            }
            _ => {}
        }
        resp
    }
}
