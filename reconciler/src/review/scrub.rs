//! Takes every known secret out of text that leaves the reconciler (pull-request comments,
//! commit statuses, replies, CLI output).
//!
//! A pull request's HCL runs inside Terraform on this machine and can read its files and
//! environment (`file("/proc/self/environ")`) and put them in a planned value. Plans for
//! reviews therefore run with a minimal environment and, ideally, a read-only key; and before
//! anything is posted, each known secret is replaced by `***` — as written, hex-encoded, and
//! base64-encoded at each of the three byte alignments it can have inside a longer encoded
//! text. Other transformations (reversing, slicing) cannot be recognised: that is why the key a
//! review plans with should be one that can only read.

use base64::Engine;

/// Shorter secrets are not scrubbed: replacing every occurrence of a two-letter string would
/// garble the text without protecting anything a guess could not find.
const MIN_SECRET: usize = 4;

/// The secrets to take out, with their encodings.
#[derive(Clone, Default)]
pub struct Scrubber {
    needles: Vec<String>,
}

/// Never shows the secrets.
impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} patterns)", self.needles.len())
    }
}

impl Scrubber {
    /// A scrubber for `secrets` (empty and very short ones are ignored).
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Scrubber {
        let mut s = Scrubber::default();
        for secret in secrets {
            s.add(secret.as_ref());
        }
        s
    }

    /// Adds one secret.
    pub fn add(&mut self, secret: &str) {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET {
            return;
        }
        let bytes = secret.as_bytes();
        let mut needles = vec![secret.to_string(), hex_lower(bytes), hex_lower(bytes).to_ascii_uppercase()];
        for skip in 0..3.min(bytes.len()) {
            let rest = &bytes[skip..];
            let whole = &rest[..rest.len() / 3 * 3];
            for engine in [&base64::engine::general_purpose::STANDARD_NO_PAD, &base64::engine::general_purpose::URL_SAFE_NO_PAD] {
                let encoded = engine.encode(whole);
                if encoded.len() >= 8 {
                    needles.push(encoded);
                }
            }
        }
        for n in needles {
            if !self.needles.contains(&n) {
                self.needles.push(n);
            }
        }
        // Longest first, so a longer encoding is replaced before a shorter one inside it.
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    }

    /// `text` with every secret replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), "***");
            }
        }
        out
    }

    /// Whether `text` holds any secret (for tests and for refusing to post).
    pub fn finds_secret_in(&self, text: &str) -> bool {
        self.needles.iter().any(|n| text.contains(n.as_str()))
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_hex_and_base64_at_every_alignment_are_scrubbed() {
        let key = "nck_9f8e7d6c5b4a3928";
        let s = Scrubber::new([key, "", "ab"]);
        assert_eq!(s.scrub(&format!("KEY={key};")), "KEY=***;");
        assert_eq!(s.scrub(&hex_lower(key.as_bytes())), "***");
        for prefix in ["", "x", "xy", "NOVACRON_API_KEY="] {
            let environ = format!("PATH=/bin\0{prefix}{key}\0HOME=/h");
            for engine in [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE] {
                let encoded = engine.encode(environ.as_bytes());
                let scrubbed = s.scrub(&encoded);
                assert!(scrubbed.contains("***"), "prefix {prefix:?}: {encoded}");
                let rest = scrubbed.replace("***", "");
                assert!(!rest.contains(&engine.encode(&key.as_bytes()[3..15])), "prefix {prefix:?}");
            }
        }
        assert_eq!(s.scrub("nothing here, ab"), "nothing here, ab", "short secrets are left alone");
        assert!(!format!("{s:?}").contains(key));
    }
}
