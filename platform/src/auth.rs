//! API keys: parsing `NAME:SECRET`, and constant-time lookup of a bearer token.

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

#[cfg(test)]
mod tests {
    use super::*;

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
