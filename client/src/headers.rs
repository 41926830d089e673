//! Reading the response headers the API gives meaning to: ETag, Warning, Retry-After, Idempotency-Replayed.

use std::time::Duration;

use reqwest::header::{ETAG, HeaderMap, RETRY_AFTER, WARNING};

/// The header the server sets on an answer replayed for a repeated `Idempotency-Key`.
pub(crate) const IDEMPOTENCY_REPLAYED: &str = "idempotency-replayed";

/// The `ETag` as sent (quoted, e.g. `"3"`), ready to be passed back in `If-Match`.
pub(crate) fn etag(headers: &HeaderMap) -> Option<String> {
    headers.get(ETAG).and_then(|v| v.to_str().ok()).map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Whether the answer is a replay of an earlier request with the same idempotency key.
pub(crate) fn replayed(headers: &HeaderMap) -> bool {
    headers.get(IDEMPOTENCY_REPLAYED).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `Retry-After` in delta-seconds. HTTP dates are not understood (the platform never sends
/// them) and read as absent, so the computed backoff applies instead.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    text.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(|s| Duration::from_secs_f64(s.min(86_400.0)))
}

/// The text of every warning, across all `Warning` headers, in order.
pub(crate) fn warnings(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(WARNING).iter().filter_map(|v| v.to_str().ok()).flat_map(parse_warning_header).collect()
}

/// Splits one `Warning` header value (`299 novacron "text"[, 299 agent "text" "date"]...`) into
/// the texts inside the quotes, unescaping `\"`. A value that does not follow the
/// `code agent "text"` form is kept whole so that no warning is ever dropped.
pub(crate) fn parse_warning_header(value: &str) -> Vec<String> {
    let mut texts = Vec::new();
    let mut rest = value.trim();
    while !rest.is_empty() {
        match parse_one_warning(rest) {
            Some((text, after)) => {
                texts.push(text);
                rest = after.trim_start().trim_start_matches(',').trim_start();
            }
            None => {
                texts.push(rest.to_string());
                break;
            }
        }
    }
    texts
}

/// Parses `code SP agent SP "text" [SP "date"]`, returning the text and what follows.
fn parse_one_warning(input: &str) -> Option<(String, &str)> {
    let (code, rest) = input.split_once(' ')?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (_agent, rest) = rest.trim_start().split_once(' ')?;
    let (text, rest) = quoted_string(rest.trim_start())?;
    let rest = rest.trim_start();
    // An optional warn-date, itself a quoted string.
    let rest = match rest.starts_with('"').then(|| quoted_string(rest)).flatten() {
        Some((_date, after)) => after,
        None => rest,
    };
    Some((text, rest))
}

/// Reads a leading HTTP quoted-string, returning its unescaped content and the remainder.
fn quoted_string(input: &str) -> Option<(String, &str)> {
    let body = input.strip_prefix('"')?;
    let mut text = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => text.push(chars.next()?.1),
            '"' => return Some((text, &body[i + 1..])),
            other => text.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn warning_text_is_taken_from_inside_the_quotes() {
        assert_eq!(parse_warning_header(r#"299 novacron "vm web has no owner label""#), vec!["vm web has no owner label"]);
    }

    #[test]
    fn warnings_are_collected_from_every_header_and_list_entry() {
        let h = headers(&[
            ("warning", r#"299 novacron "policy a: too big""#),
            ("warning", r#"299 novacron "policy b: say \"hi\"", 299 novacron "third" "Sat, 01 Jan 2000 00:00:00 GMT""#),
        ]);
        assert_eq!(warnings(&h), vec!["policy a: too big", r#"policy b: say "hi""#, "third"]);
    }

    #[test]
    fn malformed_warnings_are_kept_whole() {
        assert_eq!(parse_warning_header("something odd"), vec!["something odd"]);
        assert_eq!(parse_warning_header(r#"299 novacron "unterminated"#), vec![r#"299 novacron "unterminated"#]);
        assert!(parse_warning_header("  ").is_empty());
        assert!(warnings(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn retry_after_reads_seconds() {
        assert_eq!(retry_after(&headers(&[("retry-after", "7")])), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[("retry-after", "0.5")])), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(&headers(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn etag_and_replay_flags() {
        let h = headers(&[("etag", "\"3\""), ("idempotency-replayed", "true")]);
        assert_eq!(etag(&h).as_deref(), Some("\"3\""));
        assert!(replayed(&h));
        assert!(!replayed(&headers(&[("idempotency-replayed", "false")])));
        assert_eq!(etag(&HeaderMap::new()), None);
    }
}
