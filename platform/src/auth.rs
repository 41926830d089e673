//! API keys: parsing `NAME:SECRET[:SCOPES]` and the keys file, the scopes a call needs, reading
//! the key from `Authorization` (bearer or basic), and constant-time lookup.

use sha2::{Digest, Sha256};

/// One permission a key can carry. Every `/v1` call needs exactly one (see [`required_scope`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `GET` of objects, lists, events and templates; dry runs.
    Read,
    /// `POST`, `PATCH` and `DELETE` of objects.
    Write,
    /// Everything under `/v1/tfstate/`.
    State,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::State];

    /// The name used on the command line, in the keys file and in answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::State => "state",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::State => 4,
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The scopes a key carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Scopes(u8);

impl Scopes {
    /// `read`, `write` and `state`: what a key without a scope list gets.
    pub const ALL: Scopes = Scopes(7);

    /// Parses a comma list such as `read,state`; names are case-sensitive, repeats are allowed.
    pub fn parse(list: &str) -> Result<Scopes, String> {
        let mut bits = 0;
        for word in list.split(',').map(str::trim) {
            let scope = Scope::ALL.into_iter().find(|s| s.as_str() == word).ok_or_else(|| {
                format!("unknown scope {word:?}; scopes are a comma list of read, write and state (e.g. read,state), or leave them out for all three")
            })?;
            bits |= scope.bit();
        }
        Ok(Scopes(bits))
    }

    /// Whether `scope` is among these.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = Scope::ALL.into_iter().filter(|s| self.contains(*s)).map(Scope::as_str).collect();
        f.write_str(&names.join(","))
    }
}

impl std::fmt::Debug for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// One accepted API key; `name` is the actor recorded in events.
#[derive(Clone)]
pub struct ApiKey {
    /// Actor name.
    pub name: String,
    /// What the key may do.
    pub scopes: Scopes,
    secret_digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey").field("name", &self.name).field("scopes", &self.scopes).field("secret", &"<redacted>").finish()
    }
}

fn checked_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
        return Err(format!("API key name {name:?} must be non-empty letters, digits, - _ . or @"));
    }
    Ok(())
}

fn checked_secret(name: &str, secret: &str) -> Result<(), String> {
    if secret.len() < 8 {
        return Err(format!("the secret of API key {name:?} is shorter than 8 characters; use a longer one"));
    }
    Ok(())
}

