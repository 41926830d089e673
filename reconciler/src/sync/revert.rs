//! One revert: the merge patch of the drifted attributes, journalled and audited, sent with If-Match, and the 412 path.

use std::collections::BTreeSet;

use novacron_schemas::{AttrType, Kind, ResourceSchema};
use serde_json::{Map, Value, json};

use crate::diff::top_level;
use crate::drift::{DesiredResource, LiveObject, compute_drift};
use crate::ignore::IgnoreRules;
use crate::live::{PatchOutcome, PlatformApi, etag_of};
use crate::report::{ResourceReport, Status};
use crate::state::{AuditAction, AuditEntry, JournalEntry, JournalOutcome, JournalState, StateDb, StateError, audit_append, journal_finish, journal_intent};

/// Set to `after-intent` or `after-patch` (tests only): the sync stops there and sleeps, so a
/// test can kill the process at that point.
pub const TEST_PAUSE_ENV: &str = "NOVACRON_RECONCILE_TEST_PAUSE";

/// How one revert ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertResult {
    /// The PATCH was applied.
    Applied,
    /// The object was already as desired when re-read.
    AlreadyInSync,
    /// Someone changed the drifted attributes meanwhile; nothing was written.
    Conflict(String),
}

/// Why a revert failed (the platform, or the state database).
#[derive(Debug, thiserror::Error)]
pub enum RevertError {
    /// The platform refused or failed.
    #[error("{address}: revert failed: {detail}")]
    Platform {
        /// The resource.
        address: String,
        /// What the platform said (never a sensitive value).
        detail: String,
    },
    /// The journal or audit log could not be written; nothing was sent.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The top-level API attributes a set of changes touches (`firewall_rule[1].ports` -> `firewall_rules`).
pub fn drifted_attributes(schema: &ResourceSchema, entry: &ResourceReport) -> Vec<String> {
    let mut out = BTreeSet::new();
    for change in &entry.changes {
        let top = top_level(&change.path);
        let name =
            schema.attributes.iter().find(|a| matches!(&a.ty, AttrType::Blocks { block_name, .. } if block_name == top)).map_or(top, |a| a.name.as_str());
        out.insert(name.to_string());
    }
    out.into_iter().collect()
}

/// Why these attributes cannot be put back with a PATCH, if they cannot.
pub fn not_revertible(schema: &ResourceSchema, desired: &DesiredResource, live: &LiveObject, attributes: &[String]) -> Option<String> {
    for name in attributes {
        let Some(attr) = schema.attribute(name) else { return Some(format!("{name} is not an attribute of {}", schema.terraform_type)) };
        if attr.immutable {
            return Some(format!("{name} cannot change after create (Terraform would replace the object)"));
        }
        let Some(want) = desired.attributes.get(name) else { return Some(format!("{name} has no known desired value")) };
        match (attr.grow_only, want.as_i64(), live.fields.get(name).and_then(Value::as_i64)) {
            (true, Some(w), Some(l)) if w < l => return Some(format!("{name} can only grow ({l} live, {w} desired)")),
            _ => {}
        }
    }
    None
}

/// The merge patch putting `attributes` back to their desired values. Map keys that exist only
/// live are removed with `null` (a merge patch would otherwise keep them).
pub fn revert_patch(schema: &ResourceSchema, desired: &DesiredResource, live: &LiveObject, attributes: &[String]) -> Value {
    let mut patch = Map::new();
    for name in attributes {
        let want = desired.attributes.get(name).cloned().unwrap_or(Value::Null);
        let is_map = schema.attribute(name).is_some_and(|a| matches!(a.ty, AttrType::Map(_)));
        let value = match (is_map, want, live.fields.get(name)) {
            (true, Value::Object(mut want), Some(Value::Object(have))) => {
                for key in have.keys() {
                    want.entry(key.clone()).or_insert(Value::Null);
                }
                Value::Object(want)
            }
            (_, want, _) => want,
        };
        patch.insert(name.clone(), value);
    }
    Value::Object(patch)
}

/// What the revert needs to know.
pub struct RevertJob<'a> {
    /// The drift id.
    pub drift_id: &'a str,
    /// The repository (redacted).
    pub repo: &'a str,
    /// Who.
    pub actor: &'a str,
    /// The drift as detected.
    pub entry: &'a ResourceReport,
    /// The desired resource.
    pub desired: &'a DesiredResource,
    /// The live object as compared (its version is the ETag).
    pub live: &'a LiveObject,
    /// The attributes to put back.
    pub attributes: &'a [String],
    /// The ignore rules, for the re-diff.
    pub rules: &'a IgnoreRules,
}

