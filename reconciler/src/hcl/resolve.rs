//! Resolves references (`var.`, `local.`, `each.`, `novacron_network.core.id`, ...) for the expression evaluator.
//!
//! The evaluator (`expr.rs`) asks for a name when it meets one, so no expression is rewritten
//! or cloned and one evaluator serves every instance.

use std::collections::HashMap;

use hcl::eval::Context;
use hcl::expr::TraversalOperator;
use hcl::template::{Directive, Element, Template};
use hcl::{Expression, Map, Value};

use super::expr::{EvalError, Evaluator, References};
use super::funcs::FileAccess;

/// What references can resolve to in one module instance.
#[derive(Debug, Default)]
pub struct Refs<'a> {
    /// `var.*`.
    pub vars: Map<String, Value>,
    /// `local.*` evaluated so far.
    pub locals: Map<String, Value>,
    /// `novacron_<type>.<name>` evaluated so far: an object, or a list / map of them.
    pub resources: HashMap<String, Value>,
    /// `module.<name>` outputs evaluated so far.
    pub modules: HashMap<String, Value>,
    /// `data.<type>` read so far: an object of the data sources of that type by name.
    pub data: HashMap<String, Value>,
    /// Why a local, resource or module is unknown, by its reference (`local.x`).
    pub unknown: HashMap<String, String>,
    /// `path.module`.
    pub path_module: String,
    /// Kept for the configuration level's signatures; the evaluator has its own functions.
    pub ctx: Option<&'a Context<'a>>,
    /// The files of the revision, for `file()`, `templatefile()` and the like.
    pub files: FileAccess<'a>,
}

/// The per-instance part: `each` and `count`.
#[derive(Debug, Default, Clone)]
pub struct Instance {
    /// `{key, value}` under `for_each`.
    pub each: Option<Value>,
    /// `{index}` under `count`.
    pub count: Option<Value>,
    /// Iterators of enclosing `dynamic` blocks: `(name, {key, value})`.
    pub extra: Vec<(String, Value)>,
}

/// The roots the resolver knows; anything else is undeclared (other providers' resources).
fn is_resource_root(root: &str) -> bool {
    root.starts_with("novacron_")
}

/// What a failed evaluation says instead of its reason when a sensitive value was involved.
const SENSITIVE_DETAILS: &str = "the arguments are invalid (details hidden: a sensitive value is involved)";

/// A value and whether it derives from `sensitive()`.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluated {
    /// The value.
    pub value: Value,
    /// Whether `sensitive()` marked it (its text must not reach a message).
    pub sensitive: bool,
}

impl Refs<'_> {
    /// Evaluates `expr` in this scope; the error is a one-line reason for a warning.
    pub fn eval(&self, expr: &Expression, inst: &Instance) -> Result<Value, String> {
        self.evaluate(expr, inst).map(|e| e.value).map_err(|e| one_line(&e.to_string()))
    }

    /// Evaluates `expr` in this scope, keeping the kind of failure and the sensitivity.
    pub fn evaluate(&self, expr: &Expression, inst: &Instance) -> Result<Evaluated, EvalError> {
        let bound = Bound { refs: self, inst };
        let mut ev = Evaluator::with_references(self.files, &bound);
        let result = ev.eval(expr);
        let sensitive = ev.sensitive;
        let value = result.map_err(|e| match e {
            EvalError::Reference(name) => EvalError::Unknown(self.unknown.get(&name).cloned().unwrap_or_else(|| format!("{name} is not declared"))),
            // A message may quote an argument; one derived from sensitive() must not be shown.
            EvalError::Call { function, .. } if sensitive => EvalError::Call { function, message: SENSITIVE_DETAILS.into() },
            EvalError::Invalid(_) if sensitive => EvalError::Invalid(SENSITIVE_DETAILS.into()),
            other => other,
        })?;
        Ok(Evaluated { value, sensitive })
    }

    /// The whole value of a bare root variable (`each`, `count`, `path`, `terraform`).
    fn root_value(&self, root: &str, inst: &Instance) -> Option<Value> {
        if let Some((_, v)) = inst.extra.iter().rev().find(|(name, _)| name == root) {
            return Some(v.clone());
        }
        match root {
            "each" => inst.each.clone(),
            "count" => inst.count.clone(),
            "path" => Some(Value::Object(Map::from_iter([
                ("cwd".to_string(), Value::from(".")),
                ("module".to_string(), Value::from(self.path_module.clone())),
                ("root".to_string(), Value::from(".")),
            ]))),
            "terraform" => Some(Value::Object(Map::from_iter([("workspace".to_string(), Value::from("default"))]))),
            _ => None,
        }
    }

    fn lookup<'v>(&self, found: Option<&'v Value>, name: String) -> Result<&'v Value, String> {
        found.ok_or_else(|| self.unknown.get(&name).cloned().unwrap_or_else(|| format!("{name} is not declared")))
    }
}

