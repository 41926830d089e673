//! Source positions for messages: where an attribute, or a function call inside it, sits in a file (hcl-rs keeps no spans, so the text is re-read with hcl-edit).

use hcl_edit::Span;
use hcl_edit::expr::Expression;
use hcl_edit::structure::{Body, Structure};

/// The 1-based `(line, column)` of the attribute at `path` inside the block `block`
/// (`["resource", "novacron_vm", "web"]`; `path` is `["cpu_cores"]` or, through nested blocks,
/// `["firewall_rule", "ports"]`). With `function`, the position of the first call of that
/// function inside the attribute's value, when there is one.
pub fn attribute_position(text: &str, block: &[&str], path: &[&str], function: Option<&str>) -> Option<(usize, usize)> {
    let body = hcl_edit::parser::parse_body(text).ok()?;
    let (ident, labels) = block.split_first()?;
    let found = body.blocks().find(|b| b.ident.as_str() == *ident && b.labels.iter().map(|l| l.as_str()).eq(labels.iter().copied()))?;
    let value = attribute(&found.body, path)?;
    let span = value.span()?;
    let offset = function.and_then(|f| call_offset(text, span.clone(), f)).unwrap_or(span.start);
    Some(line_column(text, offset))
}

fn attribute<'b>(body: &'b Body, path: &[&str]) -> Option<&'b Expression> {
    let (first, rest) = path.split_first()?;
    if rest.is_empty() {
        return body.get_attribute(first).map(|a| &a.value);
    }
    body.iter().find_map(|s| match s {
        Structure::Block(b) if b.ident.as_str() == *first => attribute(&b.body, rest),
        Structure::Block(b) if b.ident.as_str() == "dynamic" && b.labels.first().is_some_and(|l| l.as_str() == *first) => {
            b.body.blocks().find(|c| c.ident.as_str() == "content").and_then(|c| attribute(&c.body, rest))
        }
        _ => None,
    })
}

/// The byte offset of `function(` in `range`, at an identifier boundary.
fn call_offset(text: &str, range: std::ops::Range<usize>, function: &str) -> Option<usize> {
    let slice = text.get(range.clone())?;
    let needle = format!("{function}(");
    let mut from = 0;
    while let Some(i) = slice[from..].find(&needle) {
        let at = from + i;
        let boundary = slice[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        if boundary {
            return Some(range.start + at);
        }
        from = at + needle.len();
    }
    None
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The function a one-line evaluation reason blames (`"cidrsubnet(): prefix ..."` gives `cidrsubnet`).
pub fn failing_function(reason: &str) -> Option<&str> {
    let (name, _) = reason.split_once("(): ")?;
    name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ':').then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: &str = "resource \"novacron_vm\" \"web\" {\n  name      = \"web\"\n  cpu_cores = 2 + abs(cidrsubnet(\"10.0.0.0/24\", 4, 16))\n  dynamic \"firewall_rule\" {\n    content {\n      ports = upper(1, 2)\n    }\n  }\n}\n";

    #[test]
    fn finds_attributes_and_the_failing_call() {
        let block = ["resource", "novacron_vm", "web"];
        assert_eq!(attribute_position(MAIN, &block, &["cpu_cores"], None), Some((3, 15)));
        assert_eq!(attribute_position(MAIN, &block, &["cpu_cores"], Some("cidrsubnet")), Some((3, 23)));
        assert_eq!(attribute_position(MAIN, &block, &["firewall_rule", "ports"], Some("upper")), Some((6, 15)));
        assert_eq!(attribute_position(MAIN, &block, &["memory_gb"], None), None);
        assert_eq!(attribute_position(MAIN, &["resource", "novacron_vm", "db"], &["name"], None), None);
    }

    #[test]
    fn names_the_function_a_reason_blames() {
        assert_eq!(failing_function("cidrsubnet(): prefix extension of 4 does not accommodate a subnet numbered 16"), Some("cidrsubnet"));
        assert_eq!(failing_function("local.x is unknown: data.y is a data source"), None);
    }
}
