//! The expression evaluator: hcl-rs's expression tree evaluated with Terraform's semantics and built-in functions.
//!
//! References to declarations are substituted before (see `resolve.rs`); what is left to name
//! here are the variables of `for` expressions, template directives and `templatefile`.

use hcl::expr::{BinaryOperator, Conditional, ForExpr, FuncCall, Operation, TraversalOperator, UnaryOperator};
use hcl::{Expression, Map, ObjectKey, Value};

use super::funcs::{self, FileAccess};
use super::template;
use super::value::{equal, f64_of, normalize, number, to_bool, to_number, to_string, type_name, unify};

/// Why an expression has no value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// The value exists but cannot be known here (a nondeterministic function, a provider function).
    #[error("{0}")]
    Unknown(String),
    /// A name that is not in scope (the resolver says why, when it knows).
    #[error("{0} is not declared")]
    Reference(String),
    /// A function refused its arguments.
    #[error("{function}(): {message}")]
    Call {
        /// The function called.
        function: String,
        /// Terraform's reason, as close to its words as the evaluator has them.
        message: String,
    },
    /// An operator, index or type mismatch outside a function.
    #[error("{0}")]
    Invalid(String),
}

impl EvalError {
    /// Whether the value is merely not known (rather than wrong).
    pub fn is_unknown(&self) -> bool {
        matches!(self, EvalError::Unknown(_) | EvalError::Reference(_))
    }
}

type Result<T> = std::result::Result<T, EvalError>;

fn invalid<T>(message: impl Into<String>) -> Result<T> {
    Err(EvalError::Invalid(message.into()))
}

/// Where names outside the local scope come from: the declarations of a module instance.
pub trait References {
    /// The whole value of a bare root name (`each`, `count`, `path`, `terraform`).
    fn root(&self, name: &str) -> Option<Value>;
    /// `root.attr` for the namespaces of declarations (`var`, `local`, `module`, resources,
    /// `data`): the value, or why it is unknown; `None` when `root` is no such namespace.
    fn attr(&self, root: &str, attr: &str) -> Option<std::result::Result<&Value, String>>;
}

/// Evaluates expressions in a scope of local names, with file access for file functions.
pub struct Evaluator<'a> {
    files: FileAccess<'a>,
    refs: Option<&'a dyn References>,
    scope: Vec<(String, Value)>,
    /// Set when a value derived from `sensitive()` flowed into the result.
    pub sensitive: bool,
}

