//! Substitutes values for references (`var.`, `local.`, `each.`, `novacron_network.core.id`, ...) and evaluates `try`.
//!
//! References are resolved by rewriting the expression before hcl-rs evaluates it, so one
//! function-only context serves every expression and no per-instance context is cloned.

use std::collections::HashMap;

use hcl::eval::{Context, Evaluate};
use hcl::expr::{FuncCall, TemplateExpr, Traversal, TraversalOperator};
use hcl::template::{Directive, Element, Template};
use hcl::{Expression, Map, Value};

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
    /// Why a local, resource or module is unknown, by its reference (`local.x`).
    pub unknown: HashMap<String, String>,
    /// `path.module`.
    pub path_module: String,
    /// The functions.
    pub ctx: Option<&'a Context<'a>>,
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

/// The roots the resolver knows; anything else is left for hcl-rs (for-expression variables)
/// or fails evaluation (data sources, other providers' resources), which makes it unknown.
fn is_resource_root(root: &str) -> bool {
    root.starts_with("novacron_")
}

impl Refs<'_> {
    /// Evaluates `expr` in this scope; the error is a one-line reason for a warning.
    pub fn eval(&self, expr: &Expression, inst: &Instance) -> Result<Value, String> {
        let mut notes = Vec::new();
        let resolved = self.resolve(expr, inst, &mut notes);
        let empty = Context::new();
        let ctx = self.ctx.unwrap_or(&empty);
        resolved.evaluate(ctx).map_err(|e| notes.into_iter().next().unwrap_or_else(|| one_line(&e.to_string())))
    }

    fn resolve(&self, expr: &Expression, inst: &Instance, notes: &mut Vec<String>) -> Expression {
        let mut out = expr.clone();
        self.rewrite(&mut out, inst, notes);
        out
    }

    fn rewrite(&self, expr: &mut Expression, inst: &Instance, notes: &mut Vec<String>) {
        match expr {
            Expression::Variable(v) => {
                if let Some(value) = self.root_value(v.as_str(), inst) {
                    *expr = Expression::from(value.clone());
                }
            }
            Expression::Traversal(t) => {
                if let Some(replacement) = self.traversal(t, inst, notes) {
                    *expr = replacement;
                    return;
                }
                self.rewrite(&mut t.expr, inst, notes);
                for op in &mut t.operators {
                    if let TraversalOperator::Index(i) = op {
                        self.rewrite(i, inst, notes);
                    }
                }
            }
            Expression::FuncCall(call) if call.name.namespace.is_empty() && call.name.name.as_str() == "try" => {
                *expr = self.try_call(call, inst, notes).unwrap_or_else(|| expr.clone());
            }
            Expression::FuncCall(call) => call.args.iter_mut().for_each(|a| self.rewrite(a, inst, notes)),
            Expression::Array(items) => items.iter_mut().for_each(|a| self.rewrite(a, inst, notes)),
            Expression::Object(obj) => {
                let entries: Vec<_> = std::mem::take(obj).into_iter().collect();
                for (mut k, mut v) in entries {
                    if let hcl::ObjectKey::Expression(e) = &mut k {
                        self.rewrite(e, inst, notes);
                    }
                    self.rewrite(&mut v, inst, notes);
                    obj.insert(k, v);
                }
            }
            Expression::Parenthesis(e) => self.rewrite(e, inst, notes),
            Expression::Conditional(c) => {
                self.rewrite(&mut c.cond_expr, inst, notes);
                self.rewrite(&mut c.true_expr, inst, notes);
                self.rewrite(&mut c.false_expr, inst, notes);
            }
            Expression::Operation(op) => match op.as_mut() {
                hcl::expr::Operation::Unary(u) => self.rewrite(&mut u.expr, inst, notes),
                hcl::expr::Operation::Binary(b) => {
                    self.rewrite(&mut b.lhs_expr, inst, notes);
                    self.rewrite(&mut b.rhs_expr, inst, notes);
                }
            },
            Expression::ForExpr(f) => {
                self.rewrite(&mut f.collection_expr, inst, notes);
                if let Some(k) = &mut f.key_expr {
                    self.rewrite(k, inst, notes);
                }
                self.rewrite(&mut f.value_expr, inst, notes);
                if let Some(c) = &mut f.cond_expr {
                    self.rewrite(c, inst, notes);
                }
            }
            Expression::TemplateExpr(t) => {
                if let Some(replacement) = self.template(t, inst, notes) {
                    *expr = replacement;
                }
            }
            Expression::Null | Expression::Bool(_) | Expression::Number(_) | Expression::String(_) => {}
            _ => {}
        }
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
                ("module".to_string(), Value::from(self.path_module.clone())),
                ("root".to_string(), Value::from(".")),
                ("cwd".to_string(), Value::from(".")),
            ]))),
            "terraform" => Some(Value::Object(Map::from_iter([("workspace".to_string(), Value::from("default"))]))),
            _ => None,
        }
    }

    /// Resolves a traversal rooted at a known name, applying as many operators as possible
    /// by reference so large locals are never cloned whole.
    fn traversal(&self, t: &mut Traversal, inst: &Instance, notes: &mut Vec<String>) -> Option<Expression> {
        let Expression::Variable(root) = &t.expr else { return None };
        let root = root.as_str().to_string();
        let first = match t.operators.first() {
            Some(TraversalOperator::GetAttr(name)) => Some(name.as_str().to_string()),
            _ => None,
        };
        let (base, used): (&Value, usize) = match (root.as_str(), &first) {
            ("var", Some(n)) => (self.lookup(self.vars.get(n), &format!("var.{n}"), notes)?, 1),
            ("local", Some(n)) => (self.lookup(self.locals.get(n), &format!("local.{n}"), notes)?, 1),
            ("module", Some(n)) => (self.lookup(self.modules.get(n), &format!("module.{n}"), notes)?, 1),
            ("data", Some(n)) => {
                let label = match t.operators.get(1) {
                    Some(TraversalOperator::GetAttr(label)) => format!(".{label}"),
                    _ => String::new(),
                };
                notes.push(format!("data.{n}{label} is a data source, which is not read"));
                return None;
            }
            (r, Some(n)) if is_resource_root(r) => (self.lookup(self.resources.get(&format!("{r}.{n}")), &format!("{r}.{n}"), notes)?, 1),
            (r, _) => {
                let owned = self.root_value(r, inst)?;
                let rest: Vec<TraversalOperator> = t.operators.clone();
                return Some(self.apply(&owned, &rest, inst, notes));
            }
        };
        let rest: Vec<TraversalOperator> = t.operators[used..].to_vec();
        Some(self.apply(base, &rest, inst, notes))
    }

    fn lookup<'v>(&self, found: Option<&'v Value>, name: &str, notes: &mut Vec<String>) -> Option<&'v Value> {
        if found.is_none() {
            notes.push(self.unknown.get(name).cloned().unwrap_or_else(|| format!("{name} is not declared")));
        }
        found
    }

    /// Applies `ops` to `value` while they are attribute or index lookups with a known key;
    /// what remains stays a traversal for hcl-rs.
    fn apply(&self, value: &Value, ops: &[TraversalOperator], inst: &Instance, notes: &mut Vec<String>) -> Expression {
        let mut current = value;
        let mut i = 0;
        while i < ops.len() {
            let next = match &ops[i] {
                TraversalOperator::GetAttr(name) => current.as_object().and_then(|o| o.get(name.as_str())),
                TraversalOperator::LegacyIndex(n) => usize::try_from(*n).ok().and_then(|n| current.as_array().and_then(|a| a.get(n))),
                TraversalOperator::Index(key) => match self.eval(key, inst) {
                    Ok(Value::String(k)) => current.as_object().and_then(|o| o.get(&k)),
                    Ok(Value::Number(n)) => n.as_u64().and_then(|n| usize::try_from(n).ok()).and_then(|n| current.as_array().and_then(|a| a.get(n))),
                    _ => None,
                },
                _ => None,
            };
            match next {
                Some(v) => current = v,
                None => break,
            }
            i += 1;
        }
        let base = Expression::from(current.clone());
        if i == ops.len() {
            return base;
        }
        let mut rest: Vec<TraversalOperator> = ops[i..].to_vec();
        for op in &mut rest {
            if let TraversalOperator::Index(e) = op {
                self.rewrite(e, inst, notes);
            }
        }
        if let Some(TraversalOperator::GetAttr(name)) = ops.get(i) {
            notes.push(format!("attribute {name} is not known"));
        }
        Expression::Traversal(Box::new(Traversal::new(base, rest)))
    }

    fn try_call(&self, call: &FuncCall, inst: &Instance, notes: &mut Vec<String>) -> Option<Expression> {
        for arg in &call.args {
            if let Ok(v) = self.eval(arg, inst) {
                return Some(Expression::from(v));
            }
        }
        notes.push("no argument of try() could be evaluated".into());
        None
    }

    /// Rewrites the interpolations of a template; a template that then evaluates becomes its string.
    fn template(&self, t: &TemplateExpr, inst: &Instance, notes: &mut Vec<String>) -> Option<Expression> {
        let mut template = Template::from_expr(t).ok()?;
        self.rewrite_template(&mut template, inst, notes);
        let empty = Context::new();
        match template.evaluate(self.ctx.unwrap_or(&empty)) {
            Ok(s) => Some(Expression::String(s)),
            Err(_) => Some(Expression::TemplateExpr(Box::new(TemplateExpr::QuotedString(template.to_string())))),
        }
    }

    fn rewrite_template(&self, template: &mut Template, inst: &Instance, notes: &mut Vec<String>) {
        for element in template.elements_mut() {
            match element {
                Element::Literal(_) => {}
                Element::Interpolation(i) => self.rewrite(&mut i.expr, inst, notes),
                Element::Directive(Directive::If(d)) => {
                    self.rewrite(&mut d.cond_expr, inst, notes);
                    self.rewrite_template(&mut d.true_template, inst, notes);
                    if let Some(f) = &mut d.false_template {
                        self.rewrite_template(f, inst, notes);
                    }
                }
                Element::Directive(Directive::For(d)) => {
                    self.rewrite(&mut d.collection_expr, inst, notes);
                    self.rewrite_template(&mut d.template, inst, notes);
                }
            }
        }
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

fn one_line(text: &str) -> String {
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
        assert_eq!(refs.eval(&expr("[for k, v in local.sizes : \"${k}=${v}\"]"), &inst), Ok(hcl::value!(["small=2", "large=8"])));
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
    fn finds_references() {
        let mut out = Vec::new();
        references(&expr(r#""${local.a}-${novacron_network.core.id}" == module.m.x ? var.v : try(local.b, 1)"#), &mut out);
        assert_eq!(out, ["local.a", "novacron_network.core", "module.m", "local.b"]);
    }
}
