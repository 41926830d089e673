//! Registry-style docs (`docs/index.md`, `docs/resources/*.md`, `docs/data-sources/*.md`,
//! `docs/list-resources/*.md`, `docs/functions/*.md`) rendered from the schemas and the
//! examples; a test fails when the files are stale.

use std::fmt::Write;
use std::path::Path;

use crate::tfschema::{self, Nesting, TfAttr, TfBlock, TypeSchema};

/// Every generated doc: (path relative to the repository root, contents).
pub fn render_all(repo: &Path) -> Vec<(String, String)> {
    let mut out = vec![("docs/index.md".to_string(), index(repo))];
    for t in tfschema::resources() {
        out.push((format!("docs/resources/{}.md", short(t)), resource_page(repo, t)));
    }
    for t in tfschema::data_sources() {
        out.push((format!("docs/data-sources/{}.md", short(t)), data_source_page(repo, t)));
    }
    for t in tfschema::resources() {
        out.push((format!("docs/list-resources/{}.md", short(t)), list_resource_page(repo, t)));
    }
    for f in crate::function::functions() {
        out.push((format!("docs/functions/{}.md", f.name), function_page(repo, &f)));
    }
    out
}

fn list_resource_page(repo: &Path, t: &TypeSchema) -> String {
    let mut out = String::new();
    let block = crate::list::config_block(t);
    let _ = writeln!(
        out,
        "---
page_title: \"{} List Resource - novacron\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n",
        t.type_name, block.description
    );
    let _ = writeln!(out, "# {} (List Resource)\n\n{}\n", t.type_name, block.description);
    out.push_str("Terraform 1.14 and later: write `list` blocks in a `.tfquery.hcl` file and run `terraform query`; ");
    out.push_str("`terraform query -generate-config-out=generated.tf` writes an `import` block (by identity) and a `resource` block per result. ");
    out.push_str("`limit` (default 100) bounds the results; `include_resource = true` returns each object's full state as well.\n\n");
    let _ = writeln!(out, "## Example Usage\n\n{}", example(repo, &format!("examples/list-resources/{}/list.tfquery.hcl", t.type_name), "terraform"));
    out.push_str("## Schema\n\n### Nested Schema for `config`\n");
    block_sections(&mut out, &block, "####");
    let _ = writeln!(out, "\n## Results\n\nEach result's identity is `{{ id }}`, and its display name `<name> (<id>, <facts>)`.");
    out
}

fn function_page(repo: &Path, f: &crate::function::FunctionDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\npage_title: \"{} Function - novacron\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n", f.name, f.summary);
    let _ = writeln!(out, "# {} (Function)\n\n{}\n", f.name, f.description);
    let _ = writeln!(out, "## Example Usage\n\n{}", example(repo, &format!("examples/functions/{}/function.tf", f.name), "terraform"));
    let _ = writeln!(out, "## Signature\n\n```text\n{}\n```\n\n## Arguments\n", f.signature);
    for (i, (name, description)) in f.parameters.iter().enumerate() {
        let _ = writeln!(out, "{}. `{name}` {description}", i + 1);
    }
    out
}

fn short(t: &TypeSchema) -> &str {
    t.type_name.trim_start_matches("novacron_")
}

fn example(repo: &Path, rel: &str, lang: &str) -> String {
    match std::fs::read_to_string(repo.join(rel)) {
        Ok(text) => format!("```{lang}\n{}\n```\n", text.trim_end()),
        Err(_) => String::new(),
    }
}

fn type_label(a: &TfAttr) -> String {
    let j = a.ty.to_json();
    match &j {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) if parts.len() == 2 => match &parts[1] {
            serde_json::Value::String(inner) => format!("{}({inner})", parts[0].as_str().unwrap_or_default()),
            _ => format!("{} of objects", parts[0].as_str().unwrap_or_default()),
        },
        _ => j.to_string(),
    }
}

