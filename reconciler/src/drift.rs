//! The pure drift computation: desired resources and live objects in, report entries out.

use std::collections::HashMap;

use novacron_schemas::{Kind, ResourceSchema, Severity, content_hash};
use serde_json::{Map, Value};

use crate::diff::{diff_objects, top_level};
use crate::ignore::IgnoreRules;
use crate::report::{BySeverity, IgnoredResource, ResourceReport, Status, Summary, ThreeWay};

/// One evaluated `novacron_*` resource instance from the desired state.
#[derive(Clone, PartialEq)]
pub struct DesiredResource {
    /// Its address, e.g. `module.web.novacron_vm.this[0]`.
    pub address: String,
    /// Its kind.
    pub kind: Kind,
    /// Its `name` attribute (the match key).
    pub name: String,
    /// Every configured attribute whose value is known, by API name (`firewall_rules`), `name` included.
    pub attributes: Map<String, Value>,
    /// Configured attributes whose value could not be evaluated.
    pub unknown: Vec<String>,
}

/// Shows attribute names only: values may be sensitive (`user_data`).
impl std::fmt::Debug for DesiredResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredResource")
            .field("address", &self.address)
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .field("unknown", &self.unknown)
            .finish()
    }
}

/// One object read from the platform.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveObject {
    /// Its kind.
    pub kind: Kind,
    /// The object as the API returned it.
    pub fields: Map<String, Value>,
}

impl LiveObject {
    /// The object's name.
    pub fn name(&self) -> &str {
        self.fields.get("name").and_then(Value::as_str).unwrap_or("")
    }

    /// The object's id.
    pub fn id(&self) -> &str {
        self.fields.get("id").and_then(Value::as_str).unwrap_or("")
    }
}

/// The entries and counts of a report; the caller adds revision, time and warnings.
#[derive(Debug, Clone)]
pub struct DriftResult {
    /// Entries sorted by address.
    pub resources: Vec<ResourceReport>,
    /// Resources an ignore rule left out.
    pub ignored: Vec<IgnoredResource>,
    /// Counts.
    pub summary: Summary,
}

/// Compares every desired resource with the live object of its kind and name. Names are
/// expected to be unique per kind on both sides (the evaluator refuses duplicates).
pub fn compute_drift(desired: &[DesiredResource], live: &[LiveObject], rules: &IgnoreRules) -> DriftResult {
    compute_drift_matched(desired, live, rules, &HashMap::new())
}

/// [`compute_drift`] where `ids` (address → object id, from Terraform's state) say which live
/// object a desired resource is; addresses not in `ids` are matched by kind and name.
pub fn compute_drift_matched(desired: &[DesiredResource], live: &[LiveObject], rules: &IgnoreRules, ids: &HashMap<String, String>) -> DriftResult {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    compute_drift_on(desired, live, rules, ids, threads)
}

/// [`compute_drift_matched`] on at most `threads` threads (one below [`PARALLEL_THRESHOLD`] comparisons).
pub fn compute_drift_on(desired: &[DesiredResource], live: &[LiveObject], rules: &IgnoreRules, ids: &HashMap<String, String>, threads: usize) -> DriftResult {
    let by_name: HashMap<(Kind, &str), usize> = live.iter().enumerate().map(|(i, o)| ((o.kind, o.name()), i)).collect();
    let by_id: HashMap<(Kind, &str), usize> =
        if ids.is_empty() { HashMap::new() } else { live.iter().enumerate().map(|(i, o)| ((o.kind, o.id()), i)).collect() };
    let mut managed = vec![false; live.len()];
    let mut ignored = Vec::new();
    let mut jobs = Vec::with_capacity(desired.len());
    for d in desired {
        let index = match ids.get(&d.address) {
            Some(id) => by_id.get(&(d.kind, id.as_str())),
            None => by_name.get(&(d.kind, d.name.as_str())),
        };
        let found = index.map(|&i| {
            managed[i] = true;
            &live[i]
        });
        match rules.resource_rule(&d.address) {
            Some(rule) => ignored.push(IgnoredResource { address: d.address.clone(), rule: rule.to_string() }),
            None => jobs.push((d, found)),
        }
    }
    let mut resources = compare_all(&jobs, rules, threads);
    let ignored_changes: usize = resources.iter().map(|r| r.ignored_changes.len()).sum();
    for (o, _) in live.iter().zip(&managed).filter(|(_, m)| !**m) {
        let address = format!("{}.{}", o.kind.terraform_type(), o.name());
        if let Some(rule) = rules.resource_rule(&address) {
            ignored.push(IgnoredResource { address, rule: rule.to_string() });
            continue;
        }
        let live_hash = content_hash(&o.kind.schema().canonical(&o.fields, None));
        let mut entry = ResourceReport::new(address, o.kind.terraform_type().to_string(), o.name().to_string());
        entry.id = Some(o.id().to_string());
        entry.status = Status::Unmanaged;
        entry.severity = Some(Severity::Info);
        entry.live_hash = Some(live_hash);
        entry.three_way = ThreeWay::Drift;
        resources.push(entry);
    }
    resources.sort_by(|a, b| a.address.cmp(&b.address));
    ignored.sort_by(|a, b| a.address.cmp(&b.address));
    let summary = summarise(&resources, ignored.len() + ignored_changes, managed.iter().filter(|m| **m).count(), live.len());
    DriftResult { resources, ignored, summary }
}

