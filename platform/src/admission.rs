//! Policy admission: enabled Rego policies judge every create and update of the other kinds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use novacron_policy::Module;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A compiled policy module, for one version of a policy.
struct Compiled {
    version: i64,
    module: Arc<Module>,
}

/// How a policy's violations are enforced (`enforcement_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Violations refuse the write (403).
    Block,
    /// Violations are returned in `Warning` headers; the write goes ahead.
    Warn,
    /// Violations are recorded as `audit` events; the write goes ahead.
    Audit,
}

impl Mode {
    /// Reads a stored `enforcement_mode`. The schema admits only the three names; anything
    /// else is treated as `audit`, as admission always has.
    pub fn from_setting(setting: &str) -> Mode {
        match setting {
            "block" => Mode::Block,
            "warn" => Mode::Warn,
            _ => Mode::Audit,
        }
    }
}

/// What one enabled policy said about a write: its violations, or why it could not judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVerdict {
    /// The policy's name.
    pub policy: String,
    /// How the messages are enforced. A `block` policy that fails to evaluate yields a
    /// `block` verdict (fail closed); a `warn` or `audit` one keeps its own mode.
    pub mode: Mode,
    /// The violation messages (never empty).
    pub messages: Vec<String>,
}

/// The verdicts of every enabled policy that reported something about one write, in the
/// order admission evaluates them (highest priority first, then by name). Policies that
/// admit the write are not listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdicts(pub Vec<PolicyVerdict>);

/// What a real write carries out for verdicts that did not block it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    /// `warn` violations: returned in `Warning` headers.
    pub warnings: Vec<String>,
    /// `audit` violations: (policy name, messages), recorded as events.
    pub audits: Vec<(String, Vec<String>)>,
}

impl Verdicts {
    /// False when any verdict blocks.
    pub fn allowed(&self) -> bool {
        !self.0.iter().any(|v| v.mode == Mode::Block)
    }

    /// How a real write enforces these verdicts: `Err` with (policy, message) pairs for every
    /// `block` violation, otherwise the `Warning` texts and the audits to record.
    pub fn enforce(&self) -> Result<Admitted, Vec<(String, String)>> {
        let mut admitted = Admitted::default();
        let mut denied = Vec::new();
        for verdict in &self.0 {
            match verdict.mode {
                Mode::Block => denied.extend(verdict.messages.iter().map(|m| (verdict.policy.clone(), m.clone()))),
                Mode::Warn => admitted.warnings.extend(verdict.messages.iter().map(|m| format!("policy {}: {m}", verdict.policy))),
                Mode::Audit => admitted.audits.push((verdict.policy.clone(), verdict.messages.clone())),
            }
        }
        if denied.is_empty() { Ok(admitted) } else { Err(denied) }
    }
}

/// An enabled policy as stored (and as sent to an admission worker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRow {
    /// Policy id (cache key).
    pub id: String,
    /// Policy name (named in violations).
    pub name: String,
    /// Object version (cache validity).
    pub version: i64,
    /// The Rego module.
    pub rule: String,
    /// How its violations are enforced.
    pub mode: Mode,
    /// Higher first.
    pub priority: i64,
}

/// Evaluates policies with a cache of compiled modules keyed by policy id and version.
#[derive(Default)]
pub struct Admission {
    cache: Mutex<HashMap<String, Compiled>>,
}

/// Outcome of evaluating one policy; also the admission worker's reply line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    /// The `deny` messages, sorted (empty: admitted).
    Violations(Vec<String>),
    /// The module did not compile or `deny` could not be evaluated: why, as a
    /// [`novacron_policy::PolicyError`] says it.
    Failed(String),
    /// Evaluation did not finish within the time budget or exceeded the memory bound.
    OverBudget,
}

/// What one policy evaluation may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock time per policy (`--admission-timeout-ms`).
    pub time: Duration,
    /// The worker's address-space bound in MiB (`--admission-memory-mb`); `None` when
    /// policies are evaluated in-process, where no memory bound applies.
    pub memory_mb: Option<u64>,
}

impl Budget {
    /// "within the admission budget of 250 ms (or exceeded 512 MiB)".
    pub fn describe(&self) -> String {
        let memory = self.memory_mb.map(|mb| format!(" (or exceeded {mb} MiB)")).unwrap_or_default();
        format!("did not finish within the admission budget of {} ms{memory}", self.time.as_millis())
    }
}