/// Evaluates one standalone expression as an output of a root module at the top of `files`
/// would be: no variables or resources, `path.module` `.`, `terraform.workspace` `default`,
/// and file functions reading `files`.
pub fn evaluate_expression(text: &str, files: &dyn crate::source::SourceTree) -> Result<Evaluated, EvalError> {
    let body = hcl::parse(&format!("x = {text}\n")).map_err(|e| EvalError::Invalid(format!("syntax error: {}", one_line(&e.to_string()))))?;
    let expr = body.attributes().next().map(|a| a.expr.clone()).ok_or_else(|| EvalError::Invalid("no expression".into()))?;
    let refs = Refs { path_module: ".".into(), files: FileAccess::new(files), ..Refs::default() };
    refs.evaluate(&expr, &Instance::default())
}

/// One module instance's references, as the evaluator asks for them.
struct Bound<'r> {
    refs: &'r Refs<'r>,
    inst: &'r Instance,
}

impl References for Bound<'_> {
    fn root(&self, name: &str) -> Option<Value> {
        self.refs.root_value(name, self.inst)
    }

    fn attr(&self, root: &str, attr: &str) -> Option<Result<&Value, String>> {
        let r = self.refs;
        if self.inst.extra.iter().any(|(n, _)| n == root) {
            return None;
        }
        Some(match root {
            "var" => r.lookup(r.vars.get(attr), format!("var.{attr}")),
            "local" => r.lookup(r.locals.get(attr), format!("local.{attr}")),
            "module" => r.lookup(r.modules.get(attr), format!("module.{attr}")),
            "data" => match r.data.get(attr) {
                Some(v) => Ok(v),
                None => Err(r.unknown.get(&format!("data.{attr}")).cloned().unwrap_or_else(|| format!("data.{attr} is a data source, which is not read"))),
            },
            _ if is_resource_root(root) => r.lookup(r.resources.get(&format!("{root}.{attr}")), format!("{root}.{attr}")),
            _ => return None,
        })
    }
}

/// The references an expression makes to locals, resources and modules of its own module,
/// as `local.x`, `novacron_vm.web`, `module.m`: the evaluator orders its work by them.
pub fn references(expr: &Expression, out: &mut Vec<String>) {
    match expr {
        Expression::Traversal(t) => {
            if let (Expression::Variable(root), Some(TraversalOperator::GetAttr(name))) = (&t.expr, t.operators.first()) {
                let root = root.as_str();
                if root == "local" || root == "module" || is_resource_root(root) {
                    out.push(format!("{root}.{name}"));
                }
                if let ("data", Some(TraversalOperator::GetAttr(label))) = (root, t.operators.get(1)) {
                    out.push(format!("data.{name}.{label}"));
                }
            }
            references(&t.expr, out);
            for op in &t.operators {
                if let TraversalOperator::Index(i) = op {
                    references(i, out);
                }
            }
        }
        Expression::FuncCall(call) => call.args.iter().for_each(|a| references(a, out)),
        Expression::Array(items) => items.iter().for_each(|a| references(a, out)),
        Expression::Object(obj) => {
            for (k, v) in obj.iter() {
                if let hcl::ObjectKey::Expression(e) = k {
                    references(e, out);
                }
                references(v, out);
            }
        }
        Expression::Parenthesis(e) => references(e, out),
        Expression::Conditional(c) => [&c.cond_expr, &c.true_expr, &c.false_expr].into_iter().for_each(|e| references(e, out)),
        Expression::Operation(op) => match op.as_ref() {
            hcl::expr::Operation::Unary(u) => references(&u.expr, out),
            hcl::expr::Operation::Binary(b) => {
                references(&b.lhs_expr, out);
                references(&b.rhs_expr, out);
            }
        },
        Expression::ForExpr(f) => {
            references(&f.collection_expr, out);
            f.key_expr.iter().chain(f.cond_expr.iter()).for_each(|e| references(e, out));
            references(&f.value_expr, out);
        }
        Expression::TemplateExpr(t) => {
            if let Ok(template) = Template::from_expr(t) {
                template_references(&template, out);
            }
        }
        _ => {}
    }
}

