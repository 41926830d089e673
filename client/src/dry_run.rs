//! The answer to a dry run (`?dry_run=true`): the object a write would store and each policy's verdict on it.

use serde::{Deserialize, Serialize};

/// What a dry-run create or update answered: nothing was written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "WireDryRun")]
pub struct DryRun {
    /// The object as the write would store it, in the shape a GET returns (write-only values
    /// such as `user_data` are absent). A dry-run create's object has no `id`.
    pub object: serde_json::Value,
    /// False when a `block` policy denies: the real write would be refused with 403.
    pub allowed: bool,
    /// The verdict of every enabled policy that reported violations, in the order admission
    /// evaluates them (highest priority first). Policies that admit the write are not listed.
    pub verdicts: Vec<PolicyVerdict>,
}

/// One policy's verdict in a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVerdict {
    /// The policy's name.
    pub policy: String,
    /// `block`, `warn` or `audit`: how a real write would enforce the messages.
    pub mode: String,
    /// The violation messages (or why the policy could not be evaluated).
    pub messages: Vec<String>,
}

impl PolicyVerdict {
    /// Whether this verdict refuses the write.
    pub fn blocks(&self) -> bool {
        self.mode == "block"
    }
}

/// The wire form: `allowed` is this platform's addition to the contract's `{object, verdicts}`,
/// so a server without it is read by deriving it from the verdicts.
#[derive(Deserialize)]
struct WireDryRun {
    object: serde_json::Value,
    #[serde(default)]
    allowed: Option<bool>,
    #[serde(default)]
    verdicts: Vec<PolicyVerdict>,
}

impl From<WireDryRun> for DryRun {
    fn from(wire: WireDryRun) -> Self {
        let allowed = wire.allowed.unwrap_or_else(|| !wire.verdicts.iter().any(PolicyVerdict::blocks));
        DryRun { object: wire.object, allowed, verdicts: wire.verdicts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_decode_with_and_without_allowed() {
        let verdicts = json!([{"policy": "max-cores", "mode": "block", "messages": ["too many cores"]}]);
        let full: DryRun = serde_json::from_value(json!({"object": {"name": "big"}, "allowed": false, "verdicts": verdicts})).expect("decodes");
        assert_eq!(full.verdicts, vec![PolicyVerdict { policy: "max-cores".into(), mode: "block".into(), messages: vec!["too many cores".into()] }]);
        assert!(!full.allowed);
        let bare: DryRun = serde_json::from_value(json!({"object": {"name": "big"}, "verdicts": verdicts})).expect("decodes");
        assert_eq!(bare, full, "allowed is derived from the verdicts when absent");
        let admitted: DryRun = serde_json::from_value(json!({"object": {}, "verdicts": []})).expect("decodes");
        assert!(admitted.allowed);
        assert_eq!(serde_json::to_value(&full).expect("serializes"), json!({"object": {"name": "big"}, "allowed": false, "verdicts": verdicts}));
    }
}
