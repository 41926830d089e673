//! novacron-policy: NovaCron's Rego policies, evaluated one way everywhere.
//!
//! A policy is a Rego (v1) module whose `deny` set holds violation messages. The platform's
//! admission (in its worker processes), the provider's config validation and its
//! `provider::novacron::policy_eval(rule, input)` function all go through this crate, so a
//! module compiles, and says what it says about an input, the same way in each:
//!
//! - [`Module::compile`] compiles a module, or names the line it stops at;
//! - [`Module::deny_messages`] evaluates its `deny` rule for an input: the messages, sorted;
//! - [`deny_messages`] does both at once;
//! - [`admission_input`] builds the input admission gives policies, `{kind, action, object}`.
//!
//! No I/O and no limits: a caller that must bound a policy's time or memory (the platform)
//! runs it where it can (a worker process).

mod error;

use regorus::{Engine, Value as RegoValue};
use serde_json::Value;

pub use error::{PolicyError, Position};

/// A compiled Rego module, ready to evaluate its `deny` rule for any number of inputs.
#[derive(Clone)]
pub struct Module {
    engine: Engine,
    package: String,
    deny_rule: String,
    /// Whether the module has a `deny` rule at all (when the engine cannot tell, it is
    /// assumed to, and evaluation finds out).
    declares_deny: bool,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module").field("package", &self.package).finish_non_exhaustive()
    }
}

impl Module {
    /// Compiles a module (Rego v1 syntax). The error of a module that does not parse names
    /// the line and column the parser stopped at ([`PolicyError::Compile`]).
    ///
    /// Compiling checks the syntax; what only evaluation finds (a function that does not
    /// exist, an unsafe variable) is an [`PolicyError::Eval`] of [`Module::deny_messages`].
    pub fn compile(rule: &str) -> Result<Module, PolicyError> {
        let mut engine = Engine::new();
        let package = engine.add_policy(error::MODULE_FILE.to_string(), rule.to_string()).map_err(|e| PolicyError::compile(&e.to_string()))?;
        let deny_rule = format!("{package}.deny");
        let declares_deny = engine.has_declared_rule_rooted_at(error::MODULE_FILE, "deny").unwrap_or(true);
        Ok(Module { engine, package, deny_rule, declares_deny })
    }

    /// The module's package as a data path, e.g. `data.novacron.sizing`.
    pub fn package(&self) -> &str {
        &self.package
    }

    /// The messages of the `deny` rule for `input`, sorted; none when nothing satisfies it.
    /// Messages that are not strings are given as JSON text (`deny contains 3 if ...` says
    /// `3`); an array is read like a set. A module without a `deny` rule is an error
    /// ([`PolicyError::NoDeny`]), not an empty answer: a misspelt rule must not pass as a
    /// policy that allows everything.
    pub fn deny_messages(&self, input: &Value) -> Result<Vec<String>, PolicyError> {
        if !self.declares_deny {
            return Err(PolicyError::NoDeny { package: self.package.clone() });
        }
        let input = RegoValue::from_json_str(&input.to_string()).map_err(|e| PolicyError::Input { message: e.to_string() })?;
        let mut engine = self.engine.clone();
        engine.set_input(input);
        let value = engine.eval_rule(self.deny_rule.clone()).map_err(|e| PolicyError::eval(&e.to_string()))?;
        let mut messages: Vec<String> = match &value {
            RegoValue::Undefined => Vec::new(),
            RegoValue::Set(set) => set.iter().map(text).collect(),
            RegoValue::Array(items) => items.iter().map(text).collect(),
            other => return Err(PolicyError::DenyNotASet { found: text(other) }),
        };
        messages.sort();
        Ok(messages)
    }
}

/// Compiles `rule` and evaluates its `deny` rule for `input`: the messages, sorted. What the
/// provider's `policy_eval(rule, input)` returns, and what admission finds for that input.
pub fn deny_messages(rule: &str, input: &Value) -> Result<Vec<String>, PolicyError> {
    Module::compile(rule)?.deny_messages(input)
}

/// The input admission gives every policy: `{"kind": "vm", "action": "create", "object": {...}}`,
/// `kind` singular (`vm`, `network`, `volume`, `policy`), `action` `create` or `update`, and
/// `object` the object as it would be stored (its public body: write-only values are never in it).
pub fn admission_input(kind: &str, action: &str, object: &Value) -> Value {
    serde_json::json!({ "kind": kind, "action": action, "object": object })
}

