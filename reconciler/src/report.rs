//! The drift report: the JSON shape DESIGN.md fixes ("Reconciler (contract)"), plus counts.

use novacron_schemas::Severity;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::threeway::{RolloutChange, RolloutKind, ThreeWay};

/// Everything one `drift` run found, in the order reports list it.
#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    /// The commit SHA of the desired state.
    pub revision: String,
    /// When the report was made (RFC 3339, UTC).
    pub generated_at: String,
    /// Counts over `resources`.
    pub summary: Summary,
    /// One entry per desired resource and per unmanaged live object, sorted by address.
    pub resources: Vec<ResourceReport>,
    /// Resources left out entirely by an ignore rule.
    pub ignored: Vec<IgnoredResource>,
    /// What could not be evaluated or compared (never counted as drift).
    pub warnings: Vec<String>,
    /// The Terraform state compared as last applied; absent when there is none (two-way comparison).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_applied: Option<LastApplied>,
}

/// The Terraform state snapshot a report used as the last-applied view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastApplied {
    /// Where it was read (`the platform's state workspace "prod"`, `state file ...`).
    pub source: String,
    /// Its serial.
    pub serial: u64,
    /// Its lineage.
    pub lineage: String,
}

/// The counts at the top of a report.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Summary {
    /// Entries in `resources`.
    pub resources: usize,
    /// Desired resources whose live object matches.
    pub in_sync: usize,
    /// Desired resources whose live object differs.
    pub drifted: usize,
    /// Desired resources with no live object.
    pub missing: usize,
    /// Live objects no desired resource names.
    pub unmanaged: usize,
    /// Ignored whole resources plus ignored attribute changes.
    pub ignored: usize,
    /// Share of live objects that the desired state manages, 0.0-1.0.
    pub coverage: f64,
    /// Entries that are not in sync, by their severity.
    pub by_severity: BySeverity,
    /// Entries by where they stand across desired, last applied and live.
    pub three_way: ThreeWayCounts,
}

/// A count per three-way classification.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ThreeWayCounts {
    /// Desired, last applied and live agree.
    pub in_sync: usize,
    /// Git moved; the rollout is pending.
    pub rollout_pending: usize,
    /// The platform moved out of band.
    pub drift: usize,
    /// Both moved.
    pub conflict: usize,
}

impl ThreeWayCounts {
    /// Counts one entry.
    pub fn add(&mut self, t: ThreeWay) {
        match t {
            ThreeWay::InSync => self.in_sync += 1,
            ThreeWay::RolloutPending => self.rollout_pending += 1,
            ThreeWay::Drift => self.drift += 1,
            ThreeWay::Conflict => self.conflict += 1,
        }
    }
}

/// A count per severity, highest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct BySeverity {
    /// Critical entries.
    pub critical: usize,
    /// High entries.
    pub high: usize,
    /// Medium entries.
    pub medium: usize,
    /// Low entries.
    pub low: usize,
    /// Info entries.
    pub info: usize,
}

impl BySeverity {
    /// Counts one entry of `severity`.
    pub fn add(&mut self, severity: Severity) {
        *self.slot(severity) += 1;
    }

    /// The count of one severity.
    pub fn get(&self, severity: Severity) -> usize {
        match severity {
            Severity::Critical => self.critical,
            Severity::High => self.high,
            Severity::Medium => self.medium,
            Severity::Low => self.low,
            Severity::Info => self.info,
        }
    }

    fn slot(&mut self, severity: Severity) -> &mut usize {
        match severity {
            Severity::Critical => &mut self.critical,
            Severity::High => &mut self.high,
            Severity::Medium => &mut self.medium,
            Severity::Low => &mut self.low,
            Severity::Info => &mut self.info,
        }
    }
}

/// Where a resource stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Desired and live agree (ignored differences aside).
    InSync,
    /// Desired and live differ.
    Drifted,
    /// Desired, but no live object has its kind and name.
    Missing,
    /// Live, but no desired resource names it.
    Unmanaged,
}

