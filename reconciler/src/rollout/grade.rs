//! Grades a plan by the schema's drift severities: each change gets a severity, the plan the highest.

use std::fmt;

use novacron_schemas::{AttrType, Attribute, Kind, ResourceSchema, Severity};

use super::plan::{Action, PlanModel, ResourceChange};
use crate::report::BySeverity;
use crate::write_only::{TwinArgument, twin_argument};

/// The severity of creating an object: sizing-level, like a new VM or network.
pub const CREATE_SEVERITY: Severity = Severity::Medium;
/// Creating a policy changes what the platform admits: security-bearing.
pub const POLICY_CREATE_SEVERITY: Severity = Severity::Critical;
/// Replacing or deleting an object loses it (and its id).
pub const DESTRUCTIVE_SEVERITY: Severity = Severity::High;
/// An attribute the schema does not describe (a provider-only one such as `timeouts`): as much
/// as a create, so that nothing the schema cannot judge passes as harmless.
pub const UNDESCRIBED_SEVERITY: Severity = Severity::Medium;

/// One graded resource change.
#[derive(Debug, Clone, PartialEq)]
pub struct GradedChange {
    /// The resource address.
    pub address: String,
    /// Its kind.
    pub kind: Kind,
    /// What Terraform will do.
    pub action: Action,
    /// The change's severity.
    pub severity: Severity,
    /// Each graded attribute (Terraform name) with its severity; computed-only ones are left out.
    pub attributes: Vec<(String, Severity)>,
}

/// The grade of a whole plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlanGrade {
    /// The highest change severity; `None` when nothing changes.
    pub severity: Option<Severity>,
    /// Resources to create.
    pub creates: usize,
    /// Resources to update in place.
    pub updates: usize,
    /// Resources to replace.
    pub replaces: usize,
    /// Resources to delete.
    pub deletes: usize,
    /// Changes per severity.
    pub by_severity: BySeverity,
    /// Every change, in plan order (reads and no-ops left out).
    pub changes: Vec<GradedChange>,
}

/// The schema attribute behind a Terraform attribute or block name: the same name, or the
/// block list whose singular block name it is (`firewall_rule` is `firewall_rules`).
pub fn schema_attribute<'a>(schema: &'a ResourceSchema, terraform_name: &str) -> Option<&'a Attribute> {
    schema
        .attribute(terraform_name)
        .or_else(|| schema.attributes.iter().find(|a| matches!(&a.ty, AttrType::Blocks { block_name, .. } if block_name == terraform_name)))
}

/// Grades one change; `None` for reads and no-ops.
pub fn grade_change(change: &ResourceChange) -> Option<GradedChange> {
    let schema = change.kind.schema();
    let mut attributes = Vec::new();
    for a in &change.attributes {
        // A write-only twin and its version (`user_data_wo_version`: a new value is sent) weigh as their attribute.
        match schema_attribute(schema, &a.name).or_else(|| twin_argument(schema, &a.name).map(TwinArgument::attribute)) {
            // Computed-only attributes change as a consequence of the others (status, ip_address).
            Some(s) if s.read_only => {}
            Some(s) => attributes.push((a.name.clone(), s.severity)),
            None => attributes.push((a.name.clone(), UNDESCRIBED_SEVERITY)),
        }
    }
    let severity = match change.action {
        Action::Read | Action::NoOp => return None,
        Action::Create if change.kind == Kind::Policy => POLICY_CREATE_SEVERITY,
        Action::Create => CREATE_SEVERITY,
        Action::Replace | Action::Delete => DESTRUCTIVE_SEVERITY,
        Action::Update => attributes.iter().map(|(_, s)| *s).max().unwrap_or(Severity::Info),
    };
    Some(GradedChange { address: change.address.clone(), kind: change.kind, action: change.action, severity, attributes })
}

/// Grades every change of a plan.
pub fn grade_plan(plan: &PlanModel) -> PlanGrade {
    let mut grade = PlanGrade::default();
    for change in plan.changes.iter().filter_map(grade_change) {
        match change.action {
            Action::Create => grade.creates += 1,
            Action::Update => grade.updates += 1,
            Action::Replace => grade.replaces += 1,
            Action::Delete => grade.deletes += 1,
            Action::Read | Action::NoOp => {}
        }
        grade.by_severity.add(change.severity);
        grade.severity = grade.severity.max(Some(change.severity));
        grade.changes.push(change);
    }
    grade
}

