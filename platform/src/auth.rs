//! API keys: parsing `NAME:SECRET`, reading the key from `Authorization` (bearer or basic), and constant-time lookup.

use sha2::{Digest, Sha256};

/// One accepted API key; `name` is the actor recorded in events.
#[derive(Clone)]
pub struct ApiKey {
    /// Actor name.
    pub name: String,
    secret_digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("name", &self.name).field("secret", &"<redacted>").finish()
    }
}

impl ApiKey {
    /// Parses `NAME:SECRET`. The message never repeats the secret.
    pub fn parse(spec: &str) -> Result<ApiKey, String> {
        let (name, secret) = spec.split_once(':').ok_or_else(|| "an API key must be NAME:SECRET (e.g. admin:s3cret); the colon is missing".to_string())?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
            return Err(format!("API key name {name:?} must be non-empty letters, digits, - _ . or @"));
        }
        if secret.len() < 8 {
            return Err(format!("the secret of API key {name:?} is shorter than 8 characters; use a longer one"));
        }
        Ok(ApiKey { name: name.to_string(), secret_digest: Sha256::digest(secret.as_bytes()).into() })
    }

    /// Parses a comma-separated list, as in `NOVACRON_PLATFORM_API_KEYS`.
    pub fn parse_list(list: &str) -> Result<Vec<ApiKey>, String> {
        list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(ApiKey::parse).collect()
    }
}

/// Finds the key matching `token`. Tokens are compared by digest in constant time, and every
/// key is compared, so timing reveals neither which key matched nor how much of one did.
pub fn authenticate<'a>(keys: &'a [ApiKey], token: &str) -> Option<&'a ApiKey> {
    let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let mut found = None;
    for key in keys {
        let diff = key.secret_digest.iter().zip(digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 && found.is_none() {
            found = Some(key);
        }
    }
    found
}

/// The key an `Authorization` header carries: `Bearer <key>`, or, when `basic` is allowed, the
/// password of `Basic base64(username:key)` (Terraform's http backend sends that; the username
/// is ignored). `None` when the header has neither.
pub fn presented_key(authorization: Option<&str>, basic: bool) -> Option<String> {
    let value = authorization?.trim();
    if let Some(token) = value.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    if !basic {
        return None;
    }
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (_username, password) = text.split_once(':')?;
    Some(password.to_string())
}

/// Standard base64 (RFC 4648, padding optional); `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let trimmed = text.trim_end_matches('=');
    if text.len() - trimmed.len() > 2 || trimmed.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    for chunk in trimmed.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= sextet(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_bearer_or_the_basic_password() {
        // base64("terraform:test-secret-key") and base64("u:k"), as coreutils base64 encodes them.
        let basic = "Basic dGVycmFmb3JtOnRlc3Qtc2VjcmV0LWtleQ==";
        assert_eq!(presented_key(Some(basic), true).as_deref(), Some("test-secret-key"));
        assert_eq!(presented_key(Some(basic), false), None, "basic auth only where allowed");
        assert_eq!(presented_key(Some("basic dTpr"), true).as_deref(), Some("k"));
        assert_eq!(presented_key(Some("Bearer  abc "), false).as_deref(), Some("abc"));
        assert_eq!(presented_key(Some("Basic !!!!"), true), None);
        assert_eq!(presented_key(Some("Basic dGVycmFmb3Jt"), true), None, "no colon, no password");
        assert_eq!(presented_key(None, true), None);
        assert_eq!(base64_decode("YQ"), Some(b"a".to_vec()));
        assert_eq!(base64_decode("YWI="), Some(b"ab".to_vec()));
        assert_eq!(base64_decode("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(base64_decode("Y"), None);
    }

    #[test]
    fn parses_and_authenticates() {
        let keys = ApiKey::parse_list("alice:secret-one, bob:secret-two").expect("valid");
        assert_eq!(authenticate(&keys, "secret-two").map(|k| k.name.as_str()), Some("bob"));
        assert!(authenticate(&keys, "secret-thre").is_none());
        assert!(authenticate(&keys, "").is_none());
        assert!(!format!("{keys:?}").contains("secret-one"));
    }

    #[test]
    fn refuses_bad_specs_without_echoing_secrets() {
        assert!(ApiKey::parse("nocolon").unwrap_err().contains("colon"));
        let err = ApiKey::parse("bob:short").unwrap_err();
        assert!(err.contains("shorter") && !err.contains("short\""));
        assert!(ApiKey::parse(":longenoughsecret").is_err());
    }
}
