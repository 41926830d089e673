//! The model of a saved plan as `terraform show -json` describes it: the `novacron_*` changes, values of sensitive attributes dropped.

use std::fmt;

use novacron_schemas::Kind;
use serde::Deserialize;
use serde_json::{Map, Value};

/// What Terraform will do to one resource instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `["create"]`.
    Create,
    /// `["update"]` (in place).
    Update,
    /// `["delete","create"]` or `["create","delete"]` (create before destroy).
    Replace,
    /// `["delete"]`.
    Delete,
    /// `["read"]`: a read deferred to apply time.
    Read,
    /// `["no-op"]`.
    NoOp,
}

impl Action {
    /// The action behind Terraform's `actions` list; `None` for a list Terraform does not document.
    pub fn from_actions(actions: &[String]) -> Option<Action> {
        let list: Vec<&str> = actions.iter().map(String::as_str).collect();
        Some(match list.as_slice() {
            ["create"] => Action::Create,
            ["update"] => Action::Update,
            ["delete", "create"] | ["create", "delete"] => Action::Replace,
            ["delete"] => Action::Delete,
            ["read"] => Action::Read,
            ["no-op"] => Action::NoOp,
            _ => return None,
        })
    }

    /// The lowercase word used in renderings (`create`, `update`, `replace`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Read => "read",
            Action::NoOp => "no-op",
        }
    }

    /// Whether the action changes anything (everything but `read` and `no-op`).
    pub fn is_change(self) -> bool {
        !matches!(self, Action::Read | Action::NoOp)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One side (before or after) of an attribute change.
#[derive(Clone, PartialEq)]
pub enum ChangeValue {
    /// Not set (`null`, or no object on that side).
    Null,
    /// A known value.
    Known(Value),
    /// Known only after apply (`after_unknown`).
    Unknown,
    /// A sensitive value: never kept, only that it is there.
    Sensitive,
}

/// Shows values, except that a sensitive one never has one to show.
impl fmt::Debug for ChangeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ChangeValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeValue::Null => f.write_str("null"),
            ChangeValue::Known(v) => write!(f, "{v}"),
            ChangeValue::Unknown => f.write_str("(known after apply)"),
            ChangeValue::Sensitive => f.write_str("(sensitive value)"),
        }
    }
}

/// One changed top-level attribute (or nested block list, e.g. `firewall_rule`).
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeChange {
    /// The Terraform attribute or block name.
    pub name: String,
    /// Its value in the prior state.
    pub before: ChangeValue,
    /// Its planned value.
    pub after: ChangeValue,
    /// Terraform or the schema marks it sensitive; then neither side holds a value.
    pub sensitive: bool,
    /// Terraform lists it in `replace_paths`: this change forces the replacement.
    pub forces_replacement: bool,
}

/// One `novacron_*` managed resource instance in the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceChange {
    /// Full address, e.g. `module.web.novacron_vm.this[0]`.
    pub address: String,
    /// Terraform type, e.g. `novacron_vm`.
    pub resource_type: String,
    /// The kind behind the type.
    pub kind: Kind,
    /// The module address (`module.web`), `None` in the root module.
    pub module_address: Option<String>,
    /// The `count` index or `for_each` key, when there is one.
    pub index: Option<Value>,
    /// What Terraform will do.
    pub action: Action,
    /// Changed attributes, sorted by name; empty for deletes, reads and no-ops.
    pub attributes: Vec<AttributeChange>,
    /// The created (or kept) object's `name`, when known at plan time: the key to adopt an existing object by.
    pub name: Option<String>,
    /// The object's id in the prior state (updates, replaces, deletes).
    pub id: Option<String>,
    /// The planned values that are known at plan time and not sensitive (Terraform names);
    /// empty for deletes. What a policy preview sends to the platform.
    pub planned: Map<String, Value>,
    /// The prior state's values that are not sensitive (Terraform names); empty for creates.
    pub prior: Map<String, Value>,
}

/// The `novacron_*` changes of one saved plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanModel {
    /// The Terraform version that wrote the plan.
    pub terraform_version: String,
    /// Every managed `novacron_*` instance Terraform considered, no-ops included, in plan order.
    pub changes: Vec<ResourceChange>,
}

/// The plan JSON was not what Terraform documents.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("`terraform show -json` printed an unexpected plan: {0}")]
pub struct PlanJsonError(pub String);

#[derive(Deserialize)]
struct RawPlan {
    #[serde(default)]
    terraform_version: String,
    #[serde(default)]
    resource_changes: Vec<RawResourceChange>,
}

