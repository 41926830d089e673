//! The one severity threshold of `sync` and `serve`: the highest drift (`--auto-sync-max`,
//! `auto_sync_max`) or plan (`--auto-apply-max`, `auto_apply_max`) severity acted on without approval.

use clap::builder::PossibleValue;
use novacron_schemas::Severity;
use serde::{Deserialize, Serialize};

/// The highest severity acted on without approval (`critical` never is). Written `none`,
/// `info`, `low`, `medium` or `high` on the command line and in the serve config alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// Nothing is acted on without approval.
    None,
    /// Only `info`.
    Info,
    /// Up to `low` (the drift default).
    Low,
    /// Up to `medium` (the rollout default: creates and most updates roll out by themselves).
    Medium,
    /// Up to `high` (for rollouts: replacements and, with prune, deletes).
    High,
}

/// The drift threshold: drift reverted without approval up to this.
pub type AutoSyncMax = Threshold;
/// The rollout threshold: plans applied without approval up to this.
pub type AutoApplyMax = Threshold;

impl Threshold {
    /// Whether a drift or plan of `severity` is acted on without approval.
    pub fn allows(self, severity: Severity) -> bool {
        let max = match self {
            Threshold::None => return false,
            Threshold::Info => Severity::Info,
            Threshold::Low => Severity::Low,
            Threshold::Medium => Severity::Medium,
            Threshold::High => Severity::High,
        };
        severity != Severity::Critical && severity <= max
    }
}

// Written out rather than derived: the derive would turn the variants' doc comments into
// per-value help, and `--help` would then list the values one per line instead of as
// `[possible values: none, info, low, medium, high]`.
impl clap::ValueEnum for Threshold {
    fn value_variants<'a>() -> &'a [Self] {
        &[Threshold::None, Threshold::Info, Threshold::Low, Threshold::Medium, Threshold::High]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(match self {
            Threshold::None => "none",
            Threshold::Info => "info",
            Threshold::Low => "low",
            Threshold::Medium => "medium",
            Threshold::High => "high",
        }))
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn the_command_line_and_the_config_spell_it_alike() {
        for t in Threshold::value_variants() {
            let flag = t.to_possible_value().expect("every variant has a name");
            let config: Threshold = serde_json::from_value(serde_json::json!(flag.get_name())).expect("the config takes the flag's spelling");
            assert_eq!(&config, t);
            assert_eq!(serde_json::to_value(t).expect("encodes"), serde_json::json!(flag.get_name()));
            assert_eq!(Threshold::from_str(flag.get_name(), false), Ok(*t));
        }
    }
}
