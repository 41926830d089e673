//! The sync planner: findings, approvals and thresholds in, decisions out. No I/O: the executor
//! in `sync/mod.rs` carries the decisions out and records them.

use novacron_schemas::Severity;
use serde::Serialize;

use super::{AutoApplyMax, AutoSyncMax};

/// One drifted resource (live moved away from the last applied or desired values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftFinding {
    /// The stable drift id.
    pub drift_id: String,
    /// The resource address.
    pub address: String,
    /// Its severity.
    pub severity: Severity,
    /// Why a PATCH cannot put it back, when it cannot.
    pub not_revertible: Option<String>,
}

/// What the Terraform plan of a pending rollout holds, graded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutFinding {
    /// The plan's id (`plan-<12 hex>`).
    pub plan_id: String,
    /// The highest severity among its changes; `None` for a plan without changes.
    pub severity: Option<Severity>,
    /// Deletes (and replacements count as their create here, graded high).
    pub deletes: usize,
    /// Addresses the plan changes that are in conflict (both sides moved).
    pub conflicts: Vec<String>,
}

/// Everything one run found that a decision can be made on.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// Drifted resources (not in conflict).
    pub drifts: Vec<DriftFinding>,
    /// Resources in conflict (reported, never acted on).
    pub conflicts: Vec<String>,
    /// The planned rollout, when Git moved.
    pub rollout: Option<RolloutFinding>,
    /// Desired equals live but the state is behind: refresh it.
    pub state_behind: bool,
}

/// Who approved what.
#[derive(Debug, Clone, Default)]
pub struct Approvals {
    /// Approved drift ids and who approved each.
    pub drifts: Vec<(String, String)>,
    /// Approved plan ids and who approved each.
    pub plans: Vec<(String, String)>,
}

impl Approvals {
    fn drift(&self, id: &str) -> Option<&str> {
        self.drifts.iter().find(|(d, _)| d == id).map(|(_, by)| by.as_str())
    }

    fn plan(&self, id: &str) -> Option<&str> {
        self.plans.iter().find(|(p, _)| p == id).map(|(_, by)| by.as_str())
    }
}

/// The thresholds in force.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Drift reverted without approval up to this.
    pub auto_sync_max: AutoSyncMax,
    /// Rollouts applied without approval up to this.
    pub auto_apply_max: AutoApplyMax,
    /// Deletes may be applied.
    pub prune: bool,
}

/// Why a plan waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason", content = "detail")]
pub enum HoldReason {
    /// Above `auto_apply_max` (or critical) and not approved.
    AwaitingApproval(Severity),
    /// It deletes objects and prune is off (an approval does not change that).
    DeletesNeedPrune(usize),
    /// It changes resources that also drifted: a person decides.
    Conflict(Vec<String>),
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HoldReason::AwaitingApproval(s) => write!(f, "awaiting approval: the plan is {s}"),
            HoldReason::DeletesNeedPrune(1) => f.write_str("it deletes 1 object and prune is off (--prune, serve key prune)"),
            HoldReason::DeletesNeedPrune(n) => write!(f, "it deletes {n} objects and prune is off (--prune, serve key prune)"),
            HoldReason::Conflict(addresses) => write!(f, "conflict: {} changed both in Git and on the platform", addresses.join(", ")),
        }
    }
}

/// One thing to do (or not to do), in the order the executor carries them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bring Terraform's state up to date (`apply -refresh-only`): desired already equals live.
    RefreshState,
    /// Apply the saved plan.
    ApplyPlan {
        /// The plan.
        plan_id: String,
        /// Who approved it; `None` when the thresholds allow it.
        approved_by: Option<String>,
    },
    /// Keep the saved plan pending.
    HoldPlan {
        /// The plan.
        plan_id: String,
        /// Why.
        reason: HoldReason,
    },
    /// Put a drifted resource back.
    Revert {
        /// The drift.
        drift_id: String,
        /// Who approved it; `None` when the threshold allows it.
        approved_by: Option<String>,
    },
    /// Leave a drift for a person (approval or the codify pull request).
    AwaitDrift {
        /// The drift.
        drift_id: String,
    },
    /// A drift that a PATCH cannot put back (codify it, or let Terraform replace).
    CannotRevert {
        /// The drift.
        drift_id: String,
        /// Why.
        reason: String,
    },
}