#[derive(Deserialize)]
struct RawResourceChange {
    address: String,
    #[serde(default)]
    module_address: Option<String>,
    mode: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    index: Option<Value>,
    change: RawChange,
}

#[derive(Deserialize)]
struct RawChange {
    actions: Vec<String>,
    #[serde(default)]
    before: Value,
    #[serde(default)]
    after: Value,
    #[serde(default)]
    after_unknown: Value,
    #[serde(default)]
    before_sensitive: Value,
    #[serde(default)]
    after_sensitive: Value,
    #[serde(default)]
    replace_paths: Vec<Vec<Value>>,
}

impl PlanModel {
    /// Reads the output of `terraform show -json <plan>`.
    pub fn from_json(text: &[u8]) -> Result<PlanModel, PlanJsonError> {
        let raw: RawPlan = serde_json::from_slice(text).map_err(|e| PlanJsonError(e.to_string()))?;
        let mut changes = Vec::new();
        for rc in raw.resource_changes {
            if rc.mode != "managed" {
                continue;
            }
            let Some(kind) = Kind::from_terraform_type(&rc.ty).filter(|k| Kind::MANAGED.contains(k)) else { continue };
            let action =
                Action::from_actions(&rc.change.actions).ok_or_else(|| PlanJsonError(format!("{}: unknown actions {:?}", rc.address, rc.change.actions)))?;
            let attributes =
                if matches!(action, Action::Create | Action::Update | Action::Replace) { changed_attributes(kind, &rc.change) } else { Vec::new() };
            let name = rc.change.after.get("name").and_then(Value::as_str).map(str::to_string);
            let id = rc.change.before.get("id").and_then(Value::as_str).map(str::to_string);
            let planned = if action == Action::Delete {
                Map::new()
            } else {
                plain_values(kind, &rc.change.after, Some(&rc.change.after_unknown), &rc.change.after_sensitive)
            };
            let prior = plain_values(kind, &rc.change.before, None, &rc.change.before_sensitive);
            changes.push(ResourceChange {
                address: rc.address,
                resource_type: rc.ty,
                kind,
                module_address: rc.module_address,
                index: rc.index,
                action,
                attributes,
                name,
                id,
                planned,
                prior,
            });
        }
        Ok(PlanModel { terraform_version: raw.terraform_version, changes })
    }

    /// Whether any resource changes (creates, updates, replaces or deletes).
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action.is_change())
    }

    /// A short human rendering of the changes, one line per resource and per attribute;
    /// sensitive attributes show `(sensitive value)`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in self.changes.iter().filter(|c| c.action.is_change()) {
            out.push_str(&format!("{} {} ({})\n", symbol(c.action), c.address, c.action));
            for a in &c.attributes {
                let forces = if a.forces_replacement { " # forces replacement" } else { "" };
                out.push_str(&format!("    {}: {} -> {}{forces}\n", a.name, a.before, a.after));
            }
        }
        out
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
        Action::Read => "<=",
        Action::NoOp => " ",
    }
}

/// Whether a sensitivity (or unknown-ness) marker holds `true` anywhere: Terraform mirrors the
/// value's shape and marks leaves, so a nested sensitive field makes the whole attribute sensitive.
fn marked(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::Array(items)) => items.iter().any(|i| marked(Some(i))),
        Some(Value::Object(map)) => map.values().any(|i| marked(Some(i))),
        _ => false,
    }
}

/// The top-level values of one side of a change that are known and not sensitive: an attribute
/// marked unknown or sensitive anywhere inside (or by the schema) is left out whole.
fn plain_values(kind: Kind, side: &Value, unknown: Option<&Value>, sensitive: &Value) -> Map<String, Value> {
    let Some(values) = side.as_object() else { return Map::new() };
    if *sensitive == Value::Bool(true) {
        return Map::new();
    }
    let schema = kind.schema();
    values
        .iter()
        .filter(|(name, v)| !v.is_null() && !marked(unknown.and_then(|u| u.get(name.as_str()))) && !marked(sensitive.get(name.as_str())))
        .filter(|(name, _)| !schema.attribute(name).is_some_and(|a| a.sensitive))
        .map(|(name, v)| (name.clone(), v.clone()))
        .collect()
}

