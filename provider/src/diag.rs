//! Diagnostics: the errors and warnings Terraform shows, with attribute paths.

use crate::proto::tfplugin5::{AttributePath, Diagnostic, attribute_path, diagnostic};
use crate::tfschema::TfBlock;

/// An accumulator of diagnostics; resource logic reports here instead of failing the RPC.
#[derive(Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds an error.
    pub fn error(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(diagnostic::Severity::Error, summary, detail, None);
    }

    /// Adds an error about one attribute.
    pub fn error_at(&mut self, path: AttributePath, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(diagnostic::Severity::Error, summary, detail, Some(path));
    }

    /// Adds a warning.
    pub fn warning(&mut self, summary: impl Into<String>, detail: impl Into<String>) {
        self.push(diagnostic::Severity::Warning, summary, detail, None);
    }

    fn push(&mut self, severity: diagnostic::Severity, summary: impl Into<String>, detail: impl Into<String>, attribute: Option<AttributePath>) {
        self.0.push(Diagnostic { severity: severity as i32, summary: summary.into(), detail: detail.into(), attribute });
    }

    /// Whether any error was reported.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity == diagnostic::Severity::Error as i32)
    }
}

fn attr_step(name: &str) -> attribute_path::Step {
    attribute_path::Step { selector: Some(attribute_path::step::Selector::AttributeName(name.to_string())) }
}

/// A path of plain attribute names, e.g. `["timeouts", "create"]`.
pub fn path(names: &[&str]) -> AttributePath {
    AttributePath { steps: names.iter().map(|n| attr_step(n)).collect() }
}

/// An API field path as the HCL names it: block lists by their block name
/// (`firewall_rules[1].ports` is `firewall_rule[1].ports`), everything else unchanged.
pub fn hcl_field(block: &TfBlock, field: &str) -> String {
    let mut current = Some(block);
    let mut out = Vec::new();
    for part in field.split('.') {
        let (name, rest) = part.split_once('[').map_or((part, None), |(n, r)| (n, Some(r)));
        let nested = current.and_then(|b| b.blocks.iter().find(|nb| nb.api_name == name));
        current = nested.map(|nb| &nb.block);
        let name = nested.map_or(name, |nb| nb.type_name.as_str());
        out.push(match rest {
            Some(r) => format!("{name}[{r}"),
            None => name.to_string(),
        });
    }
    out.join(".")
}

/// Translates an API field path (`firewall_rules[1].ports`, `metadata.team`) into a
/// Terraform attribute path in `block`'s names (`firewall_rule[1].ports`). Returns `None`
/// for fields that are not attributes (`policy/<name>`, headers).
pub fn api_field_path(block: &TfBlock, field: &str) -> Option<AttributePath> {
    if field.is_empty() || field.contains('/') || field.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let mut steps = Vec::new();
    let mut current = Some(block);
    for (i, part) in field.split('.').enumerate() {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<i64>().ok()),
            None => (part, None),
        };
        let mapped = match current {
            Some(b) => match b.blocks.iter().find(|nb| nb.api_name == name) {
                Some(nb) => {
                    current = Some(&nb.block);
                    nb.type_name.clone()
                }
                None => {
                    current = None;
                    name.to_string()
                }
            },
            None if i > 0 => {
                steps.push(attribute_path::Step { selector: Some(attribute_path::step::Selector::ElementKeyString(name.to_string())) });
                continue;
            }
            None => name.to_string(),
        };
        steps.push(attr_step(&mapped));
        if let Some(idx) = index {
            steps.push(attribute_path::Step { selector: Some(attribute_path::step::Selector::ElementKeyInt(idx)) });
        }
    }
    Some(AttributePath { steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfschema::resource;

    fn names(p: &AttributePath) -> Vec<String> {
        p.steps
            .iter()
            .map(|s| match &s.selector {
                Some(attribute_path::step::Selector::AttributeName(n)) => n.clone(),
                Some(attribute_path::step::Selector::ElementKeyInt(i)) => format!("[{i}]"),
                Some(attribute_path::step::Selector::ElementKeyString(k)) => format!("[{k:?}]"),
                None => "?".into(),
            })
            .collect()
    }

    #[test]
    fn maps_api_fields_to_terraform_paths() {
        let net = &resource("novacron_network").expect("network").block;
        let p = api_field_path(net, "firewall_rules[1].ports").expect("path");
        assert_eq!(names(&p), ["firewall_rule", "[1]", "ports"]);
        let vm = &resource("novacron_vm").expect("vm").block;
        assert_eq!(names(&api_field_path(vm, "cpu_cores").expect("path")), ["cpu_cores"]);
        assert_eq!(names(&api_field_path(vm, "metadata.team").expect("path")), ["metadata", "[\"team\"]"]);
        assert!(api_field_path(vm, "policy/max-cores").is_none());
        assert!(api_field_path(vm, "Idempotency-Key").is_none());
    }
}
