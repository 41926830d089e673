//! Ignore rules from `.novacronignore` and `--ignore`: `address` or `address.attribute_path`, with globs.

/// A set of ignore patterns.
///
/// A line is `address` (the whole resource) or `address.path` (one attribute, and everything
/// under it). `*` matches any run of characters, `?` one character; `#` starts a comment.
/// Examples: `novacron_vm.legacy`, `novacron_vm.*.metadata`, `module.web.*.tags`.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<String>,
}

impl IgnoreRules {
    /// Rules from the text of a `.novacronignore` file plus extra patterns (`--ignore`).
    pub fn parse<'a>(file: &str, extra: impl IntoIterator<Item = &'a str>) -> IgnoreRules {
        let mut patterns: Vec<String> =
            file.lines().map(|l| l.split_once('#').map_or(l, |(before, _)| before).trim()).filter(|l| !l.is_empty()).map(str::to_string).collect();
        patterns.extend(extra.into_iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()));
        IgnoreRules { patterns }
    }

    /// True when there are no rules.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The rule that ignores the whole resource at `address`, if any.
    pub fn resource_rule(&self, address: &str) -> Option<&str> {
        self.patterns.iter().find(|p| glob_match(p, address)).map(String::as_str)
    }

    /// The rule that ignores the change at `path` of the resource at `address`, if any. A rule
    /// naming an attribute covers everything under it (`metadata` covers `metadata.env`).
    pub fn change_rule(&self, address: &str, path: &str) -> Option<&str> {
        let mut prefixes: Vec<&str> = path.char_indices().filter(|&(_, c)| c == '.' || c == '[').map(|(i, _)| &path[..i]).collect();
        prefixes.push(path);
        self.patterns.iter().find(|p| prefixes.iter().any(|prefix| glob_match(p, &format!("{address}.{prefix}")))).map(String::as_str)
    }
}

/// Glob match of the whole `text`: `*` any run of characters, `?` exactly one.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("novacron_vm.*", "novacron_vm.web"));
        assert!(glob_match("*.metadata", "novacron_vm.web.metadata"));
        assert!(glob_match("novacron_vm.web[?]", "novacron_vm.web[3]"));
        assert!(!glob_match("novacron_vm.web", "novacron_vm.web2"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn file_lines_comments_and_flags() {
        let rules = IgnoreRules::parse("# comment\n\nnovacron_vm.legacy  # old box\nnovacron_vm.*.metadata\n", ["novacron_network.core.mtu"]);
        assert_eq!(rules.resource_rule("novacron_vm.legacy"), Some("novacron_vm.legacy"));
        assert_eq!(rules.resource_rule("novacron_vm.web"), None);
        assert!(rules.change_rule("novacron_vm.web", "metadata.env").is_some());
        assert!(rules.change_rule("novacron_vm.web", "metadata").is_some());
        assert!(rules.change_rule("novacron_vm.web", "memory_gb").is_none());
        assert!(rules.change_rule("novacron_network.core", "mtu").is_some());
        assert!(rules.change_rule("novacron_network.core", "mtu_x").is_none());
    }

    #[test]
    fn block_paths_match_by_prefix() {
        let rules = IgnoreRules::parse("novacron_network.core.firewall_rule", []);
        assert!(rules.change_rule("novacron_network.core", "firewall_rule[1].ports").is_some());
    }
}