/// Journals the intent with its audit entry (one transaction), sends the PATCH with If-Match,
/// and records the outcome with its audit entry (one transaction).
/// On 412 the object is re-read and re-compared: the PATCH is sent again only when the
/// configured attributes are as they were compared (the same revert is still right).
pub async fn revert(job: &RevertJob<'_>, api: &impl PlatformApi, db: &StateDb) -> Result<RevertResult, RevertError> {
    let kind = job.desired.kind;
    let schema = kind.schema();
    let object_id = job.live.id().to_string();
    let sensitive = job.attributes.iter().any(|a| schema.attribute(a).is_some_and(|x| x.sensitive));
    let mut live = job.live.clone();
    for attempt in 0..2 {
        let etag = etag_of(&live);
        let patch = revert_patch(schema, job.desired, &live, job.attributes);
        let entry = JournalEntry {
            seq: 0,
            drift_id: job.drift_id.to_string(),
            repo: job.repo.to_string(),
            address: job.entry.address.clone(),
            kind: kind.terraform_type().to_string(),
            object_id: object_id.clone(),
            etag: etag.clone(),
            attributes: job.attributes.to_vec(),
            state: JournalState::Intent,
            outcome: None,
        };
        let seq = journal_intent(
            db,
            &entry,
            entry_of(
                job,
                AuditAction::Sync,
                json!({"phase": "intent", "drift_id": job.drift_id, "object_id": object_id, "attributes": job.attributes, "if_match": etag}),
            ),
        )?;
        test_pause("after-intent", &job.entry.address).await;
        let outcome = api.patch_object(kind, &object_id, &patch, &etag).await;
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                let detail =
                    if sensitive { "the platform refused the change (details hidden: a sensitive attribute is involved)".to_string() } else { e.to_string() };
                journal_finish(
                    db,
                    seq,
                    JournalOutcome::Failed,
                    Some(entry_of(job, AuditAction::Error, json!({"stage": "sync", "drift_id": job.drift_id, "object_id": object_id, "error": detail}))),
                )?;
                return Err(RevertError::Platform { address: job.entry.address.clone(), detail });
            }
        };
        match outcome {
            PatchOutcome::Applied(now) => {
                test_pause("after-patch", &job.entry.address).await;
                let done = entry_of(
                    job,
                    AuditAction::Sync,
                    json!({"phase": "done", "outcome": "applied", "drift_id": job.drift_id, "object_id": object_id, "version": now.fields.get("version")}),
                );
                journal_finish(db, seq, JournalOutcome::Applied, Some(done))?;
                return Ok(RevertResult::Applied);
            }
            PatchOutcome::Stale => {
                journal_finish(db, seq, JournalOutcome::Stale, None)?;
                let reread = reread(api, kind, &object_id, &job.entry.address).await?;
                let verdict = match &reread {
                    None => Verdict::Conflict("the object was deleted meanwhile".into()),
                    Some(now) => rediff(job, now),
                };
                match verdict {
                    Verdict::InSync => {
                        audit(
                            db,
                            job,
                            AuditAction::Sync,
                            json!({"phase": "done", "outcome": "already_in_sync", "drift_id": job.drift_id, "object_id": object_id}),
                        )?;
                        return Ok(RevertResult::AlreadyInSync);
                    }
                    Verdict::Same if attempt == 0 => {
                        live = reread.unwrap_or(live);
                        continue;
                    }
                    Verdict::Same => return conflict(db, job, &object_id, "the object kept changing during the sync".into()),
                    Verdict::Conflict(why) => return conflict(db, job, &object_id, why),
                }
            }
        }
    }
    conflict(db, job, &object_id, "the object kept changing during the sync".into())
}

enum Verdict {
    InSync,
    Same,
    Conflict(String),
}