/// One line: the non-zero counts, then the changes per severity, highest first, e.g.
/// `3 to change: 1 critical, 2 low` or `1 to add, 1 to replace: 1 high, 1 medium`;
/// `no changes` for an empty plan.
impl fmt::Display for PlanGrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = [(self.creates, "add"), (self.updates, "change"), (self.replaces, "replace"), (self.deletes, "destroy")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} to {what}"))
            .collect();
        if counts.is_empty() {
            return f.write_str("no changes");
        }
        let levels: Vec<String> =
            Severity::DESCENDING.into_iter().filter(|s| self.by_severity.get(*s) > 0).map(|s| format!("{} {s}", self.by_severity.get(s))).collect();
        write!(f, "{}: {}", counts.join(", "), levels.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn plan(changes: Value) -> PlanModel {
        PlanModel::from_json(json!({"terraform_version": "1.15.5", "resource_changes": changes}).to_string().as_bytes()).expect("plan")
    }

    fn update(ty: &str, name: &str, before: Value, after: Value) -> Value {
        json!({"address": format!("{ty}.{name}"), "mode": "managed", "type": ty,
               "change": {"actions": ["update"], "before": before, "after": after, "after_unknown": {}, "before_sensitive": {}, "after_sensitive": {}}})
    }

    fn simple(ty: &str, name: &str, actions: Value) -> Value {
        json!({"address": format!("{ty}.{name}"), "mode": "managed", "type": ty,
               "change": {"actions": actions, "before": {"id": "x-1", "name": name}, "after": {"name": name}, "after_unknown": {"id": true}}})
    }

    /// Severities as the schema files state them, so the test follows the schema, not a copy.
    fn sev(kind: Kind, attr: &str) -> Severity {
        kind.schema().attribute(attr).expect("attribute exists").severity
    }

    #[test]
    fn an_update_takes_its_highest_attribute_and_block_names_map_to_the_schema() {
        let p = plan(json!([update(
            "novacron_network",
            "core",
            json!({"id": "net-1", "mtu": 1500, "firewall_rule": [{"ports": "22"}], "status": "active"}),
            json!({"id": "net-1", "mtu": 9000, "firewall_rule": [{"ports": "22,443"}], "status": "degraded"})
        )]));
        let g = grade_plan(&p);
        let attrs = &g.changes[0].attributes;
        assert_eq!(
            attrs,
            &[("firewall_rule".to_string(), sev(Kind::Network, "firewall_rules")), ("mtu".to_string(), sev(Kind::Network, "mtu"))],
            "status is computed-only and left out"
        );
        assert_eq!(sev(Kind::Network, "firewall_rules"), Severity::Critical, "DESIGN.md: firewall rules are security-bearing");
        assert_eq!(g.severity, Some(Severity::Critical));
        assert_eq!(g.to_string(), "1 to change: 1 critical");
    }

    #[test]
    fn creates_replaces_deletes_and_policies() {
        let p = plan(json!([
            simple("novacron_vm", "a", json!(["create"])),
            simple("novacron_policy", "guard", json!(["create"])),
            simple("novacron_storage", "data", json!(["delete", "create"])),
            simple("novacron_network", "old", json!(["delete"])),
            simple("novacron_vm", "same", json!(["no-op"])),
        ]));
        let g = grade_plan(&p);
        let got: Vec<(&str, Severity)> = g.changes.iter().map(|c| (c.address.as_str(), c.severity)).collect();
        assert_eq!(
            got,
            [
                ("novacron_vm.a", Severity::Medium),
                ("novacron_policy.guard", Severity::Critical),
                ("novacron_storage.data", Severity::High),
                ("novacron_network.old", Severity::High)
            ]
        );
        assert_eq!((g.creates, g.updates, g.replaces, g.deletes), (2, 0, 1, 1));
        assert_eq!(g.severity, Some(Severity::Critical));
        assert_eq!(g.to_string(), "2 to add, 1 to replace, 1 to destroy: 1 critical, 2 high, 1 medium");
    }

    #[test]
    fn low_updates_stay_low_and_undescribed_attributes_are_medium() {
        let meta = update("novacron_vm", "web", json!({"metadata": {"env": "a"}}), json!({"metadata": {"env": "b"}}));
        let timeouts = update("novacron_vm", "db", json!({"timeouts": null}), json!({"timeouts": {"create": "5m"}}));
        let g = grade_plan(&plan(json!([meta.clone()])));
        assert_eq!(g.severity, Some(sev(Kind::Vm, "metadata")));
        assert_eq!(g.to_string(), format!("1 to change: 1 {}", sev(Kind::Vm, "metadata")));
        let g = grade_plan(&plan(json!([meta, timeouts])));
        assert_eq!(g.changes[1].severity, UNDESCRIBED_SEVERITY);
        assert_eq!(g.severity, Some(sev(Kind::Vm, "metadata").max(UNDESCRIBED_SEVERITY)));
    }

    #[test]
    fn a_new_write_only_version_weighs_as_the_attribute_it_sends() {
        let p = plan(json!([update(
            "novacron_vm",
            "web",
            json!({"user_data_wo": null, "user_data_wo_version": 1}),
            json!({"user_data_wo": null, "user_data_wo_version": 2})
        )]));
        let g = grade_plan(&p);
        assert_eq!(g.changes[0].attributes, [("user_data_wo_version".to_string(), sev(Kind::Vm, "user_data"))]);
    }

    #[test]
    fn an_update_of_computed_attributes_only_is_info_and_an_empty_plan_has_no_severity() {
        let g = grade_plan(&plan(json!([update("novacron_vm", "web", json!({"status": "running"}), json!({"status": "stopped"}))])));
        assert_eq!((g.severity, g.changes[0].attributes.len()), (Some(Severity::Info), 0));
        let g = grade_plan(&plan(json!([simple("novacron_vm", "same", json!(["no-op"]))])));
        assert_eq!((g.severity, g.changes.len(), g.to_string()), (None, 0, "no changes".to_string()));
    }

    #[test]
    fn block_names_resolve_through_the_schema() {
        let schema = Kind::Network.schema();
        assert_eq!(schema_attribute(schema, "firewall_rule").map(|a| a.name.as_str()), Some("firewall_rules"));
        assert_eq!(schema_attribute(schema, "cidr").map(|a| a.name.as_str()), Some("cidr"));
        assert!(schema_attribute(schema, "timeouts").is_none());
    }
}
