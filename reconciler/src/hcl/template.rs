//! String templates: interpolation, `%{ if }` / `%{ for }` directives with `~` strip markers, `templatestring` and `templatefile`.

use std::str::FromStr;

use hcl::Value;
use hcl::expr::{FuncCall, TemplateExpr};
use hcl::template::{Directive, Element, Template};

use super::expr::{EvalError, Evaluator};
use super::value::{to_bool, to_string, type_name};

type Result<T> = std::result::Result<T, EvalError>;

fn parse(text: &str) -> Result<Template> {
    Template::from_str(text).map_err(|e| EvalError::Invalid(format!("invalid template: {}", super::resolve::one_line(&e.to_string()))))
}

/// Evaluates a quoted string or heredoc with interpolations; a template that is one
/// interpolation and nothing else gives that value unconverted, as in Terraform.
pub fn eval_template_expr(ev: &mut Evaluator<'_>, t: &TemplateExpr) -> Result<Value> {
    let template = parse(&t.to_string())?;
    eval_template(ev, &template, matches!(t, TemplateExpr::QuotedString(_)))
}

/// Evaluates a parsed template; `quoted` for a `"..."` string (one literal token per run of
/// text), otherwise a heredoc or template file (one literal token per line).
pub fn eval_template(ev: &mut Evaluator<'_>, template: &Template, quoted: bool) -> Result<Value> {
    if let [Element::Interpolation(i)] = template.elements() {
        return ev.eval(&i.expr);
    }
    let mut out = String::new();
    let mut r = Render { ev, quoted, depth: 0 };
    r.render(template, false, false, &mut out)?;
    Ok(Value::String(out))
}

/// Whether an element strips the literal after it (`~}`), and the one before it (`${~`).
fn strips(e: &Element) -> (bool, bool) {
    match e {
        Element::Literal(_) => (false, false),
        Element::Interpolation(i) => (i.strip.strip_start(), i.strip.strip_end()),
        Element::Directive(Directive::If(d)) => (d.if_strip.strip_start(), d.endif_strip.strip_end()),
        Element::Directive(Directive::For(d)) => (d.for_strip.strip_start(), d.endfor_strip.strip_end()),
    }
}

struct Render<'r, 'a> {
    ev: &'r mut Evaluator<'a>,
    quoted: bool,
    /// Directive nesting: hcl-rs keeps the escapes of a quoted string's literals inside directives.
    depth: usize,
}

impl Render<'_, '_> {
    fn render(&mut self, template: &Template, trim_first: bool, trim_last: bool, out: &mut String) -> Result<()> {
        let elements = template.elements();
        for (i, element) in elements.iter().enumerate() {
            match element {
                Element::Literal(text) => {
                    let trim_start = if i == 0 { trim_first } else { strips(&elements[i - 1]).1 };
                    let trim_end = if i + 1 == elements.len() { trim_last } else { strips(&elements[i + 1]).0 };
                    let text = if self.quoted && self.depth > 0 { unescape(text) } else { text.clone() };
                    out.push_str(strip(&text, trim_start, trim_end, self.quoted));
                }
                Element::Interpolation(interp) => {
                    let v = self.ev.eval(&interp.expr)?;
                    out.push_str(&interpolated(&v)?);
                }
                Element::Directive(Directive::If(d)) => {
                    let cond = self.ev.eval(&d.cond_expr)?;
                    if cond.is_null() {
                        return Err(EvalError::Invalid("the condition of an %{if} directive is null".into()));
                    }
                    let cond = to_bool(&cond).map_err(|e| EvalError::Invalid(format!("the condition of an %{{if}} directive must be a bool: {e}")))?;
                    let true_end = match &d.false_template {
                        Some(_) => d.else_strip.strip_start(),
                        None => d.endif_strip.strip_start(),
                    };
                    self.depth += 1;
                    let r = if cond {
                        self.render(&d.true_template, d.if_strip.strip_end(), true_end, out)
                    } else if let Some(f) = &d.false_template {
                        self.render(f, d.else_strip.strip_end(), d.endif_strip.strip_start(), out)
                    } else {
                        Ok(())
                    };
                    self.depth -= 1;
                    r?;
                }
                Element::Directive(Directive::For(d)) => {
                    let collection = self.ev.eval(&d.collection_expr)?;
                    let entries: Vec<(Value, Value)> = match collection {
                        Value::Array(items) => items.into_iter().enumerate().map(|(i, v)| (Value::from(i as u64), v)).collect(),
                        Value::Object(m) => {
                            let mut e: Vec<(String, Value)> = m.into_iter().collect();
                            e.sort_by(|a, b| a.0.cmp(&b.0));
                            e.into_iter().map(|(k, v)| (Value::from(k), v)).collect()
                        }
                        other => return Err(EvalError::Invalid(format!("an %{{for}} directive needs a collection, not a {}", type_name(&other)))),
                    };
                    self.depth += 1;
                    for (k, v) in entries {
                        let mut bound = 1;
                        if let Some(kv) = &d.key_var {
                            self.ev.push(kv.as_str(), k);
                            bound = 2;
                        }
                        self.ev.push(d.value_var.as_str(), v);
                        let r = self.render(&d.template, d.for_strip.strip_end(), d.endfor_strip.strip_start(), out);
                        self.ev.pop(bound);
                        if r.is_err() {
                            self.depth -= 1;
                        }
                        r?;
                    }
                    self.depth -= 1;
                }
            }
        }
        Ok(())
    }
}