/// Turns each policy's judgement into verdicts, highest priority first, then by name. A
/// policy over budget fails closed in `block` mode and is skipped (with a message) otherwise.
pub fn verdicts(policies: &[PolicyRow], budget: &Budget, mut judge: impl FnMut(&PolicyRow) -> Judgement) -> Verdicts {
    let mut ordered: Vec<&PolicyRow> = policies.iter().collect();
    ordered.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    let mut verdicts = Vec::new();
    for policy in ordered {
        let messages = match (judge(policy), policy.mode) {
            (Judgement::Violations(v), _) => v,
            (Judgement::Failed(e), Mode::Block) => vec![format!("policy failed closed: {e}")],
            (Judgement::Failed(e), _) => vec![format!("policy could not be evaluated: {e}")],
            (Judgement::OverBudget, Mode::Block) => {
                vec![format!("policy {:?} {}; the write is refused because the policy blocks", policy.name, budget.describe())]
            }
            // The Warning header and the audit event name the policy already.
            (Judgement::OverBudget, _) => vec![format!("skipped: it {}", budget.describe())],
        };
        if !messages.is_empty() {
            verdicts.push(PolicyVerdict { policy: policy.name.clone(), mode: policy.mode, messages });
        }
    }
    Verdicts(verdicts)
}

/// The verdict when no policy input can be built: refuse, as a block policy failing would.
pub fn unjudgeable(e: impl std::fmt::Display) -> Verdicts {
    Verdicts(vec![PolicyVerdict { policy: "admission".into(), mode: Mode::Block, messages: vec![format!("cannot build policy input: {e}")] }])
}

