//! `/v1/{kind}` and `/v1/{kind}/{id}`: list, create, read, merge-patch and delete, and dry runs
//! of create and merge-patch (`?dry_run=true`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use novacron_schemas::Kind;
use serde::Serialize;
use serde_json::{Map, Value};

use super::Actor;
use crate::admission::PolicyVerdict;
use crate::app::{App, Rehearsal, Removal, Written};
use crate::problem::ApiError;
use crate::store::StoredObject;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

fn kind_of(segment: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(segment)
        .ok_or_else(|| ApiError::NotFound { detail: format!("no collection {segment:?}; use vms, networks, volumes, policies or templates") })
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).expect("a quoted integer is a valid header value")
}

/// Header-safe text: no control characters, double quotes replaced.
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                ' '
            } else if c == '"' {
                '\''
            } else {
                c
            }
        })
        .collect()
}

fn object_response(status: StatusCode, object: &StoredObject) -> Response {
    let mut resp = (status, object.body.clone()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::ETAG, etag(object.version));
    resp
}

fn written_response(kind: Kind, w: Written, created: bool) -> Response {
    let status = StatusCode::from_u16(w.status).unwrap_or(StatusCode::OK);
    let mut resp = object_response(status, &w.object);
    let h = resp.headers_mut();
    if created && let Ok(loc) = HeaderValue::from_str(&format!("/v1/{}/{}", kind.collection(), w.object.id)) {
        h.insert(header::LOCATION, loc);
    }
    if w.replayed {
        h.insert("idempotency-replayed", HeaderValue::from_static("true"));
    }
    for warning in &w.warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 novacron \"{}\"", header_text(warning))) {
            h.append(header::WARNING, v);
        }
    }
    resp
}

/// The body of a dry-run answer.
#[derive(Serialize)]
struct DryRunAnswer<'a> {
    object: &'a Map<String, Value>,
    /// False when any verdict blocks: a real write would be refused with 403.
    allowed: bool,
    verdicts: &'a [PolicyVerdict],
}