impl<'a> Evaluator<'a> {
    /// An evaluator that also resolves references through `refs`.
    pub fn with_references(files: FileAccess<'a>, refs: &'a dyn References) -> Evaluator<'a> {
        Evaluator { files, refs: Some(refs), scope: Vec::new(), sensitive: false }
    }

    fn local(&self, name: &str) -> Option<&Value> {
        self.scope.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The file access of this evaluator.
    pub fn files(&self) -> FileAccess<'a> {
        self.files
    }

    /// Binds `name` for the evaluation of nested expressions (popped with `pop`).
    pub fn push(&mut self, name: &str, value: Value) {
        self.scope.push((name.to_string(), value));
    }

    /// Unbinds the last `n` names.
    pub fn pop(&mut self, n: usize) {
        self.scope.truncate(self.scope.len().saturating_sub(n));
    }

    /// Replaces the scope (for `templatefile`), returning the old one.
    pub fn swap_scope(&mut self, scope: Vec<(String, Value)>) -> Vec<(String, Value)> {
        std::mem::replace(&mut self.scope, scope)
    }

    /// Evaluates one expression.
    pub fn eval(&mut self, expr: &Expression) -> Result<Value> {
        match expr {
            Expression::Null => Ok(Value::Null),
            Expression::Bool(b) => Ok(Value::Bool(*b)),
            Expression::Number(n) => Ok(normalize(n)),
            Expression::String(s) => Ok(Value::String(s.clone())),
            Expression::Array(items) => items.iter().map(|e| self.eval(e)).collect::<Result<Vec<_>>>().map(Value::Array),
            Expression::Object(obj) => {
                let mut out = Map::new();
                for (k, v) in obj {
                    let key = match k {
                        ObjectKey::Identifier(id) => id.to_string(),
                        ObjectKey::Expression(Expression::Variable(v)) => v.to_string(),
                        ObjectKey::Expression(e) => match self.eval(e)? {
                            Value::Null => return invalid("an object key is null"),
                            other => {
                                to_string(&other).map_err(|_| EvalError::Invalid(format!("an object key must be a string, not a {}", type_name(&other))))?
                            }
                        },
                        _ => return invalid("unsupported object key"),
                    };
                    let value = self.eval(v)?;
                    if out.insert(key.clone(), value).is_some() {
                        return invalid(format!("duplicate object attribute {key:?}"));
                    }
                }
                Ok(super::value::sorted(out))
            }
            Expression::TemplateExpr(t) => template::eval_template_expr(self, t),
            Expression::Variable(v) => {
                let name = v.as_str();
                if let Some(v) = self.local(name) {
                    return Ok(v.clone());
                }
                self.refs.and_then(|r| r.root(name)).ok_or_else(|| EvalError::Reference(name.to_string()))
            }
            Expression::Traversal(t) => {
                if let (Expression::Variable(root), Some(TraversalOperator::GetAttr(attr))) = (&t.expr, t.operators.first())
                    && self.local(root.as_str()).is_none()
                    && let Some(found) = self.refs.and_then(|r| r.attr(root.as_str(), attr.as_str()))
                {
                    let base = found.map_err(EvalError::Unknown)?;
                    return self.traverse_ref(base, &t.operators[1..]);
                }
                let base = self.eval(&t.expr)?;
                self.traverse(base, &t.operators)
            }
            Expression::FuncCall(call) => self.call(call),
            Expression::Parenthesis(e) => self.eval(e),
            Expression::Conditional(c) => self.conditional(c),
            Expression::Operation(op) => self.operation(op),
            Expression::ForExpr(f) => self.for_expr(f),
            _ => invalid("unsupported expression"),
        }
    }

    fn conditional(&mut self, c: &Conditional) -> Result<Value> {
        let cond = self.eval(&c.cond_expr)?;
        if cond.is_null() {
            return invalid("the condition value is null: conditions must either be true or false");
        }
        let cond = to_bool(&cond).map_err(|e| EvalError::Invalid(format!("the condition must be a bool: {e}")))?;
        let (taken, other) = if cond { (&c.true_expr, &c.false_expr) } else { (&c.false_expr, &c.true_expr) };
        let value = self.eval(taken)?;
        // The result type unifies both branches; the other branch only matters for its type.
        let sensitive = self.sensitive;
        let other = self.eval(other).ok();
        self.sensitive = sensitive;
        match other {
            Some(o) if !value.is_null() => {
                let mut both = unify(if cond { vec![value.clone(), o] } else { vec![o, value.clone()] }).unwrap_or_default();
                Ok(if both.len() == 2 { both.swap_remove(if cond { 0 } else { 1 }) } else { value })
            }
            _ => Ok(value),
        }
    }

    fn operation(&mut self, op: &Operation) -> Result<Value> {
        match op {
            Operation::Unary(u) if !matches!(&u.expr, Expression::Operation(inner) if matches!(inner.as_ref(), Operation::Binary(_))) => {
                let v = self.eval(&u.expr)?;
                unary(u.operator, v)
            }
            Operation::Unary(_) => self.operation_chain(op),
            Operation::Binary(_) => self.operation_chain(op),
        }
    }

    /// hcl-rs nests an unparenthesised chain of operators without regard to precedence
    /// (`2 + 3 * 4 - 6 / 2` as `2 + (3 * (4 - (6 / 2)))`): the chain is flattened in source
    /// order and evaluated by HCL's precedence, left to right.
    fn operation_chain(&mut self, op: &Operation) -> Result<Value> {
        let mut operands = Vec::new();
        let mut operators = Vec::new();
        flatten_chain(op, &mut operands, &mut operators);
        let mut values = Vec::with_capacity(operands.len());
        for o in operands {
            values.push(match o {
                Operand::Expr(e) => self.eval(e)?,
                Operand::Unary(ops, e) => {
                    let mut v = self.eval(e)?;
                    for op in ops.iter().rev() {
                        v = unary(*op, v)?;
                    }
                    v
                }
            });
        }
        reduce(values, &operators)
    }

    fn for_expr(&mut self, f: &ForExpr) -> Result<Value> {
        let collection = self.eval(&f.collection_expr)?;
        let entries: Vec<(Value, Value)> = match collection {
            Value::Array(items) => items.into_iter().enumerate().map(|(i, v)| (Value::from(i as u64), v)).collect(),
            Value::Object(m) => super::value::sorted(m).as_object().into_iter().flatten().map(|(k, v)| (Value::from(k.clone()), v.clone())).collect(),
            Value::Null => return invalid("a null value cannot be used as the collection in a 'for' expression"),
            other => return invalid(format!("a 'for' expression needs a collection, not a {}", type_name(&other))),
        };
        let key_var = f.key_var.as_ref().map(|k| k.to_string());
        let value_var = f.value_var.to_string();
        let mut list = Vec::new();
        let mut object: Map<String, Value> = Map::new();
        for (k, v) in entries {
            let bound = match &key_var {
                Some(kv) => {
                    self.push(kv, k);
                    self.push(&value_var, v);
                    2
                }
                None => {
                    self.push(&value_var, v);
                    1
                }
            };
            let result = self.for_item(f, &mut list, &mut object);
            self.pop(bound);
            result?;
        }
        Ok(if f.key_expr.is_some() { super::value::sorted(object) } else { Value::Array(list) })
    }

    fn for_item(&mut self, f: &ForExpr, list: &mut Vec<Value>, object: &mut Map<String, Value>) -> Result<()> {
        if let Some(cond) = &f.cond_expr {
            let c = self.eval(cond)?;
            if !to_bool(&c).map_err(|e| EvalError::Invalid(format!("the 'for' condition must be a bool: {e}")))? {
                return Ok(());
            }
        }
        let value = self.eval(&f.value_expr)?;
        let Some(key_expr) = &f.key_expr else {
            list.push(value);
            return Ok(());
        };
        let key = match self.eval(key_expr)? {
            Value::Null => return invalid("a 'for' expression key is null"),
            k => to_string(&k).map_err(|_| EvalError::Invalid(format!("a 'for' expression key must be a string, not a {}", type_name(&k))))?,
        };
        if f.grouping {
            match object.get_mut(&key) {
                Some(Value::Array(group)) => group.push(value),
                _ => {
                    object.insert(key, Value::Array(vec![value]));
                }
            }
        } else if object.insert(key.clone(), value).is_some() {
            return invalid(format!(
                "duplicate object key: two different items produced the key {key:?} in this 'for' expression; add an ellipsis (...) after the value to group them"
            ));
        }
        Ok(())
    }

    /// Applies leading attribute and index lookups by reference, so a large declaration is
    /// never cloned whole for one element of it.
    fn traverse_ref(&mut self, value: &Value, ops: &[TraversalOperator]) -> Result<Value> {
        let mut current = value;
        let mut used = 0;
        for op in ops {
            let next = match op {
                TraversalOperator::GetAttr(name) => current.as_object().and_then(|o| o.get(name.as_str())),
                TraversalOperator::LegacyIndex(n) => usize::try_from(*n).ok().and_then(|n| current.as_array().and_then(|a| a.get(n))),
                TraversalOperator::Index(key) => match (self.eval(key)?, current) {
                    (Value::String(k), Value::Object(o)) => o.get(&k),
                    (Value::Number(n), Value::Array(a)) => n.as_u64().and_then(|n| usize::try_from(n).ok()).and_then(|n| a.get(n)),
                    _ => None,
                },
                _ => None,
            };
            match next {
                Some(v) => current = v,
                None => break,
            }
            used += 1;
        }
        self.traverse(current.clone(), &ops[used..])
    }

    /// Applies traversal operators; after a splat the rest applies to each element.
    pub fn traverse(&mut self, mut current: Value, ops: &[TraversalOperator]) -> Result<Value> {
        for (i, op) in ops.iter().enumerate() {
            match op {
                TraversalOperator::FullSplat | TraversalOperator::AttrSplat => {
                    let items = match current {
                        Value::Null => return Ok(Value::Array(Vec::new())),
                        Value::Array(items) => items,
                        single => vec![single],
                    };
                    let rest = &ops[i + 1..];
                    let (inner, after) = if matches!(op, TraversalOperator::AttrSplat) {
                        let n = rest.iter().take_while(|o| matches!(o, TraversalOperator::GetAttr(_))).count();
                        (&rest[..n], &rest[n..])
                    } else {
                        (rest, &rest[rest.len()..])
                    };
                    let mapped = items.into_iter().map(|item| self.traverse(item, inner)).collect::<Result<Vec<_>>>()?;
                    return self.traverse(Value::Array(mapped), after);
                }
                TraversalOperator::GetAttr(name) => current = get_attr(current, name.as_str())?,
                TraversalOperator::LegacyIndex(n) => current = index(current, &Value::from(*n))?,
                TraversalOperator::Index(e) => {
                    let key = self.eval(e)?;
                    current = index(current, &key)?;
                }
            }
        }
        Ok(current)
    }

    fn call(&mut self, call: &FuncCall) -> Result<Value> {
        let name = call.name.name.as_str();
        if !call.name.namespace.is_empty() {
            let full = format!("{}::{name}", call.name.namespace.iter().map(|n| n.as_str()).collect::<Vec<_>>().join("::"));
            return Err(EvalError::Unknown(format!("{full}() is a provider function, which the reconciler does not evaluate")));
        }
        match name {
            "try" => return self.try_call(call),
            "can" => {
                let [arg] = call.args.as_slice() else { return call_error(name, "takes exactly one argument") };
                return match self.eval(arg) {
                    Ok(_) => Ok(Value::Bool(true)),
                    Err(e) if e.is_unknown() => Err(e),
                    Err(_) => Ok(Value::Bool(false)),
                };
            }
            "issensitive" => {
                let [arg] = call.args.as_slice() else { return call_error(name, "takes exactly one argument") };
                let outer = std::mem::replace(&mut self.sensitive, false);
                self.eval(arg)?;
                let inner = self.sensitive;
                self.sensitive = outer;
                return Ok(Value::Bool(inner));
            }
            "nonsensitive" => {
                let [arg] = call.args.as_slice() else { return call_error(name, "takes exactly one argument") };
                let outer = self.sensitive;
                let v = self.eval(arg)?;
                self.sensitive = outer;
                return Ok(v);
            }
            "templatestring" => return template::templatestring(self, call),
            _ => {}
        }
        let mut args = Vec::with_capacity(call.args.len());
        for (i, a) in call.args.iter().enumerate() {
            let v = self.eval(a)?;
            if call.expand_final && i + 1 == call.args.len() {
                match v {
                    Value::Array(items) => args.extend(items),
                    Value::Null => return call_error(name, "the final argument to expand with ... is null"),
                    other => return call_error(name, format!("the final argument to expand with ... must be a list, not a {}", type_name(&other))),
                }
            } else {
                args.push(v);
            }
        }
        if name == "sensitive" {
            self.sensitive = true;
        }
        if name == "templatefile" {
            return template::templatefile(self, &args).map_err(|e| match e {
                EvalError::Invalid(message) => EvalError::Call { function: name.into(), message },
                other => other,
            });
        }
        funcs::call(name, args, self.files)
    }

    fn try_call(&mut self, call: &FuncCall) -> Result<Value> {
        let mut last = None;
        for arg in &call.args {
            match self.eval(arg) {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| EvalError::Call { function: "try".into(), message: "at least one argument is required".into() }))
            .map_err(|e| if e.is_unknown() { e } else { EvalError::Call { function: "try".into(), message: format!("no expression succeeded: {e}") } })
    }
}

