//! Reads one module directory (`.tf` and `.tf.json` files) into the blocks the evaluator needs.

use hcl::expr::TemplateExpr;
use hcl::{Body, Expression, Structure};
use novacron_schemas::{AttrType, Kind};

use super::HclError;
use crate::source::SourceTree;

/// Blocks of a resource that Terraform itself handles and the comparison ignores.
const META_BLOCKS: [&str; 4] = ["lifecycle", "timeouts", "provisioner", "connection"];
/// Arguments of a resource that Terraform itself handles.
const META_ARGS: [&str; 4] = ["depends_on", "provider", "count", "for_each"];

/// The declarations of one module directory.
#[derive(Debug, Default)]
pub struct ModuleConfig {
    /// `variable` blocks.
    pub variables: Vec<VariableDecl>,
    /// `locals` entries.
    pub locals: Vec<(String, Expression)>,
    /// `novacron_*` resources.
    pub resources: Vec<ResourceBlock>,
    /// `module` calls.
    pub modules: Vec<ModuleCall>,
    /// `output` values.
    pub outputs: Vec<(String, Expression)>,
    /// `data "novacron_*"` blocks.
    pub data: Vec<DataBlock>,
    /// Types of the other `data` blocks (`data "http" ...`): references to them are unknown.
    pub foreign_data: Vec<String>,
}

/// One `variable "name"` block.
#[derive(Debug, Clone)]
pub struct VariableDecl {
    /// The variable's name.
    pub name: String,
    /// The file it is in, for messages.
    pub file: String,
    /// `type`, when given.
    pub ty: Option<Expression>,
    /// `default`, when given.
    pub default: Option<Expression>,
    /// `nullable` (default true): with false, null means "use the default".
    pub nullable: bool,
    /// `sensitive = true`: its value never appears in a message.
    pub sensitive: bool,
    /// `validation` blocks: `(condition, error_message)`.
    pub validations: Vec<(Expression, Expression)>,
}

/// One `data "novacron_*" "name"` block.
#[derive(Debug, Clone)]
pub struct DataBlock {
    /// The kind behind the data source type (`Kind::Template` for `novacron_template`).
    pub kind: Kind,
    /// The block's name label.
    pub label: String,
    /// The file it is in.
    pub file: String,
    /// `count`, when given.
    pub count: Option<Expression>,
    /// `for_each`, when given.
    pub for_each: Option<Expression>,
    /// Its arguments (`name`, `os`, `most_recent`, ...).
    pub args: Vec<(String, Expression)>,
}

/// One `resource "novacron_*" "name"` block.
#[derive(Debug, Clone)]
pub struct ResourceBlock {
    /// The kind behind the Terraform type.
    pub kind: Kind,
    /// The block's name label.
    pub label: String,
    /// The file it is in, for messages.
    pub file: String,
    /// `count`, when given.
    pub count: Option<Expression>,
    /// `for_each`, when given.
    pub for_each: Option<Expression>,
    /// Arguments, in file order.
    pub attributes: Vec<(String, Expression)>,
    /// Nested blocks (e.g. `firewall_rule`), static and `dynamic`, in file order.
    pub blocks: Vec<NestedBlock>,
}

/// A nested block of a resource; a `dynamic` one repeats its content per `for_each` entry.
#[derive(Debug, Clone)]
pub struct NestedBlock {
    /// The block type, e.g. `firewall_rule`.
    pub name: String,
    /// Its arguments (for a `dynamic` block, those of its `content`).
    pub args: Vec<(String, Expression)>,
    /// Set for `dynamic "name" { for_each = ... content { ... } }`.
    pub dynamic: Option<DynamicSpec>,
}

/// How a `dynamic` block repeats.
#[derive(Debug, Clone)]
pub struct DynamicSpec {
    /// The collection to repeat over (`Null` when missing, which evaluates to an error).
    pub for_each: Expression,
    /// The name its content uses for the entry (`iterator`, by default the block name).
    pub iterator: String,
}

/// One `module "name"` call.
#[derive(Debug, Clone)]
pub struct ModuleCall {
    /// The call's label.
    pub label: String,
    /// The file it is in.
    pub file: String,
    /// `source`, when it is a literal string.
    pub source: Option<String>,
    /// `count`, when given.
    pub count: Option<Expression>,
    /// `for_each`, when given.
    pub for_each: Option<Expression>,
    /// Input arguments.
    pub inputs: Vec<(String, Expression)>,
}