impl Admission {
    fn compiled(&self, policy: &PolicyRow) -> Result<Arc<Module>, novacron_policy::PolicyError> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(&policy.id).filter(|c| c.version == policy.version) {
            return Ok(Arc::clone(&c.module));
        }
        let module = Arc::new(Module::compile(&policy.rule)?);
        cache.insert(policy.id.clone(), Compiled { version: policy.version, module: Arc::clone(&module) });
        Ok(module)
    }

    /// Evaluates one policy on the admission input `{kind, action, object}`, in this process
    /// and without limits.
    pub fn judge(&self, policy: &PolicyRow, input: &Value) -> Judgement {
        match self.compiled(policy).and_then(|module| module.deny_messages(input)) {
            Ok(messages) => Judgement::Violations(messages),
            Err(e) => Judgement::Failed(e.to_string()),
        }
    }

    /// Runs every enabled policy (highest priority first) on `{kind, action, object}` in this
    /// process, without a budget, and returns the verdict of each one that reported
    /// violations or failed to evaluate.
    #[cfg(test)]
    pub fn evaluate(&self, policies: &[PolicyRow], kind: &str, action: &str, object: &Value) -> Verdicts {
        let input = novacron_policy::admission_input(kind, action, object);
        let unlimited = Budget { time: Duration::MAX, memory_mb: None };
        verdicts(policies, &unlimited, |p| self.judge(p, &input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(name: &str, mode: Mode, priority: i64, rule: &str) -> PolicyRow {
        PolicyRow { id: format!("pol-{name}"), name: name.into(), version: 1, rule: rule.into(), mode, priority }
    }

    const MAX_CPU: &str = r#"package novacron.limits
deny contains msg if {
    input.kind == "vm"
    input.object.cpu_cores > 8
    msg := sprintf("vm %s asks for %d cores; the limit is 8", [input.object.name, input.object.cpu_cores])
}"#;

    const OWNER: &str = r#"package novacron.labels
deny contains "vms need an owner label" if {
    input.kind == "vm"
    not input.object.metadata.owner
}"#;

    /// Compiles, but `deny` is a number: evaluating it fails.
    const BROKEN_DENY: &str = "package novacron.broken\ndeny := 5\n";

    fn verdict(policy: &str, mode: Mode, messages: &[&str]) -> PolicyVerdict {
        PolicyVerdict { policy: policy.into(), mode, messages: messages.iter().map(|m| m.to_string()).collect() }
    }

    #[test]
    fn block_warn_audit() {
        let admission = Admission::default();
        let big = serde_json::json!({"name": "big", "cpu_cores": 16});
        let small = serde_json::json!({"name": "small", "cpu_cores": 2});
        let block = [policy("cpu", Mode::Block, 100, MAX_CPU)];
        let verdicts = admission.evaluate(&block, "vm", "create", &big);
        assert_eq!(verdicts, Verdicts(vec![verdict("cpu", Mode::Block, &["vm big asks for 16 cores; the limit is 8"])]));
        assert!(!verdicts.allowed());
        assert_eq!(verdicts.enforce().unwrap_err(), vec![("cpu".to_string(), "vm big asks for 16 cores; the limit is 8".to_string())]);
        let admitted = admission.evaluate(&block, "vm", "create", &small);
        assert_eq!(admitted, Verdicts::default(), "a policy that admits is not listed");
        assert!(admitted.allowed());
        let warn = admission.evaluate(&[policy("cpu", Mode::Warn, 100, MAX_CPU)], "vm", "create", &big);
        assert!(warn.allowed());
        assert_eq!(warn.enforce().expect("warn accepts").warnings, vec!["policy cpu: vm big asks for 16 cores; the limit is 8"]);
        let audit = admission.evaluate(&[policy("cpu", Mode::Audit, 100, MAX_CPU)], "vm", "create", &big).enforce().expect("audit accepts");
        assert_eq!(audit, Admitted { warnings: vec![], audits: vec![("cpu".to_string(), vec!["vm big asks for 16 cores; the limit is 8".to_string()])] });
    }

    #[test]
    fn verdicts_follow_priority_then_name() {
        let admission = Admission::default();
        let big = serde_json::json!({"name": "big", "cpu_cores": 16});
        let policies = [policy("owner", Mode::Audit, 10, OWNER), policy("cpu-warn", Mode::Warn, 50, MAX_CPU), policy("cpu-block", Mode::Block, 50, MAX_CPU)];
        let verdicts = admission.evaluate(&policies, "vm", "create", &big);
        let order: Vec<(&str, Mode)> = verdicts.0.iter().map(|v| (v.policy.as_str(), v.mode)).collect();
        assert_eq!(order, [("cpu-block", Mode::Block), ("cpu-warn", Mode::Warn), ("owner", Mode::Audit)]);
    }

    #[test]
    fn a_policy_that_fails_to_evaluate_blocks_only_in_block_mode() {
        let admission = Admission::default();
        let vm = serde_json::json!({"name": "v", "cpu_cores": 1});
        let blocked = admission.evaluate(&[policy("broken", Mode::Block, 100, BROKEN_DENY)], "vm", "create", &vm);
        assert_eq!(blocked.0.len(), 1);
        assert_eq!(blocked.0[0].mode, Mode::Block);
        assert!(blocked.0[0].messages[0].starts_with("policy failed closed: `deny` must be a set"), "{blocked:?}");
        assert!(blocked.enforce().is_err());
        let warned = admission.evaluate(&[policy("broken", Mode::Warn, 100, BROKEN_DENY)], "vm", "create", &vm);
        assert_eq!(warned.0[0].mode, Mode::Warn);
        assert!(warned.0[0].messages[0].starts_with("policy could not be evaluated: "), "{warned:?}");
        assert!(warned.allowed());
    }

    #[test]
    fn over_budget_fails_closed_in_block_mode_and_is_skipped_otherwise() {
        let budget = Budget { time: Duration::from_millis(250), memory_mb: Some(512) };
        let policies = [policy("expensive", Mode::Block, 10, ""), policy("slow", Mode::Warn, 10, ""), policy("quiet", Mode::Audit, 10, "")];
        let verdicts = verdicts(&policies, &budget, |_| Judgement::OverBudget);
        let skipped = "skipped: it did not finish within the admission budget of 250 ms (or exceeded 512 MiB)";
        assert_eq!(
            verdicts,
            Verdicts(vec![
                verdict(
                    "expensive",
                    Mode::Block,
                    &[
                        "policy \"expensive\" did not finish within the admission budget of 250 ms (or exceeded 512 MiB); the write is refused because the policy blocks"
                    ]
                ),
                verdict("quiet", Mode::Audit, &[skipped]),
                verdict("slow", Mode::Warn, &[skipped]),
            ])
        );
        let in_process = Budget { time: Duration::from_millis(250), memory_mb: None };
        assert_eq!(in_process.describe(), "did not finish within the admission budget of 250 ms", "no memory bound is claimed in-process");
    }

    #[test]
    fn modes_read_from_settings() {
        assert_eq!([Mode::from_setting("block"), Mode::from_setting("warn"), Mode::from_setting("audit")], [Mode::Block, Mode::Warn, Mode::Audit]);
        assert_eq!(
            serde_json::to_value(verdict("p", Mode::Warn, &["m"])).expect("json"),
            serde_json::json!({"policy": "p", "mode": "warn", "messages": ["m"]})
        );
    }

    #[test]
    fn a_policy_that_does_not_compile_fails_with_its_line() {
        let judged = Admission::default().judge(&policy("broken", Mode::Block, 1, "package x\n\ndeny contains msg if {\n  input.kind ==\n}\n"), &Value::Null);
        assert_eq!(judged, Judgement::Failed("the Rego module does not compile: rule.rego:5:1: expecting expression".into()));
    }
}