fn template_references(template: &Template, out: &mut Vec<String>) {
    for element in template.elements() {
        match element {
            Element::Literal(_) => {}
            Element::Interpolation(i) => references(&i.expr, out),
            Element::Directive(Directive::If(d)) => {
                references(&d.cond_expr, out);
                template_references(&d.true_template, out);
                if let Some(f) = &d.false_template {
                    template_references(f, out);
                }
            }
            Element::Directive(Directive::For(d)) => {
                references(&d.collection_expr, out);
                template_references(&d.template, out);
            }
        }
    }
}

/// Collapses a message onto one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hcl::funcs::function_context;

    fn expr(src: &str) -> Expression {
        hcl::parse(&format!("x = {src}")).expect("parses").attributes().next().expect("attr").expr.clone()
    }

    #[test]
    fn resolves_vars_locals_each_and_resources() {
        let ctx = function_context();
        let mut refs = Refs { ctx: Some(&ctx), ..Refs::default() };
        refs.vars.insert("env".into(), Value::from("prod"));
        refs.locals.insert("sizes".into(), hcl::value!({ small = 2, large = 8 }));
        refs.resources.insert("novacron_network.core".into(), hcl::value!({ id = "net-1", name = "core" }));
        let inst = Instance { each: Some(hcl::value!({ key = "large", value = "x" })), ..Instance::default() };
        assert_eq!(refs.eval(&expr(r#""${var.env}-${each.key}""#), &inst), Ok(Value::from("prod-large")));
        assert_eq!(refs.eval(&expr("local.sizes[each.key]"), &inst), Ok(Value::from(8)));
        assert_eq!(refs.eval(&expr("novacron_network.core.id"), &inst), Ok(Value::from("net-1")));
        assert_eq!(refs.eval(&expr(r#"upper(lookup(local.sizes, "x", "none"))"#), &inst), Ok(Value::from("NONE")));
        assert_eq!(
            refs.eval(&expr("[for k, v in local.sizes : \"${k}=${v}\"]"), &inst),
            Ok(hcl::value!(["large=8", "small=2"])),
            "map keys in lexical order, as Terraform iterates them"
        );
    }

    #[test]
    fn unknowns_say_why() {
        let ctx = function_context();
        let mut refs = Refs { ctx: Some(&ctx), ..Refs::default() };
        refs.unknown.insert("novacron_vm.gone".into(), "novacron_vm.gone has no live object, so its id is unknown".into());
        let inst = Instance::default();
        let err = refs.eval(&expr("data.novacron_template.ubuntu.id"), &inst).expect_err("unknown");
        assert!(err.contains("data source"), "{err}");
        let err = refs.eval(&expr("novacron_vm.gone.id"), &inst).expect_err("unknown");
        assert!(err.contains("no live object"), "{err}");
        assert!(refs.eval(&expr("nosuchfn(1)"), &inst).is_err());
        assert_eq!(refs.eval(&expr("try(data.x.y.z, \"fallback\")"), &inst), Ok(Value::from("fallback")));
    }

    #[test]
    fn errors_involving_sensitive_values_do_not_quote_them() {
        let refs = Refs::default();
        let err = refs.eval(&expr(r#"tonumber(sensitive("hunter2"))"#), &Instance::default()).expect_err("not a number");
        assert!(!err.contains("hunter2") && err.contains("tonumber()") && err.contains("sensitive"), "{err}");
        let err = refs.eval(&expr(r#"tonumber("plain")"#), &Instance::default()).expect_err("not a number");
        assert!(err.contains("plain"), "{err}");
    }

    #[test]
    fn templatestring_renders_a_referenced_template() {
        let mut refs = Refs::default();
        refs.locals.insert("t".into(), Value::from("Hello, ${name}!%{ for x in xs } ${x}%{ endfor }"));
        let got = refs.eval(&expr(r#"templatestring(local.t, {name = "world", xs = [1, 2]})"#), &Instance::default());
        assert_eq!(got, Ok(Value::from("Hello, world! 1 2")));
    }

    #[test]
    fn finds_references() {
        let mut out = Vec::new();
        references(&expr(r#""${local.a}-${novacron_network.core.id}" == module.m.x ? var.v : try(local.b, 1)"#), &mut out);
        assert_eq!(out, ["local.a", "novacron_network.core", "module.m", "local.b"]);
    }
}
