//! The three-way view: desired (Git), last applied (Terraform state) and live (the platform), so a
//! commit is a rollout and an out-of-band change is drift, and the two are never confused.
//!
//! Pure: data in, classification out. Desired ≠ last applied is a pending rollout (Git moved);
//! live ≠ last applied is drift (the platform moved); both on one object is a conflict for a
//! person. Drift is computed from the state's values, so it is exact even where the HCL could
//! not be evaluated.

use std::collections::{HashMap, HashSet};

use novacron_schemas::{Kind, Severity, sha256_hex};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::drift::{DesiredResource, DriftResult, LiveObject, compare_one};
use crate::ignore::IgnoreRules;
use crate::report::{Change, ResourceReport, Status};
use crate::tfstate::{AppliedResource, AppliedState};

/// Where a resource stands across the three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreeWay {
    /// Desired, last applied and live agree.
    InSync,
    /// Desired differs from last applied: Git moved, Terraform has not applied it yet.
    RolloutPending,
    /// Live differs from last applied: the platform moved out of band.
    Drift,
    /// Both moved on the same object: a person decides.
    Conflict,
}

impl ThreeWay {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ThreeWay::InSync => "in_sync",
            ThreeWay::RolloutPending => "rollout_pending",
            ThreeWay::Drift => "drift",
            ThreeWay::Conflict => "conflict",
        }
    }
}

/// What a pending rollout would do to one resource, as the fast view sees it (the Terraform plan decides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutKind {
    /// In Git, not in the state.
    Create,
    /// In both, with different values.
    Update,
    /// In the state, no longer in Git.
    Delete,
}

/// One attribute that differs between desired and last applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutChange {
    /// Path in HCL terms.
    pub path: String,
    /// The desired value; `"(sensitive)"` for sensitive attributes.
    pub desired: Value,
    /// The last-applied value; `"(sensitive)"` for sensitive attributes.
    pub last_applied: Value,
    /// The attribute's severity from `schemas/`.
    pub severity: Severity,
    /// True when the values are hidden.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl From<Change> for RolloutChange {
    fn from(c: Change) -> RolloutChange {
        RolloutChange { path: c.path, desired: c.desired, last_applied: c.live, severity: c.severity, sensitive: c.sensitive }
    }
}

/// The three-way facts about one address.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The classification.
    pub three_way: ThreeWay,
    /// What a rollout would do, when one is pending.
    pub rollout: Option<RolloutKind>,
    /// Desired vs last applied.
    pub rollout_changes: Vec<RolloutChange>,
    /// Last applied vs live (the drift), as report changes (`desired` holds the last-applied value).
    pub drift_changes: Vec<Change>,
    /// Desired equals live but the state is behind (a merged codify pull request): refresh the state.
    pub state_behind: bool,
}

/// The result of [`match_ids`]: which live object each desired address is.
pub type IdMatch = HashMap<String, String>;

/// The live object id of every desired address the state records, for matching by id (a renamed
/// `name` is then an update, not missing + unmanaged).
pub fn match_ids(applied: &AppliedState) -> IdMatch {
    applied.resources.iter().map(|r| (r.address.clone(), r.id.clone())).collect()
}