/// Reads every `.tf` and `.tf.json` file directly in `dir`.
pub fn read_module(tree: &dyn SourceTree, dir: &str) -> Result<Option<ModuleConfig>, HclError> {
    let Some(files) = tree.files(dir) else { return Ok(None) };
    let mut config = ModuleConfig::default();
    for name in files {
        let path = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
        let native = name.ends_with(".tf");
        if !native && !name.ends_with(".tf.json") {
            continue;
        }
        let text = tree.read(&path).ok_or_else(|| HclError::Invalid { file: path.clone(), message: "cannot read the file as UTF-8 text".into() })?;
        let body = if native { parse_native(&path, &text)? } else { parse_json(&path, &text)? };
        collect(&mut config, &path, body)?;
    }
    Ok(Some(config))
}

/// Parses HCL native syntax, turning a syntax error into `file:line:col`.
pub fn parse_native(file: &str, text: &str) -> Result<Body, HclError> {
    hcl::parse(text).map_err(|e| match e {
        hcl::Error::Parse(p) => {
            HclError::Syntax { file: file.to_string(), line: p.location().line(), column: p.location().column(), message: one_line(p.message()) }
        }
        other => HclError::Invalid { file: file.to_string(), message: one_line(&other.to_string()) },
    })
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn collect(config: &mut ModuleConfig, file: &str, body: Body) -> Result<(), HclError> {
    let invalid = |message: String| HclError::Invalid { file: file.to_string(), message };
    for structure in body.into_inner() {
        let Structure::Block(block) = structure else { continue };
        let labels: Vec<String> = block.labels.iter().map(|l| l.as_str().to_string()).collect();
        match (block.identifier.as_str(), labels.as_slice()) {
            ("variable", [name]) => config.variables.push(variable(name, file, &block.body)?),
            ("data", [ty, name]) => match Kind::from_terraform_type(ty).filter(|k| [Kind::Template, Kind::Vm, Kind::Network].contains(k)) {
                Some(kind) => {
                    let attr = |key: &str| block.body.attributes().find(|a| a.key.as_str() == key).map(|a| a.expr.clone());
                    config.data.push(DataBlock {
                        kind,
                        label: name.clone(),
                        file: file.to_string(),
                        count: attr("count"),
                        for_each: attr("for_each"),
                        args: block.body.attributes().filter(|a| !META_ARGS.contains(&a.key.as_str())).map(|a| (a.key.to_string(), a.expr.clone())).collect(),
                    });
                }
                None => config.foreign_data.push(format!("{ty}.{name}")),
            },
            ("locals", []) => {
                config.locals.extend(block.body.attributes().map(|a| (a.key.to_string(), a.expr.clone())));
            }
            ("output", [name]) => {
                if let Some(v) = block.body.attributes().find(|a| a.key.as_str() == "value") {
                    config.outputs.push((name.clone(), v.expr.clone()));
                }
            }
            ("module", [name]) => {
                let attr = |key: &str| block.body.attributes().find(|a| a.key.as_str() == key).map(|a| a.expr.clone());
                let source = match attr("source") {
                    Some(Expression::String(s)) => Some(s),
                    Some(_) => return Err(invalid(format!("module {name:?}: source must be a literal string"))),
                    None => return Err(invalid(format!("module {name:?} has no source"))),
                };
                config.modules.push(ModuleCall {
                    label: name.clone(),
                    file: file.to_string(),
                    source,
                    count: attr("count"),
                    for_each: attr("for_each"),
                    inputs: block
                        .body
                        .attributes()
                        .filter(|a| !["source", "version", "count", "for_each", "depends_on", "providers"].contains(&a.key.as_str()))
                        .map(|a| (a.key.to_string(), a.expr.clone()))
                        .collect(),
                });
            }
            ("resource", [ty, name]) => {
                let Some(kind) = Kind::from_terraform_type(ty).filter(|k| Kind::MANAGED.contains(k)) else { continue };
                config.resources.push(resource_block(kind, name, file, &block.body));
            }
            ("resource", _) => return Err(invalid("a resource block needs a type and a name label".into())),
            _ => {}
        }
    }
    Ok(())
}

fn variable(name: &str, file: &str, body: &Body) -> Result<VariableDecl, HclError> {
    let attr = |key: &str| body.attributes().find(|a| a.key.as_str() == key).map(|a| a.expr.clone());
    let flag = |key: &str, default: bool| match attr(key) {
        None => Ok(default),
        Some(Expression::Bool(b)) => Ok(b),
        Some(_) => Err(HclError::Invalid { file: file.to_string(), message: format!("variable {name:?}: {key} must be true or false") }),
    };
    let mut validations = Vec::new();
    for v in body.blocks().filter(|b| b.identifier.as_str() == "validation") {
        let arg = |key: &str| v.body.attributes().find(|a| a.key.as_str() == key).map(|a| a.expr.clone());
        let (Some(condition), Some(message)) = (arg("condition"), arg("error_message")) else {
            return Err(HclError::Invalid {
                file: file.to_string(),
                message: format!("variable {name:?}: a validation block needs condition and error_message"),
            });
        };
        validations.push((condition, message));
    }
    Ok(VariableDecl {
        name: name.to_string(),
        file: file.to_string(),
        ty: attr("type"),
        default: attr("default"),
        nullable: flag("nullable", true)?,
        sensitive: flag("sensitive", false)?,
        validations,
    })
}

fn resource_block(kind: Kind, label: &str, file: &str, body: &Body) -> ResourceBlock {
    let attr = |key: &str| body.attributes().find(|a| a.key.as_str() == key).map(|a| a.expr.clone());
    let mut r = ResourceBlock {
        kind,
        label: label.to_string(),
        file: file.to_string(),
        count: attr("count"),
        for_each: attr("for_each"),
        attributes: Vec::new(),
        blocks: Vec::new(),
    };
    for structure in body.iter() {
        match structure {
            Structure::Attribute(a) if !META_ARGS.contains(&a.key.as_str()) => r.attributes.push((a.key.to_string(), a.expr.clone())),
            Structure::Attribute(_) => {}
            Structure::Block(b) if b.identifier.as_str() == "dynamic" => {
                let name = b.labels.first().map(|l| l.as_str().to_string()).unwrap_or_default();
                let arg = |key: &str| b.body.attributes().find(|a| a.key.as_str() == key).map(|a| a.expr.clone());
                let iterator = match arg("iterator") {
                    Some(Expression::Variable(v)) => v.as_str().to_string(),
                    Some(Expression::String(s)) => s,
                    _ => name.clone(),
                };
                let content = b.body.blocks().find(|c| c.identifier.as_str() == "content");
                r.blocks.push(NestedBlock {
                    name,
                    args: content.map(|c| c.body.attributes().map(|a| (a.key.to_string(), a.expr.clone())).collect()).unwrap_or_default(),
                    dynamic: Some(DynamicSpec { for_each: arg("for_each").unwrap_or(Expression::Null), iterator }),
                });
            }
            Structure::Block(b) if META_BLOCKS.contains(&b.identifier.as_str()) => {}
            Structure::Block(b) => {
                r.blocks.push(NestedBlock {
                    name: b.identifier.to_string(),
                    args: b.body.attributes().map(|a| (a.key.to_string(), a.expr.clone())).collect(),
                    dynamic: None,
                });
            }
        }
    }
    r
}

/// Parses Terraform's JSON syntax into the same body a `.tf` file gives: strings are
/// templates, `"${expr}"` alone is the expression, and a resource's block attributes
/// (`firewall_rule`) become repeated blocks.
pub fn parse_json(file: &str, text: &str) -> Result<Body, HclError> {
    let invalid = |message: String| HclError::Invalid { file: file.to_string(), message };
    let root: serde_json::Value =
        serde_json::from_str(text).map_err(|e| HclError::Syntax { file: file.to_string(), line: e.line(), column: e.column(), message: e.to_string() })?;
    let root = root.as_object().ok_or_else(|| invalid("the top level must be an object".into()))?;
    let mut body = Body::builder();
    for (section, content) in root {
        let Some(content) = content.as_object() else { continue };
        match section.as_str() {
            "variable" => {
                for (name, v) in content {
                    // `validation` is a list of blocks (or one block); the rest are attributes.
                    let mut fields = v.as_object().cloned().unwrap_or_default();
                    let validations = match fields.remove("validation") {
                        Some(serde_json::Value::Array(list)) => list,
                        Some(one) => vec![one],
                        None => Vec::new(),
                    };
                    let mut block =
                        hcl::Block::builder("variable").add_label(name.as_str()).add_attributes(json_attrs(&serde_json::Value::Object(fields), None)?);
                    for rule in &validations {
                        block = block.add_block(hcl::Block::builder("validation").add_attributes(json_attrs(rule, None)?).build());
                    }
                    body = body.add_block(block.build());
                }
            }
            "output" | "module" => {
                for (name, v) in content {
                    body = body.add_block(hcl::Block::builder(section.as_str()).add_label(name.as_str()).add_attributes(json_attrs(v, None)?).build());
                }
            }
            "locals" => {
                body = body.add_block(hcl::Block::builder("locals").add_attributes(json_attrs(&serde_json::Value::Object(content.clone()), None)?).build())
            }
            "resource" | "data" => {
                for (ty, by_name) in content {
                    let kind = Kind::from_terraform_type(ty);
                    for (name, v) in by_name.as_object().into_iter().flatten() {
                        let mut block = hcl::Block::builder(section.as_str()).add_label(ty.as_str()).add_label(name.as_str());
                        block = block.add_attributes(json_attrs(v, kind)?);
                        for (block_name, items) in json_blocks(v, kind) {
                            block = block.add_block(hcl::Block::builder(block_name.as_str()).add_attributes(json_attrs(&items, None)?).build());
                        }
                        body = body.add_block(block.build());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(body.build())
}

fn block_names(kind: Option<Kind>) -> Vec<String> {
    let Some(kind) = kind else { return Vec::new() };
    let mut names: Vec<String> = kind
        .schema()
        .attributes
        .iter()
        .filter_map(|a| match &a.ty {
            AttrType::Blocks { block_name, .. } => Some(block_name.clone()),
            _ => None,
        })
        .collect();
    names.extend(META_BLOCKS.iter().map(|s| s.to_string()));
    names
}

fn json_attrs(v: &serde_json::Value, kind: Option<Kind>) -> Result<Vec<hcl::Attribute>, HclError> {
    let skip = block_names(kind);
    Ok(v.as_object().into_iter().flatten().filter(|(k, _)| !skip.contains(k)).map(|(k, v)| hcl::Attribute::new(k.as_str(), json_expr(v))).collect())
}

fn json_blocks(v: &serde_json::Value, kind: Option<Kind>) -> Vec<(String, serde_json::Value)> {
    let names = block_names(kind);
    let mut out = Vec::new();
    for (k, items) in v.as_object().into_iter().flatten() {
        if !names.contains(k) || META_BLOCKS.contains(&k.as_str()) {
            continue;
        }
        match items {
            serde_json::Value::Array(list) => out.extend(list.iter().map(|i| (k.clone(), i.clone()))),
            other => out.push((k.clone(), other.clone())),
        }
    }
    out
}

fn json_expr(v: &serde_json::Value) -> Expression {
    match v {
        serde_json::Value::Null => Expression::Null,
        serde_json::Value::Bool(b) => Expression::Bool(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Expression::from(i),
            None => Expression::from(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => json_string(s),
        serde_json::Value::Array(items) => Expression::Array(items.iter().map(json_expr).collect()),
        serde_json::Value::Object(m) => Expression::Object(m.iter().map(|(k, v)| (hcl::ObjectKey::from(k.as_str()), json_expr(v))).collect()),
    }
}

fn json_string(s: &str) -> Expression {
    if !s.contains("${") && !s.contains("%{") {
        return Expression::String(s.to_string());
    }
    // A string that is one interpolation and nothing else is that expression, list or map included.
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains("${")
        && let Ok(body) = hcl::parse(&format!("x = {inner}"))
        && let Some(a) = body.attributes().next()
    {
        return a.expr.clone();
    }
    Expression::TemplateExpr(Box::new(TemplateExpr::QuotedString(s.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemoryTree;

    #[test]
    fn reads_native_and_json_files() {
        let tree = MemoryTree::new([
            (
                "main.tf",
                "variable \"size\" { default = 4 }\nresource \"novacron_network\" \"core\" {\n  cidr = \"10.0.0.0/24\"\n  firewall_rule {\n    direction = \"ingress\"\n  }\n  lifecycle { prevent_destroy = true }\n}\nresource \"other_thing\" \"x\" {}\n",
            ),
            (
                "vm.tf.json",
                r#"{"resource": {"novacron_vm": {"web": {"count": 2, "memory_gb": "${var.size}", "name": "web-${count.index}", "timeouts": {"create": "5m"}}}}}"#,
            ),
            ("README.md", "not hcl"),
        ]);
        let config = read_module(&tree, "").expect("parses").expect("exists");
        assert_eq!(config.variables.len(), 1);
        assert_eq!(config.resources.len(), 2);
        let net = &config.resources[0];
        assert_eq!((net.kind, net.blocks.len(), net.attributes.len()), (Kind::Network, 1, 1));
        let vm = &config.resources[1];
        assert_eq!(vm.kind, Kind::Vm);
        assert!(vm.count.is_some());
        assert!(matches!(vm.attributes.iter().find(|(k, _)| k == "memory_gb"), Some((_, Expression::Traversal(_)))));
        assert!(!vm.attributes.iter().any(|(k, _)| k == "timeouts"));
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let tree = MemoryTree::new([("main.tf", "resource \"novacron_vm\" \"web\" {\n  cpu_cores = \n}\n")]);
        let err = read_module(&tree, "").expect_err("syntax error");
        let text = err.to_string();
        assert!(text.starts_with("main.tf:"), "{text}");
        assert!(matches!(err, HclError::Syntax { line: 2 | 3, .. }), "{text}");
        assert!(!text.contains('\n'));
    }
}