/// Below this many comparisons one thread is faster than starting more.
pub const PARALLEL_THRESHOLD: usize = 2_048;

/// Compares every pair, on all cores for large inputs; the result keeps the input order.
fn compare_all(jobs: &[(&DesiredResource, Option<&LiveObject>)], rules: &IgnoreRules, threads: usize) -> Vec<ResourceReport> {
    if threads <= 1 || jobs.len() < PARALLEL_THRESHOLD {
        return jobs.iter().map(|(d, l)| compare_one(d, *l, rules)).collect();
    }
    let chunk = jobs.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            jobs.chunks(chunk).map(|part| scope.spawn(move || part.iter().map(|(d, l)| compare_one(d, *l, rules)).collect::<Vec<_>>())).collect();
        let mut out = Vec::with_capacity(jobs.len());
        for h in handles {
            out.extend(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        out
    })
}

pub(crate) fn compare_one(d: &DesiredResource, live: Option<&LiveObject>, rules: &IgnoreRules) -> ResourceReport {
    let schema = d.kind.schema();
    let only = compared_attributes(schema, d);
    let desired_canon = schema.canonical(&d.attributes, Some(&only));
    let desired_hash = content_hash(&desired_canon);
    let mut entry = ResourceReport::new(d.address.clone(), d.kind.terraform_type().to_string(), d.name.clone());
    entry.severity = Some(Severity::High);
    entry.desired_hash = Some(desired_hash);
    entry.drift_percentage = 1.0;
    entry.unknown = d.unknown.clone();
    entry.three_way = ThreeWay::Drift;
    let Some(live) = live else { return entry };
    entry.id = Some(live.id().to_string());
    let live_canon = schema.canonical(&live.fields, Some(&only));
    let live_hash = content_hash(&live_canon);
    let same = entry.desired_hash.as_deref() == Some(live_hash.as_str());
    entry.live_hash = Some(live_hash);
    entry.status = Status::InSync;
    entry.severity = None;
    entry.drift_percentage = 0.0;
    entry.three_way = ThreeWay::InSync;
    if same {
        return entry;
    }
    let empty = Map::new();
    let all = diff_objects(schema, desired_canon.as_object().unwrap_or(&empty), live_canon.as_object().unwrap_or(&empty));
    let (ignored, changes): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| rules.change_rule(&d.address, &c.path).is_some());
    entry.ignored_changes = ignored;
    if changes.is_empty() {
        return entry;
    }
    // `name` is the match key, so it cannot drift; it does not count among the configured attributes.
    let configured = only.iter().filter(|n| **n != "name").count().max(1);
    let mut drifted: Vec<&str> = changes.iter().map(|c| top_level(&c.path)).collect();
    drifted.dedup();
    let highest = changes.iter().map(|c| c.severity).max().unwrap_or(Severity::Info);
    entry.severity = Some(if drifted.len() * 2 >= configured { highest.raised() } else { highest });
    entry.drift_percentage = round4(drifted.len() as f64 / configured as f64);
    entry.status = Status::Drifted;
    entry.three_way = ThreeWay::Drift;
    entry.changes = changes;
    entry
}

/// The attributes a desired resource configures. A hash attribute among its values
/// (`user_data_sha256`: a last-applied value Terraform's state knows only by its hash) stands
/// for its write-only attribute, which then compares by that hash.
fn compared_attributes<'d>(schema: &'d ResourceSchema, d: &'d DesiredResource) -> Vec<&'d str> {
    let mut only: Vec<&str> = d.attributes.keys().map(String::as_str).collect();
    for attr in schema.attributes.iter().filter(|a| a.hash_attribute.is_some()) {
        let Some(at) = only.iter().position(|k| Some(*k) == attr.hash_attribute.as_deref()) else { continue };
        if only.contains(&attr.name.as_str()) {
            only.remove(at);
        } else {
            only[at] = &attr.name;
        }
    }
    only
}

