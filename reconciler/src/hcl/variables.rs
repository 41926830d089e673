//! Input variables: values from tfvars files, `--var` flags and module calls, converted to their declared type, defaulted and validated.

use std::collections::HashMap;

use hcl::{Expression, Map, Value};

use super::HclError;
use super::attrs::to_hcl;
use super::parse::{VariableDecl, parse_native};
use super::resolve::{Instance, Refs};
use super::types::{TypeConstraint, convert, parse_type};
use crate::source::SourceTree;

/// Why a reference is unknown, by its name (`var.x`).
pub type Unknown = HashMap<String, String>;

/// A value given for a variable, and where it came from (for messages).
#[derive(Debug, Clone)]
pub enum Given {
    /// An evaluated value (tfvars file, module input).
    Value(Value, String),
    /// A `--var NAME=VALUE` flag's raw text: parsed per the declared type, as Terraform does.
    Flag(String),
}

/// The variables of one module instance, bound.
#[derive(Debug, Default)]
pub struct Bound {
    /// Known values, converted to their types.
    pub values: Map<String, Value>,
    /// Unknown ones, with reasons.
    pub unknown: Unknown,
    /// Names of the `sensitive = true` ones.
    pub sensitive: Vec<String>,
    /// Validations that could not be checked, one line each.
    pub warnings: Vec<String>,
}

/// Values for the root module's variables: `terraform.tfvars`, `terraform.tfvars.json`, then
/// `*.auto.tfvars` and `*.auto.tfvars.json` in name order, then `--var` flags, each overriding
/// the ones before. The environment (`TF_VAR_*`) is not read: the desired state is the repository.
pub fn root_values(tree: &dyn SourceTree, root: &str, flags: &[String], refs: &Refs<'_>) -> Result<HashMap<String, Given>, HclError> {
    let none = Instance::default();
    let mut given = HashMap::new();
    let mut files: Vec<String> = tree.files(root).unwrap_or_default();
    files.retain(|f| f.ends_with(".auto.tfvars") || f.ends_with(".auto.tfvars.json"));
    files.sort();
    files.insert(0, "terraform.tfvars.json".into());
    files.insert(0, "terraform.tfvars".into());
    for name in files {
        let path = if root.is_empty() { name.clone() } else { format!("{root}/{name}") };
        let Some(text) = tree.read(&path) else { continue };
        let body = if name.ends_with(".json") { json_vars(&path, &text)? } else { parse_native(&path, &text)? };
        for attr in body.attributes() {
            // tfvars hold constants; a value that does not evaluate is an error in the file (never quoted).
            let value = refs.eval(&attr.expr, &none).map_err(|_| HclError::Invalid {
                file: path.clone(),
                message: format!("{}: a tfvars value must be a constant (no references or unknown functions)", attr.key),
            })?;
            given.insert(attr.key.to_string(), Given::Value(value, name.clone()));
        }
    }
    for flag in flags {
        let (name, raw) = flag.split_once('=').filter(|(n, _)| !n.trim().is_empty()).ok_or(HclError::BadVar)?;
        given.insert(name.trim().to_string(), Given::Flag(raw.to_string()));
    }
    Ok(given)
}

fn json_vars(path: &str, text: &str) -> Result<hcl::Body, HclError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| HclError::Syntax { file: path.into(), line: e.line(), column: e.column(), message: e.to_string() })?;
    let attrs = value.as_object().into_iter().flatten().map(|(k, v)| hcl::Attribute::new(k.as_str(), Expression::from(to_hcl(v))));
    Ok(hcl::Body::builder().add_attributes(attrs).build())
}

