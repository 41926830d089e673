//! Terraform state kept by the platform (`/v1/tfstate/{workspace}`): the current state, the lock holder and the stored versions.
//!
//! Read-only on purpose: Terraform itself writes and locks state through its `backend "http"`;
//! the reconciler only needs to see what Terraform last applied and who holds the lock.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Terraform's lock info, as the holder of a workspace's lock sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// The lock id (what `terraform force-unlock` takes).
    #[serde(rename = "ID")]
    pub id: String,
    /// The Terraform operation holding it, e.g. `OperationTypeApply`.
    #[serde(rename = "Operation", default)]
    pub operation: String,
    /// Free text the holder attached.
    #[serde(rename = "Info", default)]
    pub info: String,
    /// `user@host` of the holder.
    #[serde(rename = "Who", default)]
    pub who: String,
    /// The holder's Terraform version.
    #[serde(rename = "Version", default)]
    pub version: String,
    /// When the lock was taken (RFC 3339).
    #[serde(rename = "Created", default)]
    pub created: String,
    /// The state path, often empty for this backend.
    #[serde(rename = "Path", default)]
    pub path: String,
}

/// A workspace's current Terraform state: the body exactly as stored and its parsed JSON.
/// State holds secrets, so `Debug` shows only serial, lineage and size.
#[derive(Clone, PartialEq)]
pub struct TerraformState {
    /// The body as Terraform wrote it.
    pub raw: Vec<u8>,
    /// The body parsed.
    pub json: Value,
}

impl TerraformState {
    /// The state's `serial` (bumped by Terraform on every write).
    pub fn serial(&self) -> Option<u64> {
        self.json.get("serial").and_then(Value::as_u64)
    }

    /// The state's `lineage` (fixed when the state was first created).
    pub fn lineage(&self) -> Option<&str> {
        self.json.get("lineage").and_then(Value::as_str)
    }
}

impl fmt::Debug for TerraformState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerraformState").field("serial", &self.serial()).field("lineage", &self.lineage()).field("bytes", &self.raw.len()).finish()
    }
}

/// One stored version of a workspace's state (never its body).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StateVersion {
    /// The state's `serial`, when the body had one.
    pub serial: Option<u64>,
    /// The state's `lineage`, when the body had one.
    pub lineage: Option<String>,
    /// When it was stored (RFC 3339, UTC).
    pub time: String,
    /// The name of the API key that stored it.
    pub actor: String,
    /// SHA-256 of the body, hex.
    pub sha256: String,
    /// Body size in bytes.
    pub size: u64,
}

/// The answer of `GET /v1/tfstate/{workspace}/versions`.
#[derive(Debug, Deserialize)]
pub(crate) struct WireVersions {
    pub(crate) items: Vec<StateVersion>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lock_info_reads_terraform_member_names() {
        let info: LockInfo =
            serde_json::from_value(json!({"ID": "a-1", "Operation": "OperationTypePlan", "Who": "me@host", "Created": "t", "Extra": 1})).expect("lock info");
        assert_eq!(
            (info.id.as_str(), info.operation.as_str(), info.who.as_str(), info.created.as_str(), info.version.as_str()),
            ("a-1", "OperationTypePlan", "me@host", "t", "")
        );
    }

    #[test]
    fn state_debug_hides_the_body() {
        let state = TerraformState {
            raw: br#"{"serial":3,"lineage":"l","outputs":{"pw":"hunter2"}}"#.to_vec(),
            json: json!({"serial": 3, "lineage": "l", "outputs": {"pw": "hunter2"}}),
        };
        assert_eq!((state.serial(), state.lineage()), (Some(3), Some("l")));
        let shown = format!("{state:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("serial: Some(3)"), "{shown}");
    }
}