/// One operand of a flattened operator chain: an expression, or one under unary operators
/// that hcl-rs attached to the whole rest of the chain (`!a && b` as `!(a && b)`).
enum Operand<'e> {
    Expr(&'e Expression),
    Unary(Vec<UnaryOperator>, &'e Expression),
}

/// The operands and binary operators of an unparenthesised chain, in source order.
fn flatten_chain<'e>(op: &'e Operation, operands: &mut Vec<Operand<'e>>, operators: &mut Vec<BinaryOperator>) {
    match op {
        Operation::Binary(b) => {
            flatten_operand(&b.lhs_expr, operands, operators);
            operators.push(b.operator);
            flatten_operand(&b.rhs_expr, operands, operators);
        }
        Operation::Unary(u) => {
            let start = operands.len();
            flatten_operand(&u.expr, operands, operators);
            let first = std::mem::replace(&mut operands[start], Operand::Expr(&Expression::Null));
            operands[start] = match first {
                Operand::Expr(e) => Operand::Unary(vec![u.operator], e),
                Operand::Unary(mut ops, e) => {
                    ops.insert(0, u.operator);
                    Operand::Unary(ops, e)
                }
            };
        }
    }
}

fn flatten_operand<'e>(e: &'e Expression, operands: &mut Vec<Operand<'e>>, operators: &mut Vec<BinaryOperator>) {
    match e {
        Expression::Operation(op) => flatten_chain(op, operands, operators),
        other => operands.push(Operand::Expr(other)),
    }
}