fn attr_line(out: &mut String, a: &TfAttr) {
    let sensitive = if a.sensitive { ", Sensitive" } else { "" };
    let write_only = if a.write_only { ", Write-only" } else { "" };
    let _ = writeln!(out, "- `{}` ({}{sensitive}{write_only}) {}", a.name, type_label(a), a.description);
}

/// Picks the attributes of one docs section.
type AttrFilter = fn(&TfAttr) -> bool;

fn block_sections(out: &mut String, block: &TfBlock, heading: &str) {
    let groups: [(&str, AttrFilter); 3] = [("Required", |a| a.required), ("Optional", |a| a.optional), ("Read-Only", |a| a.computed && !a.optional)];
    for (title, pred) in groups {
        let attrs: Vec<&TfAttr> = block.attributes.iter().filter(|a| pred(a)).collect();
        let blocks: Vec<_> = block.blocks.iter().filter(|_| title == "Optional").collect();
        if attrs.is_empty() && blocks.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{heading} {title}\n");
        for a in attrs {
            attr_line(out, a);
        }
        for b in blocks {
            let many = if b.nesting == Nesting::List { "Block List" } else { "Block" };
            let _ = writeln!(out, "- `{}` ({many}) {} See [below](#nested-schema-for-{}).", b.type_name, b.block.description, b.type_name);
        }
    }
    for b in &block.blocks {
        let _ = writeln!(out, "\n<a id=\"nested-schema-for-{}\"></a>\n### Nested Schema for `{}`", b.type_name, b.type_name);
        block_sections(out, &b.block, "####");
    }
}

fn resource_page(repo: &Path, t: &TypeSchema) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\npage_title: \"{} Resource - novacron\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n", t.type_name, t.block.description);
    let _ = writeln!(out, "# {} (Resource)\n\n{}\n", t.type_name, t.block.description);
    let _ = writeln!(out, "## Example Usage\n\n{}", example(repo, &format!("examples/resources/{}/resource.tf", t.type_name), "terraform"));
    out.push_str("## Schema\n");
    block_sections(&mut out, &t.block, "###");
    let _ = writeln!(
        out,
        "\n## Import\n\nImport is supported using the following syntax:\n\n{}",
        example(repo, &format!("examples/resources/{}/import.sh", t.type_name), "shell")
    );
    let _ = writeln!(
        out,
        "With Terraform 1.5 and later, an `import` block works too, and with 1.12 and later by identity:\n\n```terraform\nimport {{\n  to = {}.example\n  id = \"<id>\"\n}}\n\nimport {{\n  to       = {}.other\n  identity = {{ id = \"<id>\" }}\n}}\n```",
        t.type_name, t.type_name
    );
    out
}

fn data_source_page(repo: &Path, t: &TypeSchema) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "---\npage_title: \"{} Data Source - novacron\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n", t.type_name, t.block.description);
    let _ = writeln!(out, "# {} (Data Source)\n\n{}\n", t.type_name, t.block.description);
    let _ = writeln!(out, "## Example Usage\n\n{}", example(repo, &format!("examples/data-sources/{}/data-source.tf", t.type_name), "terraform"));
    out.push_str("## Schema\n");
    block_sections(&mut out, &t.block, "###");
    out
}