/// Binds the declared variables of one module instance. `given` holds the values supplied
/// (tfvars and flags for the root, inputs for a call); `unknown_inputs` the inputs that could
/// not be evaluated; `module` names the instance in messages (`""` for the root). A value of
/// the wrong type, a null for `nullable = false`, or a failing validation is an error.
pub fn bind(decls: &[VariableDecl], mut given: HashMap<String, Given>, unknown_inputs: &Unknown, module: &str, refs: &Refs<'_>) -> Result<Bound, HclError> {
    let none = Instance::default();
    let mut out = Bound::default();
    let label = |name: &str| if module.is_empty() { format!("var.{name}") } else { format!("{module}.var.{name}") };
    for decl in decls {
        if decl.sensitive {
            out.sensitive.push(decl.name.clone());
        }
        let ty = match &decl.ty {
            Some(e) => {
                parse_type(e).map_err(|message| HclError::Invalid { file: decl.file.clone(), message: format!("variable {:?}: type: {message}", decl.name) })?
            }
            None => TypeConstraint::Any,
        };
        let default = match &decl.default {
            Some(e) => Some(refs.eval(e, &none).map_err(|_| HclError::Invalid {
                file: decl.file.clone(),
                message: format!("variable {:?}: the default must be a constant (no references)", decl.name),
            })?),
            None => None,
        };
        let key = format!("var.{}", decl.name);
        let (value, source) = match given.remove(&decl.name) {
            Some(Given::Flag(raw)) => (flag_value(&raw, decl.ty.is_some(), &ty, refs), "a --var flag".to_string()),
            Some(Given::Value(v, source)) => (v, source),
            None if unknown_inputs.contains_key(&key) => {
                out.unknown.insert(key.clone(), unknown_inputs[&key].clone());
                continue;
            }
            None => match &default {
                Some(d) => (d.clone(), "its default".to_string()),
                None => {
                    let why = if module.is_empty() {
                        format!("var.{0} has no value: set it in terraform.tfvars or with --var {0}=VALUE", decl.name)
                    } else {
                        format!("{} has no value: the module call does not set {}", label(&decl.name), decl.name)
                    };
                    out.unknown.insert(key, why);
                    continue;
                }
            },
        };
        let value = match (value, &default) {
            (Value::Null, Some(d)) if !decl.nullable => d.clone(),
            (Value::Null, None) if !decl.nullable => {
                return Err(HclError::NullVariable { file: decl.file.clone(), variable: label(&decl.name), origin: source });
            }
            (v, _) => v,
        };
        let value = convert(&value, &ty).map_err(|e| HclError::VariableType {
            file: decl.file.clone(),
            variable: label(&decl.name),
            origin: source.clone(),
            expected: ty.to_string(),
            problem: e.to_string(),
        })?;
        out.values.insert(decl.name.clone(), value);
    }
    for decl in decls {
        validate(decl, &mut out, &label(&decl.name), refs)?;
    }
    Ok(out)
}

/// A `--var` value: literal text for an untyped or primitive variable, an HCL expression otherwise.
fn flag_value(raw: &str, typed: bool, ty: &TypeConstraint, refs: &Refs<'_>) -> Value {
    let literal = !typed || matches!(ty, TypeConstraint::String | TypeConstraint::Number | TypeConstraint::Bool);
    if literal {
        return Value::from(raw);
    }
    hcl::parse(&format!("v = {raw}"))
        .ok()
        .and_then(|b| b.attributes().next().map(|a| a.expr.clone()))
        .and_then(|e| refs.eval(&e, &Instance::default()).ok())
        .unwrap_or_else(|| Value::from(raw))
}

/// Checks the `validation` blocks of one variable against its bound value.
fn validate(decl: &VariableDecl, bound: &mut Bound, label: &str, refs: &Refs<'_>) -> Result<(), HclError> {
    if decl.validations.is_empty() || !bound.values.contains_key(&decl.name) {
        return Ok(());
    }
    let scope = Refs { vars: bound.values.clone(), unknown: bound.unknown.clone(), ctx: refs.ctx, files: refs.files, ..Refs::default() };
    let none = Instance::default();
    for (condition, message) in &decl.validations {
        match scope.eval(condition, &none) {
            Ok(Value::Bool(true)) => {}
            Ok(Value::Bool(false)) => {
                // Terraform refuses to show an error_message built from a sensitive value; so does this.
                let message = match scope.eval(message, &none) {
                    _ if decl.sensitive && message.to_string().contains(&format!("var.{}", decl.name)) => {
                        "its validation rule failed (the error_message is not shown: it uses the sensitive value)".to_string()
                    }
                    Ok(Value::String(s)) => s,
                    _ => "its validation rule failed (the error_message could not be evaluated)".to_string(),
                };
                return Err(HclError::Validation { file: decl.file.clone(), variable: label.to_string(), message });
            }
            Ok(_) => return Err(HclError::Invalid { file: decl.file.clone(), message: format!("{label}: a validation condition must be true or false") }),
            Err(reason) => {
                let reason = if decl.sensitive { "details hidden: the variable is sensitive".to_string() } else { reason };
                bound.warnings.push(format!("{label}: a validation rule could not be checked ({reason})"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