/// Decides what a sync does. The rollout comes first (Git is the desired state); drift on other
/// resources is reverted in the same run, since the rollout's plan never touches them.
pub fn plan_sync(findings: &Findings, approvals: &Approvals, thresholds: &Thresholds) -> Vec<Decision> {
    let mut out = Vec::new();
    if findings.state_behind {
        out.push(Decision::RefreshState);
    }
    if let Some(r) = findings.rollout.as_ref().filter(|r| r.severity.is_some()) {
        let severity = r.severity.unwrap_or(Severity::Info);
        let approved_by = approvals.plan(&r.plan_id).map(str::to_string);
        let decision = if !r.conflicts.is_empty() {
            Decision::HoldPlan { plan_id: r.plan_id.clone(), reason: HoldReason::Conflict(r.conflicts.clone()) }
        } else if r.deletes > 0 && !thresholds.prune {
            Decision::HoldPlan { plan_id: r.plan_id.clone(), reason: HoldReason::DeletesNeedPrune(r.deletes) }
        } else if approved_by.is_some() || thresholds.auto_apply_max.allows(severity) {
            Decision::ApplyPlan { plan_id: r.plan_id.clone(), approved_by }
        } else {
            Decision::HoldPlan { plan_id: r.plan_id.clone(), reason: HoldReason::AwaitingApproval(severity) }
        };
        out.push(decision);
    }
    for d in &findings.drifts {
        let approved_by = approvals.drift(&d.drift_id).map(str::to_string);
        if approved_by.is_none() && !thresholds.auto_sync_max.allows(d.severity) {
            out.push(Decision::AwaitDrift { drift_id: d.drift_id.clone() });
        } else if let Some(reason) = &d.not_revertible {
            out.push(Decision::CannotRevert { drift_id: d.drift_id.clone(), reason: reason.clone() });
        } else {
            out.push(Decision::Revert { drift_id: d.drift_id.clone(), approved_by });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Thresholds = Thresholds { auto_sync_max: AutoSyncMax::Low, auto_apply_max: AutoApplyMax::Medium, prune: false };

    fn rollout(severity: Severity, deletes: usize, conflicts: &[&str]) -> Option<RolloutFinding> {
        Some(RolloutFinding { plan_id: "plan-1".into(), severity: Some(severity), deletes, conflicts: conflicts.iter().map(|s| s.to_string()).collect() })
    }

    fn drift(id: &str, severity: Severity) -> DriftFinding {
        DriftFinding { drift_id: id.into(), address: format!("novacron_vm.{id}"), severity, not_revertible: None }
    }

    #[test]
    fn a_medium_rollout_applies_at_the_defaults_a_high_one_waits() {
        let f = Findings { rollout: rollout(Severity::Medium, 0, &[]), ..Findings::default() };
        assert_eq!(plan_sync(&f, &Approvals::default(), &DEFAULTS), [Decision::ApplyPlan { plan_id: "plan-1".into(), approved_by: None }]);
        let f = Findings { rollout: rollout(Severity::High, 0, &[]), ..Findings::default() };
        assert_eq!(
            plan_sync(&f, &Approvals::default(), &DEFAULTS),
            [Decision::HoldPlan { plan_id: "plan-1".into(), reason: HoldReason::AwaitingApproval(Severity::High) }]
        );
    }

    #[test]
    fn critical_never_applies_by_itself_but_an_approval_applies_it() {
        let f = Findings { rollout: rollout(Severity::Critical, 0, &[]), ..Findings::default() };
        let all = Thresholds { auto_apply_max: AutoApplyMax::High, ..DEFAULTS };
        assert!(matches!(plan_sync(&f, &Approvals::default(), &all)[0], Decision::HoldPlan { .. }));
        let approvals = Approvals { plans: vec![("plan-1".into(), "alice".into())], ..Approvals::default() };
        assert_eq!(plan_sync(&f, &approvals, &all), [Decision::ApplyPlan { plan_id: "plan-1".into(), approved_by: Some("alice".into()) }]);
        let other = Approvals { plans: vec![("plan-2".into(), "alice".into())], ..Approvals::default() };
        assert!(matches!(plan_sync(&f, &other, &all)[0], Decision::HoldPlan { .. }), "an approval is for one plan only");
    }

    #[test]
    fn deletes_need_prune_even_when_approved_and_conflicts_hold_everything() {
        let f = Findings { rollout: rollout(Severity::High, 1, &[]), ..Findings::default() };
        let approvals = Approvals { plans: vec![("plan-1".into(), "alice".into())], ..Approvals::default() };
        assert_eq!(plan_sync(&f, &approvals, &DEFAULTS), [Decision::HoldPlan { plan_id: "plan-1".into(), reason: HoldReason::DeletesNeedPrune(1) }]);
        let pruning = Thresholds { prune: true, ..DEFAULTS };
        assert_eq!(plan_sync(&f, &approvals, &pruning), [Decision::ApplyPlan { plan_id: "plan-1".into(), approved_by: Some("alice".into()) }]);
        assert!(matches!(plan_sync(&f, &Approvals::default(), &pruning)[0], Decision::HoldPlan { reason: HoldReason::AwaitingApproval(_), .. }));
        let f = Findings { rollout: rollout(Severity::Low, 0, &["novacron_vm.web"]), ..Findings::default() };
        assert_eq!(
            plan_sync(&f, &approvals, &pruning),
            [Decision::HoldPlan { plan_id: "plan-1".into(), reason: HoldReason::Conflict(vec!["novacron_vm.web".into()]) }]
        );
    }

    #[test]
    fn drift_is_reverted_up_to_its_own_threshold_beside_a_rollout() {
        let f = Findings {
            rollout: rollout(Severity::Medium, 0, &[]),
            drifts: vec![
                drift("a", Severity::Low),
                drift("b", Severity::Critical),
                DriftFinding { not_revertible: Some("immutable".into()), ..drift("c", Severity::Info) },
            ],
            ..Findings::default()
        };
        let approvals = Approvals { drifts: vec![("b".into(), "bob".into())], ..Approvals::default() };
        assert_eq!(
            plan_sync(&f, &approvals, &DEFAULTS),
            [
                Decision::ApplyPlan { plan_id: "plan-1".into(), approved_by: None },
                Decision::Revert { drift_id: "a".into(), approved_by: None },
                Decision::Revert { drift_id: "b".into(), approved_by: Some("bob".into()) },
                Decision::CannotRevert { drift_id: "c".into(), reason: "immutable".into() },
            ]
        );
        let none = Thresholds { auto_sync_max: AutoSyncMax::None, ..DEFAULTS };
        assert_eq!(
            plan_sync(&Findings { drifts: vec![drift("a", Severity::Info)], ..Findings::default() }, &Approvals::default(), &none),
            [Decision::AwaitDrift { drift_id: "a".into() }]
        );
    }

    #[test]
    fn a_state_behind_is_refreshed_first_and_an_empty_plan_does_nothing() {
        let f = Findings { state_behind: true, ..Findings::default() };
        assert_eq!(plan_sync(&f, &Approvals::default(), &DEFAULTS), [Decision::RefreshState]);
        let f = Findings {
            state_behind: true,
            rollout: Some(RolloutFinding { severity: None, ..rollout(Severity::Low, 0, &[]).expect("some") }),
            ..Findings::default()
        };
        assert_eq!(plan_sync(&f, &Approvals::default(), &DEFAULTS), [Decision::RefreshState]);
        let f = Findings { state_behind: true, rollout: rollout(Severity::Low, 0, &[]), ..Findings::default() };
        assert_eq!(
            plan_sync(&f, &Approvals::default(), &DEFAULTS),
            [Decision::RefreshState, Decision::ApplyPlan { plan_id: "plan-1".into(), approved_by: None }]
        );
    }
}