/// HCL's binding strength of a binary operator (higher binds tighter).
fn precedence(op: BinaryOperator) -> u8 {
    use BinaryOperator as B;
    match op {
        B::Or => 1,
        B::And => 2,
        B::Eq | B::NotEq => 3,
        B::Less | B::LessEq | B::Greater | B::GreaterEq => 4,
        B::Plus | B::Minus => 5,
        B::Mul | B::Div | B::Mod => 6,
    }
}

/// Evaluates `v0 op0 v1 op1 v2 ...` by precedence, left-associative.
fn reduce(values: Vec<Value>, operators: &[BinaryOperator]) -> Result<Value> {
    let mut stack: Vec<Value> = Vec::with_capacity(values.len());
    let mut ops: Vec<BinaryOperator> = Vec::with_capacity(operators.len());
    let mut values = values.into_iter();
    stack.push(values.next().unwrap_or(Value::Null));
    for (&op, v) in operators.iter().zip(values) {
        while let Some(&top) = ops.last() {
            if precedence(top) < precedence(op) {
                break;
            }
            ops.pop();
            let r = stack.pop().unwrap_or(Value::Null);
            let l = stack.pop().unwrap_or(Value::Null);
            stack.push(apply(top, &l, &r)?);
        }
        ops.push(op);
        stack.push(v);
    }
    while let Some(top) = ops.pop() {
        let r = stack.pop().unwrap_or(Value::Null);
        let l = stack.pop().unwrap_or(Value::Null);
        stack.push(apply(top, &l, &r)?);
    }
    Ok(stack.pop().unwrap_or(Value::Null))
}