fn index(repo: &Path) -> String {
    let mut out = String::new();
    let p = tfschema::provider_block();
    let _ = writeln!(out, "---\npage_title: \"novacron Provider\"\ndescription: |-\n  {}\n---\n", p.description);
    let _ = writeln!(out, "# novacron Provider\n\n{}\n", p.description);
    out.push_str("Resources: ");
    out.push_str(&tfschema::resources().iter().map(|t| format!("[`{}`](resources/{}.md)", t.type_name, short(t))).collect::<Vec<_>>().join(", "));
    out.push_str(". Data sources: ");
    out.push_str(&tfschema::data_sources().iter().map(|t| format!("[`{}`](data-sources/{}.md)", t.type_name, short(t))).collect::<Vec<_>>().join(", "));
    out.push_str(". List resources (`terraform query`): ");
    out.push_str(&tfschema::resources().iter().map(|t| format!("[`{}`](list-resources/{}.md)", t.type_name, short(t))).collect::<Vec<_>>().join(", "));
    out.push_str(". Functions: ");
    out.push_str(
        &crate::function::functions().iter().map(|f| format!("[`provider::novacron::{}`](functions/{}.md)", f.name, f.name)).collect::<Vec<_>>().join(", "),
    );
    out.push_str(".\n\n");
    let _ = writeln!(out, "## Example Usage\n\n{}", example(repo, "examples/provider/provider.tf", "terraform"));
    out.push_str("## Schema\n");
    block_sections(&mut out, &p, "###");
    out.push_str("\n## Behaviour\n\n");
    out.push_str("- Requests are retried with exponential backoff and jitter on connection errors, 429 (honouring `Retry-After`) and 5xx answers to idempotent calls; creates carry an idempotency key, so a retried create never makes two objects.\n");
    out.push_str("- VM create, update and delete wait for the platform within the resource's `timeouts` block (10 minutes by default).\n");
    out.push_str("- `user_data` is sensitive and write-only on the platform: plans show `(sensitive value)`; an out-of-band change is detected through `user_data_sha256`. On Terraform 1.11 and later, `user_data_wo` (write-only) keeps the value out of the plan and the state altogether: it is sent on create and whenever `user_data_wo_version` changes. An older Terraform refuses `user_data_wo` with the version it needs.\n");
    out.push_str("- Every resource has the identity `{ id }` (Terraform 1.12 and later): `import { to = novacron_vm.web, identity = { id = \"vm-…\" } }` imports by it, and `terraform query` lists by it.\n");
    out.push_str("- Capabilities come from what Terraform announces: Terraform 1.0 and later work; the newer protocol features are offered and used only where Terraform asks for them.\n");
    out.push_str("- An admission policy denial fails the apply with an error naming each violated policy and its message.\n");
    out.push_str("- With an `https://` endpoint the platform's certificate is checked against the public roots plus `ca_file`; a certificate that does not verify fails with one error naming the endpoint and the reason (unknown CA, name mismatch, expired). A `backend \"http\"` on the platform is Terraform's own client, which trusts a private CA only through `SSL_CERT_FILE`.\n");
    out.push_str("- The API key needs the scopes `read` and `write` (a platform key is `NAME:SECRET:SCOPES`); a `backend \"http\"` on the platform needs `state` as well. A call outside the key's scopes fails with an error naming the key and the missing scope.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regenerate with `UPDATE_DOCS=1 cargo test -p terraform-provider-novacron docs`.
    #[test]
    fn generated_docs_are_current() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate sits in the repository");
        let update = std::env::var("UPDATE_DOCS").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for (rel, content) in render_all(repo) {
            let path = repo.join(&rel);
            if update {
                std::fs::create_dir_all(path.parent().expect("docs have a parent directory")).expect("create docs dir");
                std::fs::write(&path, &content).expect("write doc");
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                stale.push(rel);
            }
        }
        assert!(stale.is_empty(), "stale docs {stale:?}: run UPDATE_DOCS=1 cargo test -p terraform-provider-novacron docs, then review and commit");
    }

    /// The project's docs speak of the project: no tracker numbers ("issue 5", "issue #12").
    #[test]
    fn docs_name_no_tracker_issues() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the crate sits in the repository");
        let mut files = vec![repo.join("README.md")];
        let mut dirs = vec![repo.join("docs"), repo.join("examples")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("docs directory").map_while(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "md" || e == "tf") {
                    files.push(path);
                }
            }
        }
        let mut found = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read").to_ascii_lowercase();
            let words: Vec<&str> = text.split(|c: char| c.is_whitespace() || "()[]|,.:;".contains(c)).filter(|w| !w.is_empty()).collect();
            for pair in words.windows(2) {
                if pair[0] == "issue" && pair[1].trim_start_matches('#').chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    found.push(format!("{}: {} {}", file.display(), pair[0], pair[1]));
                }
            }
        }
        assert!(found.is_empty(), "docs name tracker issues: {found:?}");
    }
}
