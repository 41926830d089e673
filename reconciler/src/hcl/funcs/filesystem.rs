//! Filesystem functions, reading only the checked-out revision through its `SourceTree`: file, fileexists, fileset, filebase64, abspath, dirname, basename, pathexpand.

use std::fmt;

use base64::Engine;
use hcl::Value;

use super::{Failure, Outcome, fixed, str_arg};
use crate::source::{SourceTree, join_path};

/// The files of the revision being evaluated, or none (then file functions are unknown).
/// Relative paths resolve against the root module's directory, as Terraform resolves them
/// against the directory it runs in; nothing outside the checkout is read.
#[derive(Clone, Copy, Default)]
pub struct FileAccess<'a> {
    tree: Option<&'a dyn SourceTree>,
    root: &'a str,
}

impl fmt::Debug for FileAccess<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.tree.is_some() { "FileAccess(tree)" } else { "FileAccess(none)" })
    }
}

impl<'a> FileAccess<'a> {
    /// Reads files from `tree`, relative paths from its root.
    pub fn new(tree: &'a dyn SourceTree) -> FileAccess<'a> {
        FileAccess { tree: Some(tree), root: "" }
    }

    /// Reads files from `tree`, relative paths from `root_dir` (the root module's directory).
    pub fn rooted(tree: &'a dyn SourceTree, root_dir: &'a str) -> FileAccess<'a> {
        FileAccess { tree: Some(tree), root: root_dir }
    }

    /// The repository path of `path`, refusing anything that leaves the checkout.
    pub fn resolve(&self, path: &str) -> Result<String, Failure> {
        if path.starts_with('~') {
            return Err(Failure::Error(format!(
                "{path:?} refers to a home directory, which is outside the repository: the reconciler reads files only from the checkout"
            )));
        }
        if path.starts_with('/') || path.starts_with('\\') || path.get(1..3) == Some(":\\") || path.get(1..3) == Some(":/") {
            return Err(Failure::Error(format!("{path:?} is an absolute path, outside the repository: the reconciler reads files only from the checkout")));
        }
        join_path(self.root, path).ok_or_else(|| Failure::Error(format!("{path:?} escapes the repository: the reconciler reads files only from the checkout")))
    }

    fn tree(&self) -> Result<&'a dyn SourceTree, Failure> {
        self.tree.ok_or_else(|| Failure::Unknown("no repository files are available to this evaluation".into()))
    }

    /// The text of a file of the revision.
    pub fn read(&self, path: &str) -> Result<String, Failure> {
        let resolved = self.resolve(path)?;
        let tree = self.tree()?;
        if let Some(text) = tree.read(&resolved) {
            return Ok(text);
        }
        let (dir, name) = resolved.rsplit_once('/').unwrap_or(("", &resolved));
        if tree.files(dir).is_some_and(|files| files.iter().any(|f| f == name)) {
            return Err(Failure::Unknown(format!("{path:?} is not UTF-8 text, which the reconciler does not read")));
        }
        Err(Failure::Error(format!(
            "no file exists at {path:?}; this function works only with files that are distributed as part of the configuration source code"
        )))
    }

    /// `read` with the failure as a message (for `templatefile`).
    pub fn read_text(&self, path: &str) -> Result<String, String> {
        self.read(path).map_err(|e| e.to_string())
    }
}

/// Calls a filesystem function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value], files: FileAccess<'_>) -> Outcome {
    Some(match name {
        "file" => fixed::<1>(args).and_then(|[p]| files.read(&str_arg(p, "path")?).map(Value::from)),
        "filebase64" => fixed::<1>(args).and_then(|[p]| Ok(Value::from(base64::engine::general_purpose::STANDARD.encode(files.read(&str_arg(p, "path")?)?)))),
        "fileexists" => fixed::<1>(args).and_then(|[p]| {
            let path = str_arg(p, "path")?;
            let resolved = files.resolve(&path)?;
            let tree = files.tree()?;
            if tree.files(&resolved).is_some() {
                return Err(format!("{path:?} is a directory, not a file").into());
            }
            let (dir, file) = resolved.rsplit_once('/').unwrap_or(("", &resolved));
            Ok(Value::Bool(tree.files(dir).is_some_and(|f| f.iter().any(|n| n == file))))
        }),
        "fileset" => fixed::<2>(args).and_then(|[p, pat]| fileset(files, &str_arg(p, "path")?, &str_arg(pat, "pattern")?)),
        "abspath" => fixed::<1>(args).and_then(|[p]| {
            let path = str_arg(p, "path")?;
            if !path.starts_with('/') {
                return Err(Failure::Unknown(format!("the absolute form of the relative path {path:?} depends on where Terraform runs")));
            }
            Ok(Value::from(clean(&path)))
        }),
        "dirname" => fixed::<1>(args).and_then(|[p]| Ok(Value::from(dirname(&str_arg(p, "path")?)))),
        "basename" => fixed::<1>(args).and_then(|[p]| Ok(Value::from(basename(&str_arg(p, "path")?)))),
        "pathexpand" => fixed::<1>(args).and_then(|[p]| {
            let path = str_arg(p, "path")?;
            if path.starts_with('~') {
                return Err(Failure::Unknown("pathexpand() of a path under ~ depends on the home directory of whoever runs Terraform".into()));
            }
            Ok(Value::from(path))
        }),
        _ => return None,
    })
}

/// Go's `filepath.Clean` for `/`-separated paths.
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn dirname(path: &str) -> String {
    match path.rfind('/') {
        None => ".".into(),
        Some(i) => clean(if i == 0 { "/" } else { &path[..i] }),
    }
}

fn basename(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn fileset(files: FileAccess<'_>, base: &str, pattern: &str) -> Result<Value, Failure> {
    let base_dir = files.resolve(base)?;
    let (dir_part, file_pattern) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    if dir_part.contains(['*', '?', '[', '{']) {
        return Err(Failure::Unknown(format!("the pattern {pattern:?} has wildcards in directory names, which the reconciler does not expand")));
    }
    let dir = crate::source::join_path(&base_dir, dir_part)
        .ok_or_else(|| Failure::Error(format!("{pattern:?} escapes the repository: the reconciler reads files only from the checkout")))?;
    let tree = files.tree()?;
    let mut out: Vec<String> = tree
        .files(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|name| glob(file_pattern.as_bytes(), name.as_bytes()))
        .map(|name| if dir_part.is_empty() { name } else { format!("{}/{name}", clean(dir_part)) })
        .collect();
    out.sort();
    Ok(Value::Array(out.into_iter().map(Value::from).collect()))
}

/// Matches one path segment against a glob: `*`, `?`, `[a-z]`, `[^a]` and `{a,b}`.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&c| c == b']') else { return false };
            let Some((&c, tail)) = name.split_first() else { return false };
            let (negate, class) = match rest[..close].split_first() {
                Some((b'^' | b'!', class)) => (true, class),
                _ => (false, &rest[..close]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && glob(&rest[close + 1..], tail)
        }
        Some((b'{', rest)) => {
            let Some(close) = rest.iter().position(|&c| c == b'}') else { return false };
            rest[..close].split(|&c| c == b',').any(|alt| glob(&[alt, &rest[close + 1..]].concat(), name))
        }
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}