fn apply(op: BinaryOperator, l: &Value, r: &Value) -> Result<Value> {
    if matches!(op, BinaryOperator::And | BinaryOperator::Or) {
        let operand = |v: &Value| to_bool(v).map_err(|e| EvalError::Invalid(format!("invalid operand: unsuitable value for the {op:?} operator: {e}")));
        let (a, b) = (operand(l)?, operand(r)?);
        return Ok(Value::Bool(if op == BinaryOperator::And { a && b } else { a || b }));
    }
    binary(op, l, r)
}

fn unary(op: UnaryOperator, v: Value) -> Result<Value> {
    match op {
        UnaryOperator::Not => Ok(Value::Bool(!to_bool(&v).map_err(|e| EvalError::Invalid(format!("invalid operand for !: {e}")))?)),
        UnaryOperator::Neg => {
            let n = to_number(&v).map_err(|e| EvalError::Invalid(format!("invalid operand for -: {e}")))?;
            match n.as_i64() {
                Some(i) if !n.is_f64() => Ok(Value::from(-i)),
                _ => number(-f64_of(&n)).map_err(EvalError::Invalid),
            }
        }
    }
}

fn call_error<T>(function: &str, message: impl Into<String>) -> Result<T> {
    Err(EvalError::Call { function: function.into(), message: message.into() })
}