/// `sha256:<64 lowercase hex>` of a secret, as the keys file stores it.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl ApiKey {
    /// Parses `NAME:SECRET[:SCOPES]`. When the text has a second colon, what follows the last
    /// colon is the scope list, so a secret containing a colon needs an explicit scope list
    /// (`NAME:SE:CRET:read,write,state`). The message never repeats the secret.
    pub fn parse(spec: &str) -> Result<ApiKey, String> {
        let (name, rest) =
            spec.split_once(':').ok_or_else(|| "an API key must be NAME:SECRET[:SCOPES] (e.g. admin:s3cret-key:read); the colon is missing".to_string())?;
        checked_name(name)?;
        let (secret, scopes) = match rest.rsplit_once(':') {
            None => (rest, Scopes::ALL),
            Some((secret, list)) => {
                let scopes = Scopes::parse(list)
                    .map_err(|e| format!("API key {name:?}: {e} (the text after the last colon is the scope list; a secret containing a colon needs one)"))?;
                (secret, scopes)
            }
        };
        checked_secret(name, secret)?;
        Ok(ApiKey { name: name.to_string(), scopes, secret_digest: Sha256::digest(secret.as_bytes()).into() })
    }

    /// Parses `NOVACRON_PLATFORM_API_KEYS`: entries separated by `;` or whitespace. An entry
    /// whose every comma-separated piece is a plain `NAME:SECRET` is a list of keys (the
    /// original comma form, `a:secret-1,b:secret-2`); any other entry is one
    /// `NAME:SECRET[:SCOPES]` key, whose scope list may itself hold commas.
    pub fn parse_list(list: &str) -> Result<Vec<ApiKey>, String> {
        fn plain_keys(text: &str) -> Option<Vec<&str>> {
            let pieces: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
            pieces.iter().all(|p| p.matches(':').count() == 1 && !p.contains(char::is_whitespace)).then_some(pieces)
        }
        // The original form, spaces around its commas included.
        if !list.contains(';')
            && let Some(pieces) = plain_keys(list)
        {
            return pieces.into_iter().map(ApiKey::parse).collect();
        }
        let mut keys = Vec::new();
        for entry in list.split(|c: char| c == ';' || c.is_whitespace()).filter(|s| !s.is_empty()) {
            if let Some(pieces) = plain_keys(entry).filter(|p| p.len() > 1) {
                for piece in pieces {
                    keys.push(ApiKey::parse(piece)?);
                }
            } else {
                keys.push(ApiKey::parse(entry).map_err(|e| format!("{e}; separate keys with ';' or spaces when any key has scopes"))?);
            }
        }
        Ok(keys)
    }

    /// Parses one line of a keys file, `NAME:sha256:<64 hex>[:SCOPES]`; `None` for a blank
    /// line or a `#` comment.
    pub fn parse_hashed(line: &str) -> Result<Option<ApiKey>, String> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(None);
        }
        let mut parts = line.splitn(4, ':');
        let (name, algorithm, hex, scopes) = (parts.next().unwrap_or_default(), parts.next(), parts.next(), parts.next());
        checked_name(name)?;
        if algorithm != Some("sha256") {
            return Err(format!(
                "key {name:?} must be NAME:sha256:<64 hex digits>[:SCOPES]; build the digest with `novacron-platform hash-key` (a plain secret does not belong in this file)"
            ));
        }
        let digest = hex
            .and_then(parse_hex_digest)
            .ok_or_else(|| format!("key {name:?}: the digest after sha256: must be 64 hex digits; build it with `novacron-platform hash-key`"))?;
        let scopes = scopes.map(Scopes::parse).transpose().map_err(|e| format!("key {name:?}: {e}"))?.unwrap_or(Scopes::ALL);
        Ok(Some(ApiKey { name: name.to_string(), scopes, secret_digest: digest }))
    }

    /// Parses a whole keys file; an error names `origin:line`.
    pub fn parse_file(origin: &str, text: &str) -> Result<Vec<ApiKey>, String> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if let Some(key) = ApiKey::parse_hashed(line).map_err(|e| format!("{origin}:{}: {e}", i + 1))? {
                keys.push(key);
            }
        }
        Ok(keys)
    }
}