fn summarise(resources: &[ResourceReport], ignored: usize, managed: usize, live_total: usize) -> Summary {
    let mut by_severity = BySeverity::default();
    let count = |s: Status| resources.iter().filter(|r| r.status == s).count();
    for r in resources {
        if let (Some(severity), false) = (r.severity, r.status == Status::InSync) {
            by_severity.add(severity);
        }
    }
    Summary {
        resources: resources.len(),
        in_sync: count(Status::InSync),
        drifted: count(Status::Drifted),
        missing: count(Status::Missing),
        unmanaged: count(Status::Unmanaged),
        ignored,
        coverage: if live_total == 0 { 1.0 } else { round4(managed as f64 / live_total as f64) },
        by_severity,
        three_way: {
            let mut t = crate::report::ThreeWayCounts::default();
            resources.iter().for_each(|r| t.add(r.three_way));
            t
        },
    }
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn desired(kind: Kind, name: &str, attrs: Value) -> DesiredResource {
        let mut attributes = attrs.as_object().expect("object").clone();
        attributes.insert("name".into(), json!(name));
        DesiredResource { address: format!("{}.{name}", kind.terraform_type()), kind, name: name.into(), attributes, unknown: vec![] }
    }

    fn live(kind: Kind, id: &str, name: &str, attrs: Value) -> LiveObject {
        let mut fields = attrs.as_object().expect("object").clone();
        fields.insert("name".into(), json!(name));
        fields.insert("id".into(), json!(id));
        fields.insert("version".into(), json!(3));
        LiveObject { kind, fields }
    }

    fn vm_attrs(memory: i64, env: &str) -> Value {
        json!({"cpu_cores": 2, "memory_gb": memory, "template_id": "tpl-1", "network_id": "net-1", "metadata": {"env": env}})
    }

    #[test]
    fn in_sync_drifted_missing_unmanaged() {
        let d = [desired(Kind::Vm, "web", vm_attrs(4, "prod")), desired(Kind::Vm, "db", vm_attrs(8, "prod")), desired(Kind::Vm, "gone", vm_attrs(8, "prod"))];
        let mut web_live = vm_attrs(4, "prod");
        web_live["status"] = json!("running");
        let l = [
            live(Kind::Vm, "vm-1", "web", web_live),
            live(Kind::Vm, "vm-2", "db", vm_attrs(16, "dev")),
            live(Kind::Network, "net-9", "stray", json!({"cidr": "10.9.0.0/24"})),
        ];
        let r = compute_drift(&d, &l, &IgnoreRules::default());
        let s = &r.summary;
        assert_eq!((s.resources, s.in_sync, s.drifted, s.missing, s.unmanaged), (4, 1, 1, 1, 1));
        assert_eq!(s.coverage, 0.6667);
        let db = r.resources.iter().find(|e| e.name == "db").expect("db");
        assert_eq!(db.status, Status::Drifted);
        let paths: Vec<(&str, Severity)> = db.changes.iter().map(|c| (c.path.as_str(), c.severity)).collect();
        assert_eq!(paths, [("memory_gb", Severity::Medium), ("metadata.env", Severity::Low)]);
        assert_eq!(db.severity, Some(Severity::Medium));
        assert_eq!(db.drift_percentage, 0.4);
        assert_ne!(db.desired_hash, db.live_hash);
        let gone = r.resources.iter().find(|e| e.name == "gone").expect("gone");
        assert_eq!((gone.status, gone.severity), (Status::Missing, Some(Severity::High)));
        let stray = r.resources.iter().find(|e| e.name == "stray").expect("stray");
        assert_eq!((stray.status, stray.severity, stray.address.as_str()), (Status::Unmanaged, Some(Severity::Info), "novacron_network.stray"));
        assert_eq!(s.by_severity, BySeverity { critical: 0, high: 1, medium: 1, low: 0, info: 1 });
        let web = r.resources.iter().find(|e| e.name == "web").expect("web");
        assert_eq!((web.status, web.severity), (Status::InSync, None));
        assert_eq!(web.desired_hash, web.live_hash);
    }

    #[test]
    fn large_inputs_compare_in_parallel_with_the_same_result() {
        let n = PARALLEL_THRESHOLD * 2;
        let d: Vec<DesiredResource> = (0..n).map(|i| desired(Kind::Vm, &format!("vm-{i}"), vm_attrs(4, "prod"))).collect();
        let l: Vec<LiveObject> =
            (0..n).map(|i| live(Kind::Vm, &format!("id-{i}"), &format!("vm-{i}"), vm_attrs(if i % 7 == 0 { 8 } else { 4 }, "prod"))).collect();
        let parallel = compute_drift(&d, &l, &IgnoreRules::default());
        let jobs: Vec<_> = d.iter().zip(l.iter()).map(|(d, l)| (d, Some(l))).collect();
        let mut sequential: Vec<ResourceReport> = jobs.iter().map(|(d, l)| compare_one(d, *l, &IgnoreRules::default())).collect();
        sequential.sort_by(|a, b| a.address.cmp(&b.address));
        assert_eq!(parallel.summary.drifted, n.div_ceil(7));
        let addresses = |r: &[ResourceReport]| r.iter().map(|e| (e.address.clone(), e.status, e.live_hash.clone())).collect::<Vec<_>>();
        assert_eq!(addresses(&parallel.resources), addresses(&sequential));
    }

    #[test]
    fn half_or_more_drifted_raises_one_level() {
        let d = [desired(Kind::Policy, "p", json!({"enforcement_mode": "block", "description": "x"}))];
        let l = [live(Kind::Policy, "pol-1", "p", json!({"enforcement_mode": "audit", "description": "x", "rule": "package x"}))];
        let r = compute_drift(&d, &l, &IgnoreRules::default());
        assert_eq!(r.resources[0].severity, Some(Severity::Critical));
        let d = [desired(Kind::Vm, "web", json!({"metadata": {"a": "1"}, "memory_gb": 4}))];
        let l = [live(Kind::Vm, "vm-1", "web", json!({"metadata": {"a": "2"}, "memory_gb": 4}))];
        let r = compute_drift(&d, &l, &IgnoreRules::default());
        assert_eq!(r.resources[0].severity, Some(Severity::Medium), "low raised: 1 of 2 drifted");
        assert_eq!(r.resources[0].drift_percentage, 0.5);
    }

    #[test]
    fn defaults_and_unconfigured_attributes_do_not_drift() {
        let d = [desired(Kind::Network, "core", json!({"cidr": "10.0.0.0/24", "mtu": 1500}))];
        let l = [live(Kind::Network, "net-1", "core", json!({"cidr": "10.0.0.0/24", "gateway": "10.0.0.1", "vlan_id": 7}))];
        let r = compute_drift(&d, &l, &IgnoreRules::default());
        assert_eq!(r.resources[0].status, Status::InSync);
    }

    #[test]
    fn ignored_changes_and_resources_are_counted_apart() {
        let d = [desired(Kind::Vm, "web", vm_attrs(4, "prod")), desired(Kind::Vm, "old", vm_attrs(4, "prod"))];
        let l = [live(Kind::Vm, "vm-1", "web", vm_attrs(4, "dev"))];
        let rules = IgnoreRules::parse("novacron_vm.*.metadata\nnovacron_vm.old\n", []);
        let r = compute_drift(&d, &l, &rules);
        assert_eq!(r.resources.len(), 1);
        assert_eq!(r.resources[0].status, Status::InSync);
        assert_eq!(r.resources[0].ignored_changes[0].path, "metadata.env");
        assert_eq!(r.ignored, [IgnoredResource { address: "novacron_vm.old".into(), rule: "novacron_vm.old".into() }]);
        assert_eq!(r.summary.ignored, 2);
    }

    #[test]
    fn write_only_user_data_compares_by_hash_and_stays_hidden() {
        let secret = "#cloud-config\npassword: hunter2\n";
        let d = [desired(Kind::Vm, "web", json!({"user_data": secret}))];
        let l = [live(Kind::Vm, "vm-1", "web", json!({"user_data_sha256": novacron_schemas::sha256_hex(b"other")}))];
        let r = compute_drift(&d, &l, &IgnoreRules::default());
        let text = serde_json::to_string(&r.resources).expect("json");
        assert!(!text.contains("hunter2"));
        assert!(!format!("{d:?}").contains("hunter2"), "Debug hides values");
        assert_eq!(r.resources[0].changes[0].path, "user_data");
        let l = [live(Kind::Vm, "vm-1", "web", json!({"user_data_sha256": novacron_schemas::sha256_hex(secret.as_bytes())}))];
        assert_eq!(compute_drift(&d, &l, &IgnoreRules::default()).resources[0].status, Status::InSync);
    }
}