/// A message as text: a string as it is, anything else as one line of JSON.
fn text(v: &RegoValue) -> String {
    match v {
        RegoValue::String(s) => s.to_string(),
        other => serde_json::to_string(other).unwrap_or_else(|_| "<unprintable>".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SIZING: &str = r#"package novacron.sizing

deny contains msg if {
    input.kind == "vm"
    input.object.cpu_cores > 8
    msg := sprintf("vm %s asks for %d cores; at most 8 are allowed", [input.object.name, input.object.cpu_cores])
}

deny contains "vms need an owner label" if {
    input.kind == "vm"
    not input.object.metadata.owner
}
"#;

    fn vm(cores: u32, metadata: Value) -> Value {
        admission_input("vm", "create", &json!({"name": "big", "cpu_cores": cores, "metadata": metadata}))
    }

    #[test]
    fn a_passing_input_has_no_messages() {
        assert_eq!(deny_messages(SIZING, &vm(2, json!({"owner": "ops"}))), Ok(vec![]));
        assert_eq!(deny_messages(SIZING, &admission_input("network", "create", &json!({"name": "core"}))), Ok(vec![]), "rules for other kinds stay quiet");
    }

    #[test]
    fn a_failing_input_has_every_message_sorted() {
        let messages = deny_messages(SIZING, &vm(16, json!({}))).expect("evaluates");
        assert_eq!(messages, ["vm big asks for 16 cores; at most 8 are allowed", "vms need an owner label"]);
        let arrayed = "package a\ndeny := [\"zeta\", \"alpha\", \"mu\"]\n";
        assert_eq!(deny_messages(arrayed, &json!({})), Ok(vec!["alpha".to_string(), "mu".into(), "zeta".into()]), "an array is read like a set, sorted");
    }

    #[test]
    fn a_compiled_module_judges_many_inputs() {
        let module = Module::compile(SIZING).expect("compiles");
        assert_eq!(module.package(), "data.novacron.sizing");
        assert_eq!(module.deny_messages(&vm(16, json!({"owner": "ops"}))).expect("first").len(), 1);
        assert_eq!(module.deny_messages(&vm(1, json!({"owner": "ops"}))).expect("second"), Vec::<String>::new(), "no input leaks into the next");
        assert_eq!(module.deny_messages(&vm(1, json!({}))).expect("third"), ["vms need an owner label"]);
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let err = deny_messages("package p\n\ndeny contains msg if {\n  input.kind ==\n}\n", &json!({})).unwrap_err();
        let PolicyError::Compile { position: Some(position), message } = &err else { panic!("a compile error with a position: {err:?}") };
        assert_eq!((position.line, message.as_str()), (5, "expecting expression"), "the parser stops at the closing brace");
        assert_eq!(err.line(), Some(5));
        assert_eq!(err.to_string(), "the Rego module does not compile: rule.rego:5:1: expecting expression");
        let err = Module::compile("deny contains \"x\" if true\n").unwrap_err();
        assert!(matches!(&err, PolicyError::Compile { position: Some(Position { line: 1, column: 1 }), message } if message.contains("package")), "{err:?}");
    }

    #[test]
    fn deny_must_be_a_set_of_messages() {
        for (rule, found) in [("package p\ndeny := 5\n", "5"), ("package p\ndeny := \"no\"\n", "no"), ("package p\ndeny := {\"a\": 1}\n", "{\"a\":1}")] {
            let err = deny_messages(rule, &json!({})).unwrap_err();
            assert_eq!(err, PolicyError::DenyNotASet { found: found.into() }, "{rule}");
        }
        // Admission has always read messages that are not strings as their JSON text.
        // (Before this crate that text was pretty-printed over several lines.)
        assert_eq!(deny_messages("package p\ndeny contains 3 if true\ndeny contains [1] if true\n", &json!({})), Ok(vec!["3".to_string(), "[1]".into()]));
    }

    #[test]
    fn evaluation_errors_say_where() {
        let err = deny_messages("package p\ndeny contains m if { m := nope(1) }\n", &json!({})).unwrap_err();
        assert_eq!(err, PolicyError::Eval { position: Some(Position { line: 2, column: 31 }), message: "could not find function nope".into() });
        assert_eq!(err.to_string(), "`deny` could not be evaluated: rule.rego:2:31: could not find function nope");
        let err = deny_messages("package p\ndeny contains m if { m := input.n / 0 }\n", &json!({"n": 1})).unwrap_err();
        assert!(matches!(&err, PolicyError::Eval { message, .. } if message == "divide by zero"), "{err:?}");
    }

    #[test]
    fn a_module_without_deny_is_an_error_naming_its_package() {
        let err = deny_messages("package p.q\ndney contains \"typo\" if true\n", &json!({})).unwrap_err();
        assert_eq!(err, PolicyError::NoDeny { package: "data.p.q".into() });
        assert_eq!(err.to_string(), "the Rego module has no `deny` rule in package data.p.q; write deny contains msg if { ... }");
        let partial = "package p\ndeny contains m if { input.x; m := \"x\" }\n";
        assert_eq!(deny_messages(partial, &json!({})), Ok(vec![]), "a deny that nothing satisfies is no error");
    }

    #[test]
    fn the_admission_input_has_kind_action_and_object() {
        assert_eq!(admission_input("volume", "update", &json!({"size_gb": 20})), json!({"kind": "volume", "action": "update", "object": {"size_gb": 20}}));
    }
}