fn changed_attributes(kind: Kind, change: &RawChange) -> Vec<AttributeChange> {
    let empty = Map::new();
    let before = change.before.as_object().unwrap_or(&empty);
    let after = change.after.as_object().unwrap_or(&empty);
    let unknown = change.after_unknown.as_object();
    let whole_before_sensitive = change.before_sensitive == Value::Bool(true);
    let whole_after_sensitive = change.after_sensitive == Value::Bool(true);
    let mut names: Vec<&String> = before.keys().chain(after.keys()).chain(unknown.into_iter().flat_map(|u| u.keys())).collect();
    names.sort();
    names.dedup();
    let schema = kind.schema();
    let mut out = Vec::new();
    for name in names {
        let is_unknown = marked(unknown.and_then(|u| u.get(name)));
        let b = before.get(name).unwrap_or(&Value::Null);
        let a = after.get(name).unwrap_or(&Value::Null);
        if !is_unknown && a == b {
            continue;
        }
        let sensitive = whole_before_sensitive
            || whole_after_sensitive
            || marked(change.before_sensitive.get(name))
            || marked(change.after_sensitive.get(name))
            || schema.attribute(name).is_some_and(|s| s.sensitive);
        let side = |v: &Value| match v {
            Value::Null => ChangeValue::Null,
            _ if sensitive => ChangeValue::Sensitive,
            v => ChangeValue::Known(v.clone()),
        };
        let forces_replacement = change.replace_paths.iter().any(|p| p.first().and_then(Value::as_str) == Some(name.as_str()));
        out.push(AttributeChange {
            name: name.clone(),
            before: side(b),
            after: if is_unknown { ChangeValue::Unknown } else { side(a) },
            sensitive,
            forces_replacement,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A hand-written plan in the shape Terraform documents for `show -json`: a VM update with
    /// a sensitive attribute, a network created inside a module with `count`, a policy replaced,
    /// a volume deleted, a data source read and an unrelated provider's resource.
    fn fixture() -> Value {
        json!({
            "format_version": "1.2",
            "terraform_version": "1.15.5",
            "resource_changes": [
                {"address": "novacron_vm.web", "mode": "managed", "type": "novacron_vm", "name": "web",
                 "change": {"actions": ["update"],
                    "before": {"id": "vm-1", "name": "web", "memory_gb": 4, "cpu_cores": 2, "user_data": "old-secret", "metadata": {"env": "prod"}, "status": "running"},
                    "after": {"id": "vm-1", "name": "web", "memory_gb": 8, "cpu_cores": 2, "user_data": "new-secret", "metadata": {"env": "prod", "team": "x"}},
                    "after_unknown": {"status": true, "metadata": {}},
                    "before_sensitive": {"user_data": true, "metadata": {}},
                    "after_sensitive": {"user_data": true, "metadata": {}}}},
                {"address": "module.net.novacron_network.core[0]", "module_address": "module.net", "mode": "managed", "type": "novacron_network",
                 "name": "core", "index": 0,
                 "change": {"actions": ["create"], "before": null,
                    "after": {"name": "core", "cidr": "10.0.0.0/24", "dns_servers": null, "firewall_rule": [{"ports": "22"}]},
                    "after_unknown": {"id": true, "firewall_rule": [{}]},
                    "before_sensitive": false, "after_sensitive": {"firewall_rule": [{}]}}},
                {"address": "novacron_policy.guard", "mode": "managed", "type": "novacron_policy", "name": "guard",
                 "change": {"actions": ["create", "delete"],
                    "before": {"id": "pol-1", "name": "guard", "type": "rego"},
                    "after": {"name": "guard", "type": "opa"},
                    "after_unknown": {"id": true},
                    "before_sensitive": {}, "after_sensitive": {},
                    "replace_paths": [["type"]]}},
                {"address": "novacron_storage.old", "mode": "managed", "type": "novacron_storage", "name": "old",
                 "change": {"actions": ["delete"], "before": {"id": "vol-1", "name": "old", "size_gb": 10}, "after": null,
                    "after_unknown": {}, "before_sensitive": {}, "after_sensitive": false}},
                {"address": "data.novacron_vm.x", "mode": "data", "type": "novacron_vm", "name": "x",
                 "change": {"actions": ["read"], "before": null, "after": {}, "after_unknown": {}}},
                {"address": "random_id.x", "mode": "managed", "type": "random_id", "name": "x",
                 "change": {"actions": ["create"], "before": null, "after": {}, "after_unknown": {}}}
            ]
        })
    }

    fn model() -> PlanModel {
        PlanModel::from_json(fixture().to_string().as_bytes()).expect("fixture parses")
    }

    #[test]
    fn keeps_managed_novacron_changes_only() {
        let m = model();
        assert_eq!(m.terraform_version, "1.15.5");
        let got: Vec<(&str, Action)> = m.changes.iter().map(|c| (c.address.as_str(), c.action)).collect();
        assert_eq!(
            got,
            [
                ("novacron_vm.web", Action::Update),
                ("module.net.novacron_network.core[0]", Action::Create),
                ("novacron_policy.guard", Action::Replace),
                ("novacron_storage.old", Action::Delete),
            ]
        );
        let net = &m.changes[1];
        assert_eq!(
            (net.module_address.as_deref(), net.index.clone(), net.name.as_deref(), net.kind),
            (Some("module.net"), Some(json!(0)), Some("core"), Kind::Network)
        );
        assert_eq!(m.changes[0].id.as_deref(), Some("vm-1"));
        assert!(m.changes[3].attributes.is_empty());
        assert!(m.has_changes());
    }

    #[test]
    fn update_lists_changed_attributes_with_unknown_and_sensitive() {
        let vm = &model().changes[0];
        let names: Vec<&str> = vm.attributes.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["memory_gb", "metadata", "status", "user_data"], "cpu_cores, id and name did not change");
        assert_eq!((&vm.attributes[0].before, &vm.attributes[0].after), (&ChangeValue::Known(json!(4)), &ChangeValue::Known(json!(8))));
        assert_eq!(vm.attributes[2].after, ChangeValue::Unknown);
        let ud = &vm.attributes[3];
        assert!(ud.sensitive);
        assert_eq!((&ud.before, &ud.after), (&ChangeValue::Sensitive, &ChangeValue::Sensitive));
    }

    #[test]
    fn sensitive_values_are_not_kept_debugged_or_rendered() {
        let m = model();
        for text in [format!("{m:?}"), m.render()] {
            assert!(!text.contains("old-secret") && !text.contains("new-secret"), "{text}");
        }
        assert!(m.render().contains("    user_data: (sensitive value) -> (sensitive value)\n"), "{}", m.render());
    }

    #[test]
    fn create_skips_null_and_marks_unknown_replace_marks_forcing_path() {
        let m = model();
        let net: Vec<(&str, String)> = m.changes[1].attributes.iter().map(|a| (a.name.as_str(), a.after.to_string())).collect();
        assert_eq!(
            net,
            [
                ("cidr", "\"10.0.0.0/24\"".to_string()),
                ("firewall_rule", "[{\"ports\":\"22\"}]".into()),
                ("id", "(known after apply)".into()),
                ("name", "\"core\"".into())
            ]
        );
        let pol = &m.changes[2];
        let forcing: Vec<&str> = pol.attributes.iter().filter(|a| a.forces_replacement).map(|a| a.name.as_str()).collect();
        assert_eq!(forcing, ["type"]);
        assert_eq!(pol.name.as_deref(), Some("guard"));
    }

    #[test]
    fn planned_values_leave_out_unknown_and_sensitive_ones() {
        let m = model();
        let vm = &m.changes[0];
        let keys: Vec<&str> = vm.planned.keys().map(String::as_str).collect();
        assert_eq!(keys, ["cpu_cores", "id", "memory_gb", "metadata", "name"], "status is unknown, user_data sensitive");
        assert_eq!(vm.planned["memory_gb"], json!(8));
        assert_eq!(vm.prior["memory_gb"], json!(4));
        assert!(!vm.prior.contains_key("user_data"));
        let net = &m.changes[1];
        assert!(net.prior.is_empty() && !net.planned.contains_key("id") && !net.planned.contains_key("dns_servers"));
        assert_eq!(net.planned["firewall_rule"], json!([{"ports": "22"}]));
        assert!(m.changes[3].planned.is_empty(), "a delete plans no values");
    }

    #[test]
    fn renders_one_line_per_change() {
        let text = model().render();
        assert!(text.starts_with("~ novacron_vm.web (update)\n    memory_gb: 4 -> 8\n"), "{text}");
        assert!(
            text.contains(
                "-/+ novacron_policy.guard (replace)\n    id: \"pol-1\" -> (known after apply)\n    type: \"rego\" -> \"opa\" # forces replacement\n"
            ),
            "{text}"
        );
        assert!(text.contains("- novacron_storage.old (delete)\n"), "{text}");
    }

    #[test]
    fn actions_map_and_unknown_lists_fail() {
        let a = |v: &[&str]| Action::from_actions(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&["delete", "create"]), Some(Action::Replace));
        assert_eq!(a(&["create", "delete"]), Some(Action::Replace));
        assert_eq!(a(&["no-op"]), Some(Action::NoOp));
        assert_eq!(a(&["forget"]), None);
        let bad = json!({"resource_changes": [{"address": "novacron_vm.a", "mode": "managed", "type": "novacron_vm", "change": {"actions": ["explode"]}}]});
        let err = PlanModel::from_json(bad.to_string().as_bytes()).expect_err("unknown actions");
        assert!(err.to_string().contains("novacron_vm.a: unknown actions"), "{err}");
        assert!(PlanModel::from_json(b"not json").is_err());
    }
}
