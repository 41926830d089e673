//! The files of the desired state, read through a small trait: a git tree in production, a map in tests.

use std::collections::BTreeMap;

/// Read-only access to the files of one revision. Paths are relative to the repository root,
/// `/`-separated, without a leading slash; `""` is the root.
pub trait SourceTree {
    /// Names of the regular files directly inside `dir` (not sub-directories), sorted.
    /// `None` when `dir` does not exist.
    fn files(&self, dir: &str) -> Option<Vec<String>>;
    /// The text of a file; `None` when there is no such file (or it is not UTF-8).
    fn read(&self, path: &str) -> Option<String>;
}

/// Files held in memory, for tests.
#[derive(Debug, Clone, Default)]
pub struct MemoryTree {
    files: BTreeMap<String, String>,
}

impl MemoryTree {
    /// A tree of `(path, text)` pairs.
    pub fn new<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> MemoryTree {
        MemoryTree { files: files.into_iter().map(|(p, t)| (p.to_string(), t.to_string())).collect() }
    }
}

impl MemoryTree {
    /// Whether any file's text contains `needle` (a cheap test before parsing for something).
    pub fn mentions(&self, needle: &str) -> bool {
        self.files.values().any(|text| text.contains(needle))
    }
}

impl SourceTree for MemoryTree {
    fn files(&self, dir: &str) -> Option<Vec<String>> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut exists = dir.is_empty();
        let mut out = Vec::new();
        for path in self.files.keys() {
            if let Some(rest) = path.strip_prefix(&prefix) {
                exists = true;
                if !rest.contains('/') {
                    out.push(rest.to_string());
                }
            }
        }
        exists.then_some(out)
    }

    fn read(&self, path: &str) -> Option<String> {
        self.files.get(path).cloned()
    }
}

/// Joins a directory and a relative path, resolving `.` and `..` (never above the root).
pub fn join_path(dir: &str, rel: &str) -> Option<String> {
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for seg in rel.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            s => parts.push(s),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_tree_lists_one_level() {
        let t = MemoryTree::new([("main.tf", ""), ("modules/vm/main.tf", ""), ("modules/vm/vars.tf", "")]);
        assert_eq!(t.files(""), Some(vec!["main.tf".to_string()]));
        assert_eq!(t.files("modules/vm").map(|f| f.len()), Some(2));
        assert_eq!(t.files("nope"), None);
    }

    #[test]
    fn joins_relative_paths() {
        assert_eq!(join_path("infra", "./modules/vm").as_deref(), Some("infra/modules/vm"));
        assert_eq!(join_path("infra/a", "../b").as_deref(), Some("infra/b"));
        assert_eq!(join_path("", "..").as_deref(), None);
    }
}