/// 200 with the would-be object and the verdicts, also when a `block` policy denies. No
/// `ETag`, `Location` or `Warning` headers: nothing was stored, and the verdicts say it all.
fn rehearsal_response(r: &Rehearsal) -> Response {
    let answer = DryRunAnswer { object: &r.object, allowed: r.verdicts.allowed(), verdicts: &r.verdicts.0 };
    let body = serde_json::to_string(&answer).expect("maps, strings and booleans always serialize");
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Whether the query of a POST or PATCH asks for a dry run. `dry_run` (`true`, `false`, `1`
/// or `0`, at most once) is the only parameter writes take: anything else is refused, so that
/// a misspelt `dry_run` never turns into a real write.
pub(super) fn dry_run_flag(raw: Option<&str>) -> Result<bool, ApiError> {
    let mut flag = None;
    for (key, value) in parse_query(raw.map(str::to_string)) {
        if key != "dry_run" {
            return Err(ApiError::bad_param(&key, format!("unknown query parameter {key:?}; writes take only dry_run")));
        }
        let parsed = match value.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => return Err(ApiError::bad_param("dry_run", format!("dry_run must be true, false, 1 or 0, not {value:?}"))),
        };
        if flag.replace(parsed).is_some() {
            return Err(ApiError::bad_param("dry_run", "give dry_run at most once".into()));
        }
    }
    Ok(flag.unwrap_or(false))
}

/// Reads a body of at most `limit` bytes; a larger one (declared or sent) is a 413.
pub(super) async fn bounded_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::BadRequest { detail: format!("could not read the request body: {e}"), errors: vec![] }
            })
        }
    }
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`].
async fn json_body(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let bytes = bounded_body(headers, body, MAX_BODY_BYTES).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest { detail: "the body is empty; send a JSON object".into(), errors: vec![] });
    }
    serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest { detail: format!("malformed JSON: {e}"), errors: vec![] })
}

pub(super) fn parse_query(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect()
    })
    .unwrap_or_default()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) async fn list(State(app): State<Arc<App>>, Path(segment): Path<String>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let kind = kind_of(&segment)?;
    let request = crate::listing::parse(kind, parse_query(raw))?;
    let (items, next) = app.list(kind, &request)?;
    let mut body = String::with_capacity(items.iter().map(String::len).sum::<usize>() + 64);
    body.push_str("{\"items\":[");
    body.push_str(&items.join(","));
    body.push_str("],\"next_page_token\":");
    body.push_str(&Value::String(next.unwrap_or_default()).to_string());
    body.push('}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

pub(super) async fn create(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path(segment): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&segment)?;
    let dry_run = dry_run_flag(raw.as_deref())?;
    let value = json_body(&headers, body).await?;
    if dry_run {
        // A dry run needs only `read` (a real create needs `write`): the guard checked it
        // (`auth::required_scope`). An Idempotency-Key is ignored: neither consulted nor recorded.
        return Ok(rehearsal_response(&app.rehearse_create(kind, &value).await?));
    }
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| ApiError::bad_param("Idempotency-Key", "Idempotency-Key must be 1 to 255 visible ASCII characters".into()))?
                .to_string(),
        ),
    };
    let written = app.create(kind, &actor.0, &value, key.as_deref()).await?;
    Ok(written_response(kind, written, true))
}

pub(super) async fn read(State(app): State<Arc<App>>, Path((segment, id)): Path<(String, String)>, headers: HeaderMap) -> Result<Response, ApiError> {
    let kind = kind_of(&segment)?;
    let object = app.get(kind, &id)?;
    if let Some(v) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok())
        && parse_etag(v) == Some(object.version)
    {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        resp.headers_mut().insert(header::ETAG, etag(object.version));
        return Ok(resp);
    }
    Ok(object_response(StatusCode::OK, &object))
}

/// Parses `"3"` or `W/"3"` into a version.
fn parse_etag(v: &str) -> Option<i64> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

pub(super) async fn update(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path((segment, id)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let kind = kind_of(&segment)?;
    let dry_run = dry_run_flag(raw.as_deref())?;
    let if_match = match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()).map(str::trim) {
        None | Some("*") => None,
        Some(v) => Some(parse_etag(v).ok_or_else(|| ApiError::bad_param("If-Match", format!("If-Match must be an ETag such as \"3\", not {v}")))?),
    };
    let patch = json_body(&headers, body).await?;
    if dry_run {
        // A dry run needs only `read` (a real patch needs `write`): the guard checked it
        // (`auth::required_scope`).
        return Ok(rehearsal_response(&app.rehearse_update(kind, &id, &patch, if_match).await?));
    }
    let written = app.update(kind, &actor.0, &id, &patch, if_match).await?;
    Ok(written_response(kind, written, false))
}

pub(super) async fn remove(
    State(app): State<Arc<App>>,
    Extension(actor): Extension<Actor>,
    Path((segment, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let kind = kind_of(&segment)?;
    match app.delete(kind, &actor.0, &id)? {
        Removal::Gone => Ok(StatusCode::NO_CONTENT.into_response()),
        Removal::Accepted(object) => Ok(object_response(StatusCode::ACCEPTED, &object)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries_and_etags() {
        assert_eq!(percent_decode("a%20b+c"), "a b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(parse_etag("\"3\""), Some(3));
        assert_eq!(parse_etag("W/\"12\""), Some(12));
        assert_eq!(parse_etag("3"), None);
        assert_eq!(header_text("a\"b\nc"), "a'b c");
    }

    #[test]
    fn dry_run_takes_four_spellings_and_nothing_else() {
        for (query, expected) in
            [(None, false), (Some("dry_run=true"), true), (Some("dry_run=1"), true), (Some("dry_run=false"), false), (Some("dry_run=0"), false)]
        {
            assert_eq!(dry_run_flag(query).expect("accepted"), expected, "{query:?}");
        }
        for query in ["dry_run=yes", "dry_run", "dry_run=TRUE", "dry_run=true&dry_run=false", "dryrun=true"] {
            let err = dry_run_flag(Some(query)).expect_err(query);
            assert_eq!(err.status(), StatusCode::BAD_REQUEST, "{query}");
        }
        let err = dry_run_flag(Some("dry_run=yes")).expect_err("bad value");
        assert!(err.to_string().contains("dry_run must be true, false, 1 or 0, not \"yes\""), "{err}");
    }
}
