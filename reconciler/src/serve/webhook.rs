//! GitHub push webhooks: HMAC-SHA256 signatures (`X-Hub-Signature-256`) checked in constant time, and which configured repositories a push names.

use serde::Deserialize;
use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 of `message` under `key` (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` under `secret`.
pub fn signature_header(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret, body)))
}

/// True when `header` is `sha256=<hex>` of the HMAC of `body` under `secret`.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(given) = header.trim().strip_prefix("sha256=") else { return false };
    let expected = hex(&hmac_sha256(secret, body));
    constant_time_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes())
}

/// The parts of a push payload that select repositories.
#[derive(Debug, Default, Deserialize)]
pub struct PushPayload {
    /// `refs/heads/main`.
    #[serde(default, rename = "ref")]
    pub reference: Option<String>,
    /// The repository pushed to.
    #[serde(default)]
    pub repository: PayloadRepository,
}

/// `repository` in a push payload.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PayloadRepository {
    /// `owner/name`.
    #[serde(default)]
    pub full_name: Option<String>,
    /// `https://github.com/owner/name.git`.
    #[serde(default)]
    pub clone_url: Option<String>,
    /// `https://github.com/owner/name`.
    #[serde(default)]
    pub html_url: Option<String>,
    /// `git@github.com:owner/name.git`.
    #[serde(default)]
    pub ssh_url: Option<String>,
    /// `main`.
    #[serde(default)]
    pub default_branch: Option<String>,
}

/// A repository URL reduced for comparison: no scheme, credentials, `.git` or trailing slash; lower case.
pub fn normalize_url(url: &str) -> String {
    let mut s = url.trim();
    if let Some((_, rest)) = s.split_once("://") {
        s = rest;
    }
    if let Some((creds, rest)) = s.split_once('@')
        && !creds.contains('/')
    {
        s = rest;
    }
    let s = s.trim_end_matches('/');
    let s = s.strip_suffix(".git").unwrap_or(s);
    s.replacen(':', "/", usize::from(!s.starts_with('/'))).to_ascii_lowercase()
}

impl PushPayload {
    /// True when this push is to the repository at `url` (any of its URLs, or `owner/name`
    /// as the URL's last two segments).
    pub fn names_repo(&self, url: &str) -> bool {
        let wanted = normalize_url(url);
        let r = &self.repository;
        let by_url = [&r.clone_url, &r.html_url, &r.ssh_url].into_iter().flatten().any(|u| normalize_url(u) == wanted);
        let by_name = r.full_name.as_deref().is_some_and(|n| {
            let n = n.trim_matches('/').to_ascii_lowercase();
            !n.is_empty() && wanted.ends_with(&format!("/{n}"))
        });
        by_url || by_name
    }

    /// True when this push updates `reference` (a branch or tag name, a full ref, or `None`
    /// for the default branch). A payload without a ref matches anything.
    pub fn updates_ref(&self, reference: Option<&str>) -> bool {
        let Some(pushed) = self.reference.as_deref() else { return true };
        match reference {
            None => self.repository.default_branch.as_deref().is_none_or(|b| pushed == format!("refs/heads/{b}")),
            Some(r) => pushed == r || pushed == format!("refs/heads/{r}") || pushed == format!("refs/tags/{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_and_github_example() {
        // RFC 4231 test case 2.
        assert_eq!(hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        // RFC 4231 test case 6 (key longer than the block).
        let key = [0xaa; 131];
        assert_eq!(
            hex(&hmac_sha256(&key, b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        // GitHub's documented example.
        assert_eq!(
            signature_header(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn verify_rejects_wrong_missing_and_malformed() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = signature_header(b"s3cret", body);
        assert!(verify_signature(b"s3cret", body, &good));
        assert!(verify_signature(b"s3cret", body, &good.to_ascii_uppercase().replace("SHA256=", "sha256=")));
        assert!(!verify_signature(b"other", body, &good));
        assert!(!verify_signature(b"s3cret", b"{}", &good));
        assert!(!verify_signature(b"s3cret", body, ""));
        assert!(!verify_signature(b"s3cret", body, good.trim_start_matches("sha256=")));
        assert!(!verify_signature(b"s3cret", body, "sha256=00"));
    }

    #[test]
    fn payload_selects_repos_by_url_name_and_ref() {
        let p: PushPayload = serde_json::from_str(
            r#"{"ref":"refs/heads/main","repository":{"full_name":"Acme/Infra","clone_url":"https://github.com/Acme/Infra.git","html_url":"https://github.com/Acme/Infra","default_branch":"main"}}"#,
        )
        .unwrap();
        assert!(p.names_repo("https://github.com/acme/infra"));
        assert!(p.names_repo("https://token@github.com/acme/infra.git/"));
        assert!(p.names_repo("git@github.com:acme/infra.git"));
        assert!(!p.names_repo("https://github.com/acme/infra-old"));
        assert!(p.updates_ref(None));
        assert!(p.updates_ref(Some("main")));
        assert!(p.updates_ref(Some("refs/heads/main")));
        assert!(!p.updates_ref(Some("release")));
        let local: PushPayload = serde_json::from_str(r#"{"repository":{"clone_url":"/tmp/x/repo"}}"#).unwrap();
        assert!(local.names_repo("file:///tmp/x/repo/"));
        assert!(local.updates_ref(Some("anything")));
    }
}