/// The scope a `/v1` call needs: everything under `/v1/tfstate/` needs `state`; `GET` and
/// `HEAD` need `read`, and so does a dry run (`?dry_run=true` on `POST` or `PATCH`, which
/// writes nothing); every other method needs `write`. `dry_run` tells whether the query asks
/// for a dry run (a malformed query is not one: the handler refuses it with 400).
pub fn required_scope(method: &str, path: &str, dry_run: bool) -> Scope {
    if path.starts_with("/v1/tfstate/") {
        Scope::State
    } else if matches!(method, "GET" | "HEAD") || (dry_run && matches!(method, "POST" | "PATCH")) {
        Scope::Read
    } else {
        Scope::Write
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

/// The key an `Authorization` header carries: `Bearer <key>` (any case), or, when `basic` is allowed, the
/// password of `Basic base64(username:key)` (Terraform's http backend sends that; the username
/// is ignored). `None` when the header has neither.
pub fn presented_key(authorization: Option<&str>, basic: bool) -> Option<String> {
    // Auth schemes are case-insensitive (RFC 7235): `bearer` and `BEARER` are `Bearer`.
    let (scheme, credentials) = authorization?.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.trim().to_string());
    }
    if !basic || !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let encoded = credentials;
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

    #[test]
    fn lowercase_and_uppercase_schemes_are_accepted() {
        assert_eq!(presented_key(Some("bearer abc"), false).as_deref(), Some("abc"));
        assert_eq!(presented_key(Some("BEARER abc"), true).as_deref(), Some("abc"));
        assert_eq!(presented_key(Some("BASIC dTpr"), true).as_deref(), Some("k"));
        assert_eq!(presented_key(Some("Token abc"), true), None);
        assert_eq!(presented_key(Some("Bearer"), false), None);
    }

    #[test]
    fn scopes_default_to_all_and_parse_from_the_last_colon() {
        let all = ApiKey::parse("admin:secret-one").expect("valid");
        assert_eq!(all.scopes, Scopes::ALL);
        assert_eq!(all.scopes.to_string(), "read,write,state");
        let reader = ApiKey::parse("reader:secret-two:read").expect("valid");
        assert!(reader.scopes.contains(Scope::Read) && !reader.scopes.contains(Scope::Write) && !reader.scopes.contains(Scope::State));
        let drift = ApiKey::parse("drift:secret-3:state,read").expect("valid");
        assert_eq!(drift.scopes.to_string(), "read,state");
        let colon = ApiKey::parse("ops:pass:word-1:read,write,state").expect("a secret with a colon and explicit scopes");
        assert_eq!(authenticate(std::slice::from_ref(&colon), "pass:word-1").map(|k| k.name.as_str()), Some("ops"));
        let err = ApiKey::parse("bob:secret-four:reed").unwrap_err();
        assert!(err.contains("unknown scope \"reed\"") && err.contains("read, write and state") && !err.contains("secret-four"), "{err}");
        assert!(ApiKey::parse("bob:secret-four:").unwrap_err().contains("unknown scope \"\""));
        assert!(ApiKey::parse("bob:secret-four:Read").is_err(), "scope names are lowercase");
        assert!(format!("{reader:?}").contains("Scopes(read)") && !format!("{reader:?}").contains("secret-two"));
    }

    #[test]
    fn the_env_list_takes_the_comma_form_or_semicolons_and_spaces() {
        let names = |list: &str| ApiKey::parse_list(list).map(|ks| ks.iter().map(|k| format!("{}={}", k.name, k.scopes)).collect::<Vec<_>>());
        assert_eq!(names("a:secret-1,b:secret-2").expect("comma form"), ["a=read,write,state", "b=read,write,state"]);
        assert_eq!(names("a:secret-1:read,state").expect("one scoped key"), ["a=read,state"]);
        assert_eq!(names("a:secret-1:read,write; b:secret-2 c:secret-3:state").expect("mixed"), ["a=read,write", "b=read,write,state", "c=state"]);
        assert_eq!(names(" a:secret-1 ,b:secret-2 \n").expect("padding"), ["a=read,write,state", "b=read,write,state"]);
        assert_eq!(names("a:secret-1,b:secret-2; c:secret-3:read").expect("comma list beside a scoped key").len(), 3);
        let err = names("a:secret-1:read,b:secret-2").unwrap_err();
        assert!(err.contains("separate keys with ';'"), "{err}");
    }

    #[test]
    fn keys_files_hold_digests_with_optional_scopes() {
        let digest = hash_secret("file-secret-1");
        assert_eq!(digest.len(), "sha256:".len() + 64);
        let text = format!("# engineers\n\nterraform:{digest}\n  reader:{}:read \n", hash_secret("file-secret-2"));
        let keys = ApiKey::parse_file("keys.txt", &text).expect("valid file");
        assert_eq!(authenticate(&keys, "file-secret-1").map(|k| (k.name.as_str(), k.scopes)), Some(("terraform", Scopes::ALL)));
        assert_eq!(authenticate(&keys, "file-secret-2").map(|k| k.scopes.to_string()), Some("read".to_string()));
        assert!(authenticate(&keys, &digest).is_none(), "the digest itself is not a key");
        for (bad, wanted) in [
            ("x:plain-secret-1", "hash-key"),
            ("x:sha256:abcd", "64 hex digits"),
            (&format!("x:{digest}:admin") as &str, "unknown scope \"admin\""),
            (&format!("bad name:{digest}"), "must be non-empty"),
        ] {
            let err = ApiKey::parse_file("keys.txt", &format!("# ok\n{bad}\n")).unwrap_err();
            assert!(err.starts_with("keys.txt:2: ") && err.contains(wanted), "{bad}: {err}");
        }
    }

    #[test]
    fn each_call_needs_one_scope() {
        for (method, path, dry_run, scope) in [
            ("GET", "/v1/vms", false, Scope::Read),
            ("GET", "/v1/events", false, Scope::Read),
            ("GET", "/v1/templates/tpl-1", false, Scope::Read),
            ("POST", "/v1/vms", true, Scope::Read),
            ("PATCH", "/v1/vms/vm-1", true, Scope::Read),
            ("POST", "/v1/vms", false, Scope::Write),
            ("PATCH", "/v1/vms/vm-1", false, Scope::Write),
            ("DELETE", "/v1/vms/vm-1", false, Scope::Write),
            ("DELETE", "/v1/vms/vm-1", true, Scope::Write),
            ("GET", "/v1/tfstate/prod", false, Scope::State),
            ("LOCK", "/v1/tfstate/prod", false, Scope::State),
            ("GET", "/v1/tfstate/prod/versions", false, Scope::State),
        ] {
            assert_eq!(required_scope(method, path, dry_run), scope, "{method} {path} dry_run={dry_run}");
        }
    }
}