/// Compares the desired resource with the re-read object: in sync, the same drift as before
/// (only unconfigured attributes changed), or something new a person has to look at.
fn rediff(job: &RevertJob<'_>, now: &LiveObject) -> Verdict {
    let result = compute_drift(std::slice::from_ref(job.desired), std::slice::from_ref(now), job.rules);
    let Some(entry) = result.resources.iter().find(|r| r.address == job.entry.address) else {
        return Verdict::Conflict("the resource disappeared from the comparison".into());
    };
    if entry.status == Status::InSync {
        Verdict::InSync
    } else if entry.live_hash == job.entry.live_hash {
        Verdict::Same
    } else {
        let paths: Vec<&str> = entry.changes.iter().map(|c| c.path.as_str()).collect();
        Verdict::Conflict(format!("changed again during the sync (now differs at {}); not overwriting what was not compared", paths.join(", ")))
    }
}

async fn reread(api: &impl PlatformApi, kind: Kind, id: &str, address: &str) -> Result<Option<LiveObject>, RevertError> {
    api.get_object(kind, id).await.map_err(|e| RevertError::Platform { address: address.to_string(), detail: format!("re-reading after 412: {e}") })
}

fn conflict(db: &StateDb, job: &RevertJob<'_>, object_id: &str, why: String) -> Result<RevertResult, RevertError> {
    audit(db, job, AuditAction::SyncConflict, json!({"drift_id": job.drift_id, "object_id": object_id, "reason": why}))?;
    Ok(RevertResult::Conflict(why))
}

fn audit(db: &StateDb, job: &RevertJob<'_>, action: AuditAction, detail: Value) -> Result<(), StateError> {
    audit_append(db, entry_of(job, action, detail)).map(|_| ())
}

fn entry_of(job: &RevertJob<'_>, action: AuditAction, detail: Value) -> AuditEntry {
    AuditEntry { actor: job.actor.to_string(), action, repo: job.repo.to_string(), subject: job.entry.address.clone(), detail }
}

/// The test hook: sleeps (until killed) when [`TEST_PAUSE_ENV`] names this point.
/// Pauses at `point` when the tests ask for it. Compiled only with the `test-hooks` feature,
/// which the test build enables; the release binary has no such hook.
#[cfg(feature = "test-hooks")]
pub(crate) async fn test_pause(point: &str, address: &str) {
    if std::env::var(TEST_PAUSE_ENV).is_ok_and(|v| v == point) {
        eprintln!("novacron-reconcile: test hook: paused {point} for {address}");
        tokio::time::sleep(std::time::Duration::from_secs(600)).await;
    }
}

/// Without the `test-hooks` feature there is nothing to pause.
#[cfg(not(feature = "test-hooks"))]
pub(crate) async fn test_pause(_point: &str, _address: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired(kind: Kind, attrs: Value) -> DesiredResource {
        DesiredResource { address: "x.y".into(), kind, name: "y".into(), attributes: attrs.as_object().expect("object").clone(), unknown: vec![] }
    }

    fn live(kind: Kind, attrs: Value) -> LiveObject {
        LiveObject { kind, fields: attrs.as_object().expect("object").clone() }
    }

    #[test]
    fn map_keys_added_live_are_removed_and_other_attributes_left_out() {
        let schema = Kind::Vm.schema();
        let d = desired(Kind::Vm, json!({"name": "y", "memory_gb": 4, "metadata": {"env": "prod"}}));
        let l = live(Kind::Vm, json!({"name": "y", "memory_gb": 8, "metadata": {"env": "dev", "owner": "eve"}}));
        let patch = revert_patch(schema, &d, &l, &["metadata".to_string()]);
        assert_eq!(patch, json!({"metadata": {"env": "prod", "owner": null}}));
    }

    #[test]
    fn immutable_and_shrinking_attributes_are_not_revertible() {
        let vol = Kind::Volume.schema();
        let d = desired(Kind::Volume, json!({"size_gb": 10, "encrypted": true}));
        let l = live(Kind::Volume, json!({"size_gb": 20, "encrypted": false}));
        assert!(not_revertible(vol, &d, &l, &["encrypted".into()]).expect("immutable").contains("cannot change"));
        assert!(not_revertible(vol, &d, &l, &["size_gb".into()]).expect("grow-only").contains("only grow"));
        let d = desired(Kind::Volume, json!({"size_gb": 30}));
        assert_eq!(not_revertible(vol, &d, &l, &["size_gb".into()]), None);
    }
}