/// HCL's escapes in a quoted string: `\n \r \t \" \\ \uNNNN \UNNNNNNNN`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some(u @ ('u' | 'U')) => {
                let hex: String = chars.by_ref().take(if u == 'u' { 4 } else { 8 }).collect();
                out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Terraform's strip markers remove the whitespace of the adjacent literal token: in a quoted
/// string all of it; in a heredoc or template file, whose tokens are lines, `~}` removes the
/// spaces after it up to and including one line break and `${~` the spaces before it on its line.
fn strip(text: &str, start: bool, end: bool, quoted: bool) -> &str {
    if quoted {
        let s = if start { text.trim_start() } else { text };
        return if end { s.trim_end() } else { s };
    }
    let is_space = |c: char| c.is_whitespace() && c != '\n' && c != '\r';
    let mut s = text;
    if start {
        s = s.trim_start_matches(is_space);
        s = s.strip_prefix("\r\n").or_else(|| s.strip_prefix('\n')).unwrap_or(s);
    }
    if end {
        s = s.trim_end_matches(is_space);
    }
    s
}

fn interpolated(v: &Value) -> Result<String> {
    match v {
        Value::Null => Err(EvalError::Invalid(
            "invalid template interpolation value: the expression result is null; cannot include a null value in a string template".into(),
        )),
        Value::Array(_) | Value::Object(_) => Err(EvalError::Invalid(format!(
            "invalid template interpolation value: cannot include the given value in a string template: string required, not {}",
            type_name(v)
        ))),
        other => to_string(other).map_err(EvalError::Invalid),
    }
}

fn template_vars(vars: &Value, function: &str) -> Result<Vec<(String, Value)>> {
    match vars {
        Value::Object(m) => {
            for k in m.keys() {
                if !k.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') || !k.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                    return Err(EvalError::Call {
                        function: function.into(),
                        message: format!(
                            "invalid template variable name {k:?}: must start with a letter, followed by zero or more letters, digits, and underscores"
                        ),
                    });
                }
            }
            Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        Value::Null => Ok(Vec::new()),
        other => Err(EvalError::Call { function: function.into(), message: format!("invalid vars value: must be a map, not a {}", type_name(other)) }),
    }
}

fn render_with(ev: &mut Evaluator<'_>, text: &str, vars: Vec<(String, Value)>, function: &str) -> Result<Value> {
    let template = parse(text).map_err(|e| EvalError::Call { function: function.into(), message: e.to_string() })?;
    let outer = ev.swap_scope(vars);
    let result = eval_template(ev, &template, false);
    ev.swap_scope(outer);
    result.map_err(|e| match e {
        EvalError::Reference(name) => EvalError::Call { function: function.into(), message: format!("vars map does not contain key {name:?}") },
        EvalError::Invalid(message) => EvalError::Call { function: function.into(), message },
        other => other,
    })
}

/// `templatefile(path, vars)`: the file is read through the evaluator's source tree.
pub fn templatefile(ev: &mut Evaluator<'_>, args: &[Value]) -> Result<Value> {
    let [path, vars] = args else { return Err(EvalError::Invalid("takes exactly two arguments: path and vars".into())) };
    let text = ev.files().read_text(&to_string(path).map_err(EvalError::Invalid)?).map_err(EvalError::Invalid)?;
    let vars = template_vars(vars, "templatefile")?;
    render_with(ev, &text, vars, "templatefile")
}

/// `templatestring(ref, vars)`: the template is the string value of the first argument.
pub fn templatestring(ev: &mut Evaluator<'_>, call: &FuncCall) -> Result<Value> {
    let [template, vars] = call.args.as_slice() else {
        return Err(EvalError::Call { function: "templatestring".into(), message: "takes exactly two arguments: a template and vars".into() });
    };
    if !matches!(template, hcl::Expression::Variable(_) | hcl::Expression::Traversal(_)) {
        return Err(EvalError::Call {
            function: "templatestring".into(),
            message: "invalid template expression: must be a direct reference to a single string from elsewhere, containing valid Terraform template syntax"
                .into(),
        });
    }
    let text = match ev.eval(template)? {
        Value::String(s) => s,
        other => {
            return Err(EvalError::Call { function: "templatestring".into(), message: format!("the template must be a string, not a {}", type_name(&other)) });
        }
    };
    let vars = ev.eval(vars)?;
    let vars = template_vars(&vars, "templatestring")?;
    render_with(ev, &text, vars, "templatestring")
}