/// The drift target of a resource: the last-applied values of the attributes the configuration
/// sets (known or not), as a desired resource. Reverting drift puts these back.
///
/// A write-only value the state knows only by its hash (it was given through `user_data_wo`) is
/// the desired value when that has the same hash, so a revert can send it; otherwise the target
/// holds the hash attribute (`user_data_sha256`), which compares but cannot be sent.
pub fn applied_target(desired: &DesiredResource, applied: &AppliedResource) -> DesiredResource {
    let configured: HashSet<&str> = desired.attributes.keys().map(String::as_str).chain(desired.unknown.iter().map(String::as_str)).collect();
    let mut attributes: Map<String, Value> =
        applied.attributes.iter().filter(|(k, _)| configured.contains(k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
    for attr in desired.kind.schema().settable().filter(|a| configured.contains(a.name.as_str())) {
        let Some(hash_attr) = attr.hash_attribute.as_ref().filter(|_| !attributes.contains_key(&attr.name)) else { continue };
        let Some(Value::String(hash)) = applied.attributes.get(hash_attr) else { continue };
        match desired.attributes.get(&attr.name) {
            Some(Value::String(value)) if sha256_hex(value.as_bytes()) == *hash => attributes.insert(attr.name.clone(), Value::String(value.clone())),
            _ => attributes.insert(hash_attr.clone(), Value::String(hash.clone())),
        };
    }
    attributes.insert("name".into(), Value::String(applied.name.clone()));
    DesiredResource { address: desired.address.clone(), kind: desired.kind, name: applied.name.clone(), attributes, unknown: Vec::new() }
}

fn as_live(kind: Kind, applied: &AppliedResource) -> LiveObject {
    let mut fields = applied.attributes.clone();
    fields.insert("id".into(), Value::String(applied.id.clone()));
    fields.insert("name".into(), Value::String(applied.name.clone()));
    LiveObject { kind, fields }
}

/// Classifies every desired address, every state address and every unmatched live object.
/// `live_of` finds the live object of a desired address (by the state's id, else by name).
pub fn classify(desired: &[DesiredResource], applied: &AppliedState, live: &[LiveObject], rules: &IgnoreRules) -> HashMap<String, Facts> {
    let by_address = applied.by_address();
    let by_id: HashMap<(Kind, &str), &LiveObject> = live.iter().map(|o| ((o.kind, o.id()), o)).collect();
    let mut out = HashMap::new();
    let mut desired_addresses = HashSet::new();
    for d in desired {
        desired_addresses.insert(d.address.as_str());
        let facts = match by_address.get(d.address.as_str()) {
            None => Facts {
                three_way: ThreeWay::RolloutPending,
                rollout: Some(RolloutKind::Create),
                rollout_changes: Vec::new(),
                drift_changes: Vec::new(),
                state_behind: false,
            },
            Some(s) => {
                let rollout_changes: Vec<RolloutChange> =
                    compare_one(d, Some(&as_live(d.kind, s)), rules).changes.into_iter().map(RolloutChange::from).collect();
                let target = applied_target(d, s);
                let live_object = by_id.get(&(d.kind, s.id.as_str())).copied();
                let drift = compare_one(&target, live_object, rules);
                let drifted = drift.status != Status::InSync;
                let rolled = !rollout_changes.is_empty();
                // Desired equals live on every attribute the rollout would change: the state is
                // merely behind (a merged codify pull request), not a conflict.
                let behind = rolled && drifted && live_object.is_some_and(|l| compare_one(d, Some(l), rules).status == Status::InSync);
                let three_way = match (rolled, drifted, behind) {
                    (_, _, true) | (false, false, _) => ThreeWay::InSync,
                    (true, false, _) => ThreeWay::RolloutPending,
                    (false, true, _) => ThreeWay::Drift,
                    (true, true, false) => ThreeWay::Conflict,
                };
                Facts {
                    three_way,
                    rollout: rolled.then_some(RolloutKind::Update),
                    rollout_changes,
                    drift_changes: if behind { Vec::new() } else { drift.changes },
                    state_behind: behind,
                }
            }
        };
        out.insert(d.address.clone(), facts);
    }
    for s in applied.resources.iter().filter(|s| !desired_addresses.contains(s.address.as_str())) {
        out.insert(
            s.address.clone(),
            Facts {
                three_way: ThreeWay::RolloutPending,
                rollout: Some(RolloutKind::Delete),
                rollout_changes: Vec::new(),
                drift_changes: Vec::new(),
                state_behind: false,
            },
        );
    }
    out
}

/// Puts the three-way facts into the entries of a two-way drift result (matched by id), so
/// `status` keeps its meaning and `three_way` says which side moved. Without state every entry
/// not in sync counts as drift, as before.
pub fn annotate(result: &mut DriftResult, facts: Option<&HashMap<String, Facts>>, applied: Option<&AppliedState>) {
    let state_by_id: HashMap<&str, &AppliedResource> = applied.map(|a| a.resources.iter().map(|r| (r.id.as_str(), r)).collect()).unwrap_or_default();
    for entry in &mut result.resources {
        let Some(facts) = facts else {
            entry.three_way = if entry.status == Status::InSync { ThreeWay::InSync } else { ThreeWay::Drift };
            continue;
        };
        // An unmanaged entry the state still holds is a resource removed from Git: a pending delete.
        let found = facts.get(&entry.address).or_else(|| {
            (entry.status == Status::Unmanaged).then(|| entry.id.as_deref().and_then(|id| state_by_id.get(id)).and_then(|s| facts.get(&s.address))).flatten()
        });
        let Some(f) = found else {
            entry.three_way = if entry.status == Status::InSync { ThreeWay::InSync } else { ThreeWay::Drift };
            continue;
        };
        entry.three_way = f.three_way;
        entry.rollout = f.rollout;
        entry.rollout_changes = f.rollout_changes.clone();
        entry.state_behind = f.state_behind;
        if matches!(f.three_way, ThreeWay::Drift | ThreeWay::Conflict) && entry.status != Status::Missing {
            replace_changes(entry, &f.drift_changes);
        }
        if entry.status == Status::Unmanaged && f.rollout == Some(RolloutKind::Delete) {
            entry.severity = Some(Severity::High);
        }
    }
    result.summary.three_way = Default::default();
    for entry in &result.resources {
        result.summary.three_way.add(entry.three_way);
    }
}

/// The drift of an entry is the state-vs-live comparison: exact even for attributes the HCL
/// evaluator could not see.
fn replace_changes(entry: &mut ResourceReport, drift: &[Change]) {
    if drift.is_empty() {
        return;
    }
    let mut seen: HashSet<String> = entry.changes.iter().map(|c| c.path.clone()).collect();
    for c in drift {
        if seen.insert(c.path.clone()) {
            entry.changes.push(c.clone());
        }
    }
    entry.changes.sort_by(|a, b| a.path.cmp(&b.path));
    if entry.status == Status::InSync {
        entry.status = Status::Drifted;
    }
    let highest = entry.changes.iter().map(|c| c.severity).max().unwrap_or(Severity::Info);
    entry.severity = Some(entry.severity.map_or(highest, |s| s.max(highest)));
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::drift::compute_drift_matched;

    fn desired(kind: Kind, address: &str, name: &str, attrs: Value, unknown: &[&str]) -> DesiredResource {
        let mut attributes = attrs.as_object().expect("object").clone();
        attributes.insert("name".into(), json!(name));
        DesiredResource { address: address.into(), kind, name: name.into(), attributes, unknown: unknown.iter().map(|s| s.to_string()).collect() }
    }

    fn applied(kind: Kind, address: &str, id: &str, name: &str, attrs: Value) -> AppliedResource {
        let mut attributes = attrs.as_object().expect("object").clone();
        attributes.insert("name".into(), json!(name));
        AppliedResource { address: address.into(), kind, id: id.into(), name: name.into(), attributes }
    }

    fn live(kind: Kind, id: &str, name: &str, attrs: Value) -> LiveObject {
        let mut fields = attrs.as_object().expect("object").clone();
        fields.insert("name".into(), json!(name));
        fields.insert("id".into(), json!(id));
        LiveObject { kind, fields }
    }

    fn vm(memory: i64, team: &str) -> Value {
        json!({"cpu_cores": 2, "memory_gb": memory, "metadata": {"team": team}, "user_data": "#cloud-config secret"})
    }

    fn run(d: &[DesiredResource], s: &AppliedState, l: &[LiveObject]) -> DriftResult {
        let rules = IgnoreRules::default();
        let mut result = compute_drift_matched(d, l, &rules, &match_ids(s));
        let facts = classify(d, s, l, &rules);
        annotate(&mut result, Some(&facts), Some(s));
        result
    }

    fn entry<'a>(r: &'a DriftResult, address: &str) -> &'a ResourceReport {
        r.resources
            .iter()
            .find(|e| e.address == address)
            .unwrap_or_else(|| panic!("{address} in {:?}", r.resources.iter().map(|e| &e.address).collect::<Vec<_>>()))
    }

    #[test]
    fn a_commit_is_a_rollout_an_out_of_band_change_is_drift_both_is_a_conflict() {
        let d = [
            desired(Kind::Vm, "novacron_vm.a", "a", vm(8, "web"), &[]),
            desired(Kind::Vm, "novacron_vm.b", "b", vm(4, "web"), &[]),
            desired(Kind::Vm, "novacron_vm.c", "c", vm(8, "web"), &[]),
            desired(Kind::Vm, "novacron_vm.new", "new", vm(4, "web"), &[]),
            desired(Kind::Vm, "novacron_vm.same", "same", vm(4, "web"), &[]),
        ];
        let s = AppliedState {
            resources: vec![
                applied(Kind::Vm, "novacron_vm.a", "vm-a", "a", vm(4, "web")),
                applied(Kind::Vm, "novacron_vm.b", "vm-b", "b", vm(4, "web")),
                applied(Kind::Vm, "novacron_vm.c", "vm-c", "c", vm(4, "web")),
                applied(Kind::Vm, "novacron_vm.same", "vm-s", "same", vm(4, "web")),
                applied(Kind::Vm, "novacron_vm.old", "vm-o", "old", vm(4, "web")),
            ],
            ..AppliedState::default()
        };
        let l = [
            live(Kind::Vm, "vm-a", "a", vm(4, "web")),
            live(Kind::Vm, "vm-b", "b", vm(4, "ops")),
            live(Kind::Vm, "vm-c", "c", vm(4, "ops")),
            live(Kind::Vm, "vm-s", "same", vm(4, "web")),
            live(Kind::Vm, "vm-o", "old", vm(4, "web")),
        ];
        let r = run(&d, &s, &l);
        assert_eq!(entry(&r, "novacron_vm.a").three_way, ThreeWay::RolloutPending);
        assert_eq!(entry(&r, "novacron_vm.a").rollout_changes[0].path, "memory_gb");
        assert_eq!(entry(&r, "novacron_vm.b").three_way, ThreeWay::Drift);
        assert_eq!(entry(&r, "novacron_vm.b").changes[0].path, "metadata.team");
        assert_eq!(entry(&r, "novacron_vm.c").three_way, ThreeWay::Conflict);
        assert_eq!((entry(&r, "novacron_vm.new").three_way, entry(&r, "novacron_vm.new").rollout), (ThreeWay::RolloutPending, Some(RolloutKind::Create)));
        assert_eq!(entry(&r, "novacron_vm.same").three_way, ThreeWay::InSync);
        let old = entry(&r, "novacron_vm.old");
        assert_eq!((old.status, old.three_way, old.rollout), (Status::Unmanaged, ThreeWay::RolloutPending, Some(RolloutKind::Delete)));
        let t = &r.summary.three_way;
        assert_eq!((t.in_sync, t.rollout_pending, t.drift, t.conflict), (1, 3, 1, 1));
    }

    #[test]
    fn a_renamed_object_is_an_update_matched_by_the_state_id() {
        let d = [desired(Kind::Vm, "novacron_vm.web", "web-new", vm(4, "web"), &[])];
        let s = AppliedState { resources: vec![applied(Kind::Vm, "novacron_vm.web", "vm-1", "web-old", vm(4, "web"))], ..AppliedState::default() };
        let l = [live(Kind::Vm, "vm-1", "web-old", vm(4, "web"))];
        let r = run(&d, &s, &l);
        assert_eq!(r.resources.len(), 1, "not missing + unmanaged");
        let e = &r.resources[0];
        assert_eq!((e.id.as_deref(), e.three_way), (Some("vm-1"), ThreeWay::RolloutPending));
        assert_eq!(e.rollout_changes[0].path, "name");
    }

    #[test]
    fn drift_is_exact_where_the_desired_value_is_unknown() {
        // user_data came from a function the evaluator could not see: the state still knows it.
        let mut attrs = vm(4, "web");
        attrs.as_object_mut().expect("object").remove("user_data");
        let d = [desired(Kind::Vm, "novacron_vm.web", "web", attrs, &["user_data"])];
        let s = AppliedState { resources: vec![applied(Kind::Vm, "novacron_vm.web", "vm-1", "web", vm(4, "web"))], ..AppliedState::default() };
        let mut changed = vm(4, "web");
        changed["user_data_sha256"] = json!(novacron_schemas::sha256_hex(b"tampered"));
        changed.as_object_mut().expect("object").remove("user_data");
        let r = run(&d, &s, &[live(Kind::Vm, "vm-1", "web", changed)]);
        let e = &r.resources[0];
        assert_eq!((e.status, e.three_way), (Status::Drifted, ThreeWay::Drift));
        assert_eq!(e.changes[0].path, "user_data");
        assert!(e.changes[0].sensitive);
        assert!(!serde_json::to_string(&r.resources).expect("json").contains("secret"));
    }

    #[test]
    fn user_data_given_write_only_compares_with_the_state_by_its_hash() {
        // Terraform >= 1.11 keeps no user data of a VM given `user_data_wo`: only user_data_sha256.
        let applied_secret = "#cloud-config\npassword: applied-secret\n";
        let hash = |value: &str| json!(sha256_hex(value.as_bytes()));
        let wanted = |value: &str| desired(Kind::Vm, "novacron_vm.web", "web", json!({"cpu_cores": 2, "user_data": value}), &[]);
        let on_platform = |value: &str| live(Kind::Vm, "vm-1", "web", json!({"cpu_cores": 2, "user_data_sha256": hash(value)}));
        let s = AppliedState {
            resources: vec![applied(Kind::Vm, "novacron_vm.web", "vm-1", "web", json!({"cpu_cores": 2, "user_data_sha256": hash(applied_secret)}))],
            ..AppliedState::default()
        };
        let three_way = |r: &DriftResult| (r.resources[0].status, r.resources[0].three_way);

        let r = run(&[wanted(applied_secret)], &s, &[on_platform(applied_secret)]);
        assert_eq!(three_way(&r), (Status::InSync, ThreeWay::InSync), "no perpetual difference: {:?}", r.resources[0].rollout_changes);

        // A new value in Git: a rollout against last applied (and a difference from live), by hash.
        let r = run(&[wanted("#cloud-config new-secret")], &s, &[on_platform(applied_secret)]);
        assert_eq!(three_way(&r), (Status::Drifted, ThreeWay::RolloutPending));
        let rc = &r.resources[0].rollout_changes;
        assert_eq!((rc.len(), rc[0].path.as_str(), rc[0].sensitive), (1, "user_data", true));

        // Changed on the platform: drift, and the revert target is the desired value, which has the applied hash.
        let r = run(&[wanted(applied_secret)], &s, &[on_platform("tampered")]);
        assert_eq!(three_way(&r), (Status::Drifted, ThreeWay::Drift));
        assert_eq!((r.resources[0].changes[0].path.as_str(), r.resources[0].changes[0].sensitive), ("user_data", true));
        assert_eq!(applied_target(&wanted(applied_secret), &s.resources[0]).attributes["user_data"], json!(applied_secret));

        // Both moved: a conflict; the target knows the applied value only by its hash.
        let r = run(&[wanted("#cloud-config new-secret")], &s, &[on_platform("tampered")]);
        assert_eq!(three_way(&r), (Status::Drifted, ThreeWay::Conflict));
        let target = applied_target(&wanted("#cloud-config new-secret"), &s.resources[0]);
        assert_eq!((target.attributes.get("user_data"), target.attributes.get("user_data_sha256")), (None, Some(&hash(applied_secret))));
        let text = serde_json::to_string(&r.resources).expect("json");
        assert!(!text.contains("secret") && !text.contains("tampered"), "{text}");
    }

    #[test]
    fn desired_equal_to_live_with_the_state_behind_is_in_sync_and_marked() {
        let d = [desired(Kind::Vm, "novacron_vm.web", "web", vm(4, "ops"), &[])];
        let s = AppliedState { resources: vec![applied(Kind::Vm, "novacron_vm.web", "vm-1", "web", vm(4, "web"))], ..AppliedState::default() };
        let r = run(&d, &s, &[live(Kind::Vm, "vm-1", "web", vm(4, "ops"))]);
        let e = &r.resources[0];
        assert_eq!((e.status, e.three_way, e.state_behind), (Status::InSync, ThreeWay::InSync, true));
    }

    #[test]
    fn an_object_deleted_out_of_band_is_drift() {
        let d = [desired(Kind::Vm, "novacron_vm.web", "web", vm(4, "web"), &[])];
        let s = AppliedState { resources: vec![applied(Kind::Vm, "novacron_vm.web", "vm-1", "web", vm(4, "web"))], ..AppliedState::default() };
        let r = run(&d, &s, &[]);
        assert_eq!((r.resources[0].status, r.resources[0].three_way), (Status::Missing, ThreeWay::Drift));
    }

    #[test]
    fn without_state_everything_not_in_sync_is_drift() {
        let rules = IgnoreRules::default();
        let d = [desired(Kind::Vm, "novacron_vm.web", "web", vm(4, "web"), &[])];
        let mut result = compute_drift_matched(&d, &[], &rules, &IdMatch::new());
        annotate(&mut result, None, None);
        assert_eq!(result.resources[0].three_way, ThreeWay::Drift);
        assert_eq!(result.summary.three_way.drift, 1);
    }
}