fn get_attr(current: Value, name: &str) -> Result<Value> {
    match current {
        Value::Object(mut m) => {
            m.swap_remove(name).ok_or_else(|| EvalError::Invalid(format!("unsupported attribute: this object does not have an attribute named {name:?}")))
        }
        Value::Null => invalid(format!("attempt to get attribute {name:?} from a null value")),
        other => invalid(format!("unsupported attribute: cannot access attribute {name:?} on a {}", type_name(&other))),
    }
}

fn index(current: Value, key: &Value) -> Result<Value> {
    match current {
        Value::Array(mut items) => {
            let i = super::value::to_int(key).map_err(|_| EvalError::Invalid("invalid index: a number is required".into()))?;
            let len = items.len();
            match usize::try_from(i).ok().filter(|i| *i < len) {
                Some(i) => Ok(items.swap_remove(i)),
                None => invalid(format!("invalid index: the given key does not identify an element in this collection value (index {i}, length {len})")),
            }
        }
        Value::Object(mut m) => {
            let k = to_string(key).map_err(|_| EvalError::Invalid("invalid index: a string key is required".into()))?;
            m.swap_remove(&k)
                .ok_or_else(|| EvalError::Invalid(format!("invalid index: the given key {k:?} does not identify an element in this collection value")))
        }
        Value::Null => invalid("invalid index: cannot index a null value"),
        other => invalid(format!("invalid index: this value does not have any indices (it is a {})", type_name(&other))),
    }
}

/// A binary operator other than `&&` and `||`.
pub fn binary(op: BinaryOperator, l: &Value, r: &Value) -> Result<Value> {
    use BinaryOperator as B;
    match op {
        B::Eq => return Ok(Value::Bool(equal(l, r))),
        B::NotEq => return Ok(Value::Bool(!equal(l, r))),
        _ => {}
    }
    let operand = |v: &Value| to_number(v).map_err(|e| EvalError::Invalid(format!("invalid operand: unsuitable value for the {op:?} operator: {e}")));
    let (a, b) = (operand(l)?, operand(r)?);
    if let (Some(x), Some(y), false, false) = (a.as_i64(), b.as_i64(), a.is_f64(), b.is_f64()) {
        let exact = match op {
            B::Plus => x.checked_add(y),
            B::Minus => x.checked_sub(y),
            B::Mul => x.checked_mul(y),
            B::Mod if y != 0 => x.checked_rem(y),
            _ => None,
        };
        if let Some(v) = exact {
            return Ok(Value::from(v));
        }
    }
    let (x, y) = (f64_of(&a), f64_of(&b));
    let result = match op {
        B::Plus => x + y,
        B::Minus => x - y,
        B::Mul => x * y,
        B::Div if y == 0.0 => return invalid("division by zero"),
        B::Div => x / y,
        B::Mod if y == 0.0 => return invalid("division by zero in a modulo operation"),
        B::Mod => x % y,
        B::Less => return Ok(Value::Bool(x < y)),
        B::LessEq => return Ok(Value::Bool(x <= y)),
        B::Greater => return Ok(Value::Bool(x > y)),
        B::GreaterEq => return Ok(Value::Bool(x >= y)),
        _ => return invalid(format!("unsupported operator {op:?}")),
    };
    super::value::decimal(result).map_err(EvalError::Invalid)
}
