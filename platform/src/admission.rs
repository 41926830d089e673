//! Policy admission: enabled Rego policies judge every create and update of the other kinds.

use std::collections::HashMap;
use std::sync::Mutex;

use regorus::{Engine, Value as RegoValue};
use serde_json::Value;

/// A compiled policy module and the path of its `deny` rule.
#[derive(Clone)]
struct Compiled {
    version: i64,
    engine: Engine,
    deny_rule: String,
}

/// What the enabled policies said about one write that was not blocked.
#[derive(Debug, Default)]
pub struct Verdict {
    /// `warn` violations: returned in `Warning` headers.
    pub warnings: Vec<String>,
    /// `audit` violations: (policy name, messages), recorded as events.
    pub audits: Vec<(String, Vec<String>)>,
}

/// An enabled policy as stored.
pub struct PolicyRow {
    /// Policy id (cache key).
    pub id: String,
    /// Policy name (named in violations).
    pub name: String,
    /// Object version (cache validity).
    pub version: i64,
    /// The Rego module.
    pub rule: String,
    /// `block`, `warn` or `audit`.
    pub mode: String,
    /// Higher first.
    pub priority: i64,
}

/// Compiles a Rego module, returning the engine and its package path, or the parser's
/// message (which carries the line and column).
fn compile_module(rule: &str) -> Result<(Engine, String), String> {
    let mut engine = Engine::new();
    let package = engine.add_policy("rule.rego".to_string(), rule.to_string()).map_err(|e| e.to_string())?;
    Ok((engine, package))
}

/// Checks that a policy's Rego compiles; the error names the line.
pub fn check_rule(rule: &str) -> Result<(), String> {
    compile_module(rule).map(|_| ())
}

/// Evaluates policies with a cache of compiled modules keyed by policy id and version.
#[derive(Default)]
pub struct Admission {
    cache: Mutex<HashMap<String, Compiled>>,
}

/// Outcome of evaluating one policy.
enum Judgement {
    Violations(Vec<String>),
    Failed(String),
}

impl Admission {
    fn compiled(&self, policy: &PolicyRow) -> Result<Compiled, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&policy.id).filter(|c| c.version == policy.version) {
            return Ok(c.clone());
        }
        let (engine, package) = compile_module(&policy.rule)?;
        let compiled = Compiled { version: policy.version, engine, deny_rule: format!("{package}.deny") };
        cache.insert(policy.id.clone(), compiled.clone());
        Ok(compiled)
    }

    fn judge(&self, policy: &PolicyRow, input: &RegoValue) -> Judgement {
        let mut compiled = match self.compiled(policy) {
            Ok(c) => c,
            Err(e) => return Judgement::Failed(format!("does not compile: {e}")),
        };
        compiled.engine.set_input(input.clone());
        match compiled.engine.eval_rule(compiled.deny_rule.clone()) {
            Ok(RegoValue::Undefined) => Judgement::Violations(vec![]),
            Ok(RegoValue::Set(set)) => Judgement::Violations(set.iter().map(rego_text).collect()),
            Ok(RegoValue::Array(items)) => Judgement::Violations(items.iter().map(rego_text).collect()),
            Ok(other) => Judgement::Failed(format!("`deny` must be a set of messages, not {}", rego_text(&other))),
            Err(e) => Judgement::Failed(format!("failed to evaluate: {e}")),
        }
    }

    /// Runs every enabled policy (highest priority first) on `{kind, action, object}`.
    /// Returns `Err` with (policy, message) pairs when a `block` policy has violations; a
    /// `block` policy that fails to evaluate denies too (fail closed).
    pub fn evaluate(&self, policies: &[PolicyRow], kind: &str, action: &str, object: &Value) -> Result<Verdict, Vec<(String, String)>> {
        let mut verdict = Verdict::default();
        if policies.is_empty() {
            return Ok(verdict);
        }
        let input = serde_json::json!({ "kind": kind, "action": action, "object": object });
        let input = match RegoValue::from_json_str(&input.to_string()) {
            Ok(v) => v,
            Err(e) => return Err(vec![("admission".into(), format!("cannot build policy input: {e}"))]),
        };
        let mut denied = Vec::new();
        let mut ordered: Vec<&PolicyRow> = policies.iter().collect();
        ordered.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
        for policy in ordered {
            let messages = match self.judge(policy, &input) {
                Judgement::Violations(v) => v,
                Judgement::Failed(e) if policy.mode == "block" => vec![format!("policy failed closed: {e}")],
                Judgement::Failed(e) => vec![format!("policy could not be evaluated: {e}")],
            };
            if messages.is_empty() {
                continue;
            }
            match policy.mode.as_str() {
                "block" => denied.extend(messages.into_iter().map(|m| (policy.name.clone(), m))),
                "warn" => verdict.warnings.extend(messages.into_iter().map(|m| format!("policy {}: {m}", policy.name))),
                _ => verdict.audits.push((policy.name.clone(), messages)),
            }
        }
        if denied.is_empty() { Ok(verdict) } else { Err(denied) }
    }
}

fn rego_text(v: &RegoValue) -> String {
    match v {
        RegoValue::String(s) => s.to_string(),
        other => other.to_json_str().unwrap_or_else(|_| "<unprintable>".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, mode: &str, rule: &str) -> PolicyRow {
        PolicyRow { id: format!("pol-{name}"), name: name.into(), version: 1, rule: rule.into(), mode: mode.into(), priority: 100 }
    }

    const MAX_CPU: &str = r#"package novacron.limits
deny contains msg if {
    input.kind == "vm"
    input.object.cpu_cores > 8
    msg := sprintf("vm %s asks for %d cores; the limit is 8", [input.object.name, input.object.cpu_cores])
}"#;

    #[test]
    fn block_warn_audit() {
        let admission = Admission::default();
        let big = serde_json::json!({"name": "big", "cpu_cores": 16});
        let small = serde_json::json!({"name": "small", "cpu_cores": 2});
        let block = [policy("cpu", "block", MAX_CPU)];
        let denied = admission.evaluate(&block, "vm", "create", &big).unwrap_err();
        assert_eq!(denied, vec![("cpu".to_string(), "vm big asks for 16 cores; the limit is 8".to_string())]);
        assert!(admission.evaluate(&block, "vm", "create", &small).is_ok());
        let warn = admission.evaluate(&[policy("cpu", "warn", MAX_CPU)], "vm", "create", &big).expect("warn accepts");
        assert_eq!(warn.warnings, vec!["policy cpu: vm big asks for 16 cores; the limit is 8"]);
        let audit = admission.evaluate(&[policy("cpu", "audit", MAX_CPU)], "vm", "create", &big).expect("audit accepts");
        assert_eq!(audit.audits.len(), 1);
    }

    #[test]
    fn broken_rego_names_the_line() {
        let err = check_rule("package x\n\ndeny contains msg if {\n  input.kind ==\n}\n").unwrap_err();
        assert!(err.contains(":4:") || err.contains(":5:"), "{err}");
    }
}
