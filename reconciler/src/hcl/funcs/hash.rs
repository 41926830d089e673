//! Hash functions: md5, sha1, sha256, sha512, their base64 forms and file variants, and uuidv5.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hcl::Value;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

use super::{Failure, FileAccess, Outcome, fixed, str_arg};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest(algorithm: &str, data: &[u8]) -> Vec<u8> {
    match algorithm {
        "md5" => Md5::digest(data).to_vec(),
        "sha1" => Sha1::digest(data).to_vec(),
        "sha512" => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}

/// Calls a hash function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value], files: FileAccess<'_>) -> Outcome {
    let (source, rest) = match name.strip_prefix("file") {
        Some(rest) if ["md5", "sha1", "sha256", "sha512", "base64sha256", "base64sha512"].contains(&rest) => (true, rest),
        _ => (false, name),
    };
    let (encode, algorithm) = match rest.strip_prefix("base64") {
        Some(alg @ ("sha256" | "sha512")) => (true, alg),
        _ if ["md5", "sha1", "sha256", "sha512"].contains(&rest) => (false, rest),
        _ if name == "uuidv5" => return Some(fixed::<2>(args).and_then(|[ns, n]| uuidv5(&str_arg(ns, "namespace")?, &str_arg(n, "name")?))),
        _ => return None,
    };
    Some(fixed::<1>(args).and_then(|[a]| {
        let text = if source { files.read(&str_arg(a, "path")?)? } else { str_arg(a, "str")? };
        let sum = digest(algorithm, text.as_bytes());
        Ok(Value::from(if encode { STANDARD.encode(sum) } else { hex(&sum) }))
    }))
}

fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&digits[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// RFC 4122 version 5 (SHA-1, name-based) UUIDs.
fn uuidv5(namespace: &str, name: &str) -> Result<Value, Failure> {
    let ns = match namespace {
        "dns" => "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "url" => "6ba7b811-9dad-11d1-80b4-00c04fd430c8",
        "oid" => "6ba7b812-9dad-11d1-80b4-00c04fd430c8",
        "x500" => "6ba7b814-9dad-11d1-80b4-00c04fd430c8",
        other => other,
    };
    let ns = parse_uuid(ns).ok_or_else(|| format!("uuidv5() doesn't support namespace {namespace:?}"))?;
    let mut hasher = Sha1::new();
    hasher.update(ns);
    hasher.update(name.as_bytes());
    let sum = hasher.finalize();
    let mut u = [0u8; 16];
    u.copy_from_slice(&sum[..16]);
    u[6] = (u[6] & 0x0f) | 0x50;
    u[8] = (u[8] & 0x3f) | 0x80;
    let h = hex(&u);
    Ok(Value::from(format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])))
}