impl Status {
    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InSync => "in_sync",
            Status::Drifted => "drifted",
            Status::Missing => "missing",
            Status::Unmanaged => "unmanaged",
        }
    }
}

/// One resource's entry.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    /// `novacron_vm.web`, `module.app.novacron_vm.this[0]`; unmanaged objects get `type.name`.
    pub address: String,
    /// The Terraform type, e.g. `novacron_vm`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// The object's name (the match key).
    pub name: String,
    /// The live object's id, when there is one.
    pub id: Option<String>,
    /// Where it stands.
    pub status: Status,
    /// How much it matters; `null` when in sync.
    pub severity: Option<Severity>,
    /// `sha256:` of the desired canonical form (configured attributes only).
    pub desired_hash: Option<String>,
    /// `sha256:` of the live canonical form (the same attributes).
    pub live_hash: Option<String>,
    /// Share of configured attributes that drifted, 0.0-1.0.
    pub drift_percentage: f64,
    /// Differences that count, sorted by path.
    pub changes: Vec<Change>,
    /// Differences an ignore rule set aside.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored_changes: Vec<Change>,
    /// Configured attributes whose value could not be evaluated, left out of the comparison.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<String>,
    /// Which side moved: Git (a pending rollout), the platform (drift), both (conflict), or neither.
    pub three_way: ThreeWay,
    /// What a pending rollout does to it (create, update or delete), when one is pending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutKind>,
    /// Desired vs last applied: what the pending rollout changes, as the reconciler sees it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollout_changes: Vec<RolloutChange>,
    /// Desired equals live but Terraform's state is behind (it is refreshed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub state_behind: bool,
    /// Who made the newest out-of-band change, and when (from the platform's change feed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<ChangedBy>,
}

/// The newest platform event on a drifted object: who changed it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedBy {
    /// The API key name that made the change.
    pub actor: String,
    /// When (RFC 3339).
    pub time: String,
    /// `create`, `update` or `delete`.
    pub action: String,
}

impl ResourceReport {
    /// An entry with nothing compared yet.
    pub fn new(address: String, resource_type: String, name: String) -> ResourceReport {
        ResourceReport {
            address,
            resource_type,
            name,
            id: None,
            status: Status::Missing,
            severity: None,
            desired_hash: None,
            live_hash: None,
            drift_percentage: 0.0,
            changes: Vec::new(),
            ignored_changes: Vec::new(),
            unknown: Vec::new(),
            three_way: ThreeWay::InSync,
            rollout: None,
            rollout_changes: Vec::new(),
            state_behind: false,
            changed_by: None,
        }
    }
}

/// One field-level difference.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Change {
    /// Path in HCL terms: `memory_gb`, `metadata.env`, `firewall_rule[1].ports`.
    pub path: String,
    /// The desired value (`null` when absent); `"(sensitive)"` for sensitive attributes.
    pub desired: Value,
    /// The live value (`null` when absent); `"(sensitive)"` for sensitive attributes.
    pub live: Value,
    /// The attribute's drift severity from `schemas/`.
    pub severity: Severity,
    /// True when the values are hidden because the attribute is sensitive.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

/// A resource an ignore rule left out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IgnoredResource {
    /// Its address.
    pub address: String,
    /// The rule that matched.
    pub rule: String,
}

impl DriftReport {
    /// True when anything counts as drift: the platform moved (drift or conflict). With
    /// Terraform state a pending rollout is not drift; without it every difference is.
    pub fn has_drift(&self) -> bool {
        self.summary.three_way.drift + self.summary.three_way.conflict > 0
    }
}

/// Formats seconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339_from_unix(secs: u64) -> String {
    novacron_schemas::wire::rfc3339_secs(i64::try_from(secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_unix_time() {
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_795_320_584), "2026-11-22T04:09:44Z");
        assert_eq!(rfc3339_from_unix(951_782_400), "2000-02-29T00:00:00Z");
    }
}
