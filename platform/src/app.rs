//! The platform's operations on objects: create, read, list, update and delete, each write
//! one transaction with its event and idempotency record; and dry runs of create and update,
//! which do the same work in a transaction that is rolled back.
//!
//! Admission runs outside the store's lock: a create or update first drafts the object in a
//! rolled-back transaction, evaluates the enabled policies on it (in worker processes, within
//! the budget), then redoes the draft in the write transaction and commits only if the object
//! and the enabled policy set (ids and versions) are still the ones judged; otherwise it
//! judges again, at most [`JUDGE_ATTEMPTS`] times.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use novacron_schemas::{Kind, Violation, canonical_json, sha256_hex};
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::AbortHandle;

use crate::PlatformConfig;
use crate::admission::{Admitted, Budget, Mode, PolicyRow, Verdicts};
use crate::admission_worker::Evaluator;
use crate::kinds::{self, SecretChange};
use crate::limits::{Chaos, RateLimiter};
use crate::listing::{self, ListRequest};
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::store::{IdempotentAnswer, Store, StoredObject, q};
use crate::time::now_rfc3339;

/// Shared state of a running platform.
pub struct App {
    /// Settings from the command line.
    pub config: PlatformConfig,
    /// The database.
    pub store: Store,
    /// Where and within which budget policies are evaluated.
    pub admission: Evaluator,
    /// Latest event seq, for long-polling readers.
    pub events: watch::Sender<i64>,
    /// Request metrics.
    pub metrics: Metrics,
    /// `--rate-limit-rps`.
    pub limiter: Option<RateLimiter>,
    /// `--chaos-*`.
    pub chaos: Chaos,
    /// Set when shutdown begins: readiness fails and long polls return.
    pub shutting_down: watch::Sender<bool>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// The result of a write.
pub struct Written {
    /// 200, 201 or 202.
    pub status: u16,
    /// The object as stored (or as first answered, for a replay).
    pub object: StoredObject,
    /// `Warning` header texts from `warn` policies.
    pub warnings: Vec<String>,
    /// True when an idempotency key replayed an earlier answer.
    pub replayed: bool,
}

/// The answer to a dry run: what a write would store and what the policies say about it.
#[derive(Debug)]
pub struct Rehearsal {
    /// The object as it would be stored, in the public shape of a GET. A create's has no `id`:
    /// none is assigned until the object is really created.
    pub object: Map<String, Value>,
    /// Every enabled policy's verdict that reported something, in evaluation order.
    pub verdicts: Verdicts,
}

/// A write worked out inside a transaction but not yet carried out.
struct Draft {
    /// The object to store.
    object: StoredObject,
    /// Its body, parsed (the policy input and the dry-run answer).
    fields: Map<String, Value>,
    /// Write-only values to store or clear beside it.
    secrets: Vec<SecretChange>,
    /// An update that changes nothing: `object` is the stored object.
    unchanged: bool,
}

/// The result of a delete.
pub enum Removal {
    /// Gone now (204).
    Gone,
    /// Accepted; the object is `deleting` (202).
    Accepted(StoredObject),
}

fn new_id(kind: Kind) -> String {
    format!("{}-{:016x}", kind.schema().id_prefix, fastrand::u64(..))
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    ApiError::NotFound { detail: format!("no {kind} with id {id:?}") }
}

fn stored(id: &str, name: &str, version: i64, body: &Map<String, Value>) -> StoredObject {
    StoredObject { id: id.to_string(), name: name.to_string(), version, body: Value::Object(body.clone()).to_string() }
}

fn enabled_policies(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<Vec<PolicyRow>> {
    Ok(q::all(tx, "policies")?
        .into_iter()
        .filter_map(|p| {
            let f = p.fields();
            if f.get("enabled").and_then(Value::as_bool) == Some(false) {
                return None;
            }
            Some(PolicyRow {
                id: p.id,
                name: p.name,
                version: p.version,
                rule: f.get("rule")?.as_str()?.to_string(),
                mode: Mode::from_setting(f.get("enforcement_mode").and_then(Value::as_str).unwrap_or("block")),
                priority: f.get("priority").and_then(Value::as_i64).unwrap_or(100),
            })
        })
        .collect())
}

/// The policies that judge writes of `kind`: none for policies themselves.
fn policies_for(tx: &rusqlite::Transaction<'_>, kind: Kind) -> rusqlite::Result<Vec<PolicyRow>> {
    if kind == Kind::Policy { Ok(vec![]) } else { enabled_policies(tx) }
}

/// The identity of a judged policy set: ids and versions.
fn fingerprint(policies: &[PolicyRow]) -> Vec<(String, i64)> {
    let mut set: Vec<(String, i64)> = policies.iter().map(|p| (p.id.clone(), p.version)).collect();
    set.sort_unstable();
    set
}

/// How often a write is judged again when policies or the object changed meanwhile.
pub const JUDGE_ATTEMPTS: usize = 3;

fn judged_too_often() -> ApiError {
    ApiError::Unavailable {
        detail: format!("the enabled policies or the object changed during each of {JUDGE_ATTEMPTS} admission evaluations; retry the request"),
    }
}

/// The 422 for a policy whose rule misses the budget on a representative object.
fn over_budget(budget: &Budget) -> ApiError {
    ApiError::field(
        "policy",
        "rule",
        Violation::Range,
        format!(
            "the Rego module exceeds the admission budget: it {} on a representative vm, network or volume; policies run on every write, so make it cheaper",
            budget.describe()
        ),
    )
}

/// A stored idempotent answer for `key`, or 422 when the key came with another request.
fn replay(tx: &rusqlite::Transaction<'_>, kind: Kind, actor: &str, key: Option<&str>, request_hash: &str) -> Result<Option<Written>, ApiError> {
    let Some(key) = key else { return Ok(None) };
    let Some(answer) = q::idempotent_answer(tx, actor, key)? else { return Ok(None) };
    if answer.request_hash != request_hash {
        return Err(ApiError::field(
            kind.singular(),
            "Idempotency-Key",
            Violation::Format,
            "this Idempotency-Key was used with a different request; use a new key for a new request",
        ));
    }
    let fields: Map<String, Value> = serde_json::from_str(&answer.body).unwrap_or_default();
    let id = fields.get("id").and_then(Value::as_str).unwrap_or_default();
    let name = fields.get("name").and_then(Value::as_str).unwrap_or_default();
    let version = fields.get("version").and_then(Value::as_i64).unwrap_or(1);
    Ok(Some(Written { status: answer.status, object: stored(id, name, version, &fields), warnings: vec![], replayed: true }))
}

fn refuse_read_only(kind: Kind) -> Result<(), ApiError> {
    if kind.schema().read_only_kind {
        return Err(ApiError::MethodNotAllowed { detail: format!("{} are a read-only catalogue", kind.collection()) });
    }
    Ok(())
}

/// Write-only attributes a patch sets to null (their values are cleared).
fn cleared_write_only(kind: Kind, patch: &Value) -> Vec<String> {
    let schema = kind.schema();
    match patch {
        Value::Object(p) => p.iter().filter(|(k, v)| v.is_null() && schema.attribute(k).is_some_and(|a| a.write_only)).map(|(k, _)| k.clone()).collect(),
        _ => vec![],
    }
}

fn record_audits(tx: &rusqlite::Transaction<'_>, kind: Kind, id: &str, name: &str, audits: &[(String, Vec<String>)]) -> rusqlite::Result<()> {
    for (policy, messages) in audits {
        let detail = format!("policy {policy}: {}", messages.join("; "));
        q::append_event(tx, &format!("policy:{policy}"), "audit", kind.collection(), id, name, Some(&detail))?;
    }
    Ok(())
}

fn apply_secrets(tx: &rusqlite::Transaction<'_>, kind: Kind, id: &str, secrets: &[SecretChange]) -> rusqlite::Result<()> {
    for s in secrets {
        match s {
            SecretChange::Set(attr, value) => q::put_secret(tx, kind.collection(), id, attr, value)?,
            SecretChange::Clear(attr) => q::clear_secret(tx, kind.collection(), id, attr)?,
        }
    }
    Ok(())
}

impl App {
    /// Builds the state; `open` the store first.
    pub fn new(config: PlatformConfig, store: Store) -> anyhow::Result<App> {
        let last = store.read(q::last_event_seq)?;
        store.write(crate::templates::seed)?;
        let limiter = config.rate_limit_rps.map(RateLimiter::new);
        let chaos = Chaos::new(config.chaos_error_rate, config.chaos_latency, config.chaos_seed);
        let budget = Budget { time: config.admission_timeout, memory_mb: Some(config.admission_memory_mb) };
        let admission = Evaluator::new(config.admission_worker.clone(), budget);
        Ok(App {
            config,
            store,
            admission,
            events: watch::channel(last).0,
            metrics: Metrics::default(),
            limiter,
            chaos,
            shutting_down: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Wakes long-polling feed readers after a write appended events.
    pub fn notify(&self) {
        if let Ok(seq) = self.store.read(q::last_event_seq) {
            self.events.send_replace(seq);
        }
    }

    /// One object.
    pub fn get(&self, kind: Kind, id: &str) -> Result<StoredObject, ApiError> {
        self.store.read(|c| q::get(c, kind.collection(), id))?.ok_or_else(|| not_found(kind, id))
    }

    /// A page of object bodies and the token of the next page, which continues this same
    /// listing (see [`crate::listing`]).
    pub fn list(&self, kind: Kind, request: &ListRequest) -> Result<(Vec<String>, Option<String>), ApiError> {
        let (items, last) = self.store.read(|c| q::list(c, kind.collection(), request.after, request.page_size, &request.filter))?;
        Ok((items, last.map(|seq| listing::next_token(kind, &request.filter, seq))))
    }

    /// The verdicts of the enabled policies on an object as it would be stored (the public
    /// body: write-only values are never in it).
    async fn judge(&self, kind: Kind, action: &str, policies: Vec<PolicyRow>, object: &Map<String, Value>) -> Verdicts {
        self.admission.evaluate(policies, kind.singular(), action, &Value::Object(object.clone())).await
    }

    /// A policy's new `rule` must finish within the budget on a representative object of each
    /// kind (422 on `rule` otherwise): it will run on every write.
    async fn check_budget(&self, kind: Kind, rule: Option<&str>) -> Result<(), ApiError> {
        match rule {
            Some(rule) if kind == Kind::Policy && novacron_policy::Module::compile(rule).is_ok() => {
                if self.admission.over_budget(rule, kinds::representative_objects()).await {
                    return Err(over_budget(&self.admission.budget()));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Creates an object (POST).
    pub async fn create(self: &Arc<Self>, kind: Kind, actor: &str, body: &Value, idempotency_key: Option<&str>) -> Result<Written, ApiError> {
        refuse_read_only(kind)?;
        let settable = kind.schema().validate_create(body).map_err(|e| ApiError::from_fields(kind.singular(), e))?;
        kinds::check_static(kind, &settable)?;
        self.check_budget(kind, settable.get("rule").and_then(Value::as_str)).await?;
        let request_hash = sha256_hex(format!("{}\n{}", kind.collection(), canonical_json(body)).as_bytes());
        let status = if kind == Kind::Vm { 202 } else { 201 };
        let id = new_id(kind);
        for _ in 0..JUDGE_ATTEMPTS {
            let now = now_rfc3339();
            // The draft reserves rows (a VM's address) only in this rolled-back transaction.
            let first = self.store.rehearse(|tx| -> Result<Result<_, Written>, ApiError> {
                if let Some(answer) = replay(tx, kind, actor, idempotency_key, &request_hash)? {
                    return Ok(Err(answer));
                }
                Ok(Ok((self.draft_create(tx, kind, &settable, &id, &now)?.fields, policies_for(tx, kind)?)))
            })?;
            let (judged, policies) = match first {
                Ok(draft) => draft,
                Err(answer) => return Ok(answer),
            };
            let judged_set = fingerprint(&policies);
            let verdicts = self.judge(kind, "create", policies, &judged).await;
            let Admitted { warnings, audits } = verdicts.enforce().map_err(|violations| ApiError::PolicyDenied { violations })?;
            let written = self.store.write(|tx| -> Result<Option<Written>, ApiError> {
                if let Some(answer) = replay(tx, kind, actor, idempotency_key, &request_hash)? {
                    return Ok(Some(answer));
                }
                let Draft { object, fields, secrets, .. } = self.draft_create(tx, kind, &settable, &id, &now)?;
                let current = policies_for(tx, kind)?;
                if fields != judged || fingerprint(&current) != judged_set {
                    return Ok(None);
                }
                q::insert(tx, kind.collection(), &object)?;
                apply_secrets(tx, kind, &object.id, &secrets)?;
                q::append_event(tx, actor, "create", kind.collection(), &object.id, &object.name, None)?;
                record_audits(tx, kind, &object.id, &object.name, &audits)?;
                if let Some(key) = idempotency_key {
                    q::remember_answer(tx, actor, key, &IdempotentAnswer { request_hash: request_hash.clone(), status, body: object.body.clone() })?;
                }
                Ok(Some(Written { status, object, warnings: warnings.clone(), replayed: false }))
            })?;
            let Some(written) = written else { continue };
            if !written.replayed {
                self.notify();
                if kind == Kind::Vm {
                    self.schedule(Lifecycle::Provision, written.object.id.clone());
                }
            }
            return Ok(written);
        }
        Err(judged_too_often())
    }

    /// A dry run of [`App::create`]: the same validation, name check, references, computed
    /// values and policy evaluation, on a draft made in a transaction that is rolled back, so
    /// no object, address, secret, event or idempotency record remains, and nothing is
    /// provisioned.
    pub async fn rehearse_create(&self, kind: Kind, body: &Value) -> Result<Rehearsal, ApiError> {
        refuse_read_only(kind)?;
        let settable = kind.schema().validate_create(body).map_err(|e| ApiError::from_fields(kind.singular(), e))?;
        kinds::check_static(kind, &settable)?;
        self.check_budget(kind, settable.get("rule").and_then(Value::as_str)).await?;
        let (mut object, policies) = self.store.rehearse(|tx| -> Result<_, ApiError> {
            Ok((self.draft_create(tx, kind, &settable, &new_id(kind), &now_rfc3339())?.fields, policies_for(tx, kind)?))
        })?;
        let verdicts = self.judge(kind, "create", policies, &object).await;
        object.remove("id");
        Ok(Rehearsal { object, verdicts })
    }

    /// The object a create would store as `id` at `now`: name uniqueness (409), then the
    /// kind's computed values and reference checks. Inside `tx`, which may reserve rows (a
    /// VM's address).
    fn draft_create(&self, tx: &rusqlite::Transaction<'_>, kind: Kind, settable: &Map<String, Value>, id: &str, now: &str) -> Result<Draft, ApiError> {
        let name = settable.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if let Some(existing) = q::get_by_name(tx, kind.collection(), &name)? {
            return Err(ApiError::Conflict {
                detail: format!("a {kind} named {name:?} already exists ({}); pick another name or import it", existing.id),
                errors: vec![novacron_schemas::FieldError { field: "name".into(), message: format!("{name} is taken"), violation: Violation::Format }],
            });
        }
        let m = kinds::materialize(kind, tx, id, None, settable.clone(), &[])?;
        let mut fields = m.body;
        fields.insert("id".into(), Value::String(id.to_string()));
        fields.insert("created_at".into(), Value::String(now.to_string()));
        fields.insert("updated_at".into(), Value::String(now.to_string()));
        fields.insert("version".into(), Value::from(1));
        Ok(Draft { object: stored(id, &name, 1, &fields), fields, secrets: m.secrets, unchanged: false })
    }

    /// Applies a JSON merge patch (PATCH), optionally guarded by `If-Match`.
    pub async fn update(self: &Arc<Self>, kind: Kind, actor: &str, id: &str, patch: &Value, if_match: Option<i64>) -> Result<Written, ApiError> {
        refuse_read_only(kind)?;
        self.check_budget(kind, patch.get("rule").and_then(Value::as_str)).await?;
        for _ in 0..JUDGE_ATTEMPTS {
            let now = now_rfc3339();
            let (draft, policies) =
                self.store.rehearse(|tx| -> Result<_, ApiError> { Ok((self.draft_update(tx, kind, id, patch, if_match, &now)?, policies_for(tx, kind)?)) })?;
            if draft.unchanged {
                return Ok(Written { status: 200, object: draft.object, warnings: vec![], replayed: false });
            }
            let judged_set = fingerprint(&policies);
            let verdicts = self.judge(kind, "update", policies, &draft.fields).await;
            let Admitted { warnings, audits } = verdicts.enforce().map_err(|violations| ApiError::PolicyDenied { violations })?;
            let written = self.store.write(|tx| -> Result<Option<Written>, ApiError> {
                let Draft { object, fields, secrets, unchanged } = self.draft_update(tx, kind, id, patch, if_match, &now)?;
                let current = policies_for(tx, kind)?;
                if unchanged || fields != draft.fields || fingerprint(&current) != judged_set {
                    return Ok(None);
                }
                q::update(tx, kind.collection(), &object)?;
                apply_secrets(tx, kind, id, &secrets)?;
                q::append_event(tx, actor, "update", kind.collection(), id, &object.name, None)?;
                record_audits(tx, kind, id, &object.name, &audits)?;
                Ok(Some(Written { status: 200, object, warnings: warnings.clone(), replayed: false }))
            })?;
            if let Some(written) = written {
                self.notify();
                return Ok(written);
            }
        }
        Err(judged_too_often())
    }

    /// A dry run of [`App::update`]: the merged object and the policies' verdicts on it, with
    /// the same checks as a real patch (including `If-Match`), drafted in a rolled-back
    /// transaction. A patch that changes nothing is judged too, on the object as it is, so a
    /// reviewer learns whether the current object is admitted.
    pub async fn rehearse_update(&self, kind: Kind, id: &str, patch: &Value, if_match: Option<i64>) -> Result<Rehearsal, ApiError> {
        refuse_read_only(kind)?;
        self.check_budget(kind, patch.get("rule").and_then(Value::as_str)).await?;
        let (object, policies) = self.store.rehearse(|tx| -> Result<_, ApiError> {
            Ok((self.draft_update(tx, kind, id, patch, if_match, &now_rfc3339())?.fields, policies_for(tx, kind)?))
        })?;
        let verdicts = self.judge(kind, "update", policies, &object).await;
        Ok(Rehearsal { object, verdicts })
    }

    /// The object an update would store: the stored object (404, `deleting` 409, `If-Match`
    /// 412), the merged and validated attributes, name uniqueness, computed values and
    /// references, stamped `now`. Inside `tx`, which may reserve rows (a moved VM's address).
    fn draft_update(&self, tx: &rusqlite::Transaction<'_>, kind: Kind, id: &str, patch: &Value, if_match: Option<i64>, now: &str) -> Result<Draft, ApiError> {
        let schema = kind.schema();
        let current = q::get(tx, kind.collection(), id)?.ok_or_else(|| not_found(kind, id))?;
        let previous = current.fields();
        if previous.get("status").and_then(Value::as_str) == Some("deleting") {
            return Err(ApiError::Conflict { detail: format!("{kind} {} is being deleted and cannot change", current.name), errors: vec![] });
        }
        if let Some(expected) = if_match
            && expected != current.version
        {
            return Err(ApiError::PreconditionFailed {
                detail: format!(
                    "If-Match \"{expected}\" does not match the current version \"{}\"; GET the object and apply your change again",
                    current.version
                ),
            });
        }
        let current_settable: Map<String, Value> =
            previous.iter().filter(|(k, _)| schema.attribute(k).is_some_and(|a| !a.read_only && !a.write_only)).map(|(k, v)| (k.clone(), v.clone())).collect();
        let settable = schema.validate_patch(&current_settable, patch).map_err(|e| ApiError::from_fields(kind.singular(), e))?;
        kinds::check_static(kind, &settable)?;
        let name = settable.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        if name != current.name
            && let Some(other) = q::get_by_name(tx, kind.collection(), &name)?
        {
            return Err(ApiError::Conflict { detail: format!("a {kind} named {name:?} already exists ({}); pick another name", other.id), errors: vec![] });
        }
        let m = kinds::materialize(kind, tx, id, Some(&previous), settable, &cleared_write_only(kind, patch))?;
        let mut fields = m.body;
        for key in ["id", "created_at", "updated_at", "version"] {
            if let Some(v) = previous.get(key) {
                fields.insert(key.into(), v.clone());
            }
        }
        if fields == previous {
            return Ok(Draft { object: current, fields: previous, secrets: m.secrets, unchanged: true });
        }
        let version = current.version + 1;
        fields.insert("updated_at".into(), Value::String(now.to_string()));
        fields.insert("version".into(), Value::from(version));
        Ok(Draft { object: stored(id, &name, version, &fields), fields, secrets: m.secrets, unchanged: false })
    }

    /// Deletes an object (DELETE). VMs go `deleting` and disappear after the provisioning delay.
    pub fn delete(self: &Arc<Self>, kind: Kind, actor: &str, id: &str) -> Result<Removal, ApiError> {
        if kind.schema().read_only_kind {
            return Err(ApiError::MethodNotAllowed { detail: format!("{} are a read-only catalogue", kind.collection()) });
        }
        let removal = self.store.write(|tx| -> Result<Removal, ApiError> {
            let current = q::get(tx, kind.collection(), id)?.ok_or_else(|| not_found(kind, id))?;
            // What holds this object in use, as `x-reference ... holds` in `schemas/` declares.
            for (holder, attribute, advice) in novacron_schemas::catalog().holders_of(kind) {
                let holders = q::referencing(tx, holder.collection(), &attribute.name, id)?;
                if holders.is_empty() {
                    continue;
                }
                let list: Vec<String> = holders.iter().take(5).map(|h| format!("{holder} {} ({})", h.name, h.id)).collect();
                let more = if holders.len() > 5 { format!(" and {} more", holders.len() - 5) } else { String::new() };
                return Err(ApiError::Conflict { detail: format!("{kind} {} is in use by {}{more}; {advice}", current.name, list.join(", ")), errors: vec![] });
            }
            // A reference to clear first (`x-lifecycle` `detach-before-delete`).
            if let Some(attribute) = &kind.schema().lifecycle.detach_before_delete {
                let fields = current.fields();
                if let Some(target) = fields.get(attribute).and_then(Value::as_str) {
                    let target_kind =
                        kind.schema().attribute(attribute).and_then(|a| a.reference.as_ref()).map_or("object".to_string(), |r| r.kind.to_string());
                    return Err(ApiError::Conflict {
                        detail: format!("{kind} {} is attached to {target_kind} {target}; detach it first (PATCH {attribute} to null)", current.name),
                        errors: vec![],
                    });
                }
            }
            if kind == Kind::Vm {
                let mut fields = current.fields();
                if fields.get("status").and_then(Value::as_str) == Some("deleting") {
                    return Ok(Removal::Accepted(current));
                }
                let version = current.version + 1;
                fields.insert("status".into(), Value::String("deleting".into()));
                fields.insert("updated_at".into(), Value::String(now_rfc3339()));
                fields.insert("version".into(), Value::from(version));
                let object = stored(id, &current.name, version, &fields);
                q::update(tx, kind.collection(), &object)?;
                q::append_event(tx, actor, "delete", kind.collection(), id, &current.name, None)?;
                return Ok(Removal::Accepted(object));
            }
            q::delete(tx, kind.collection(), id)?;
            q::append_event(tx, actor, "delete", kind.collection(), id, &current.name, None)?;
            Ok(Removal::Gone)
        })?;
        self.notify();
        if let Removal::Accepted(obj) = &removal {
            self.schedule(Lifecycle::Remove, obj.id.clone());
        }
        Ok(removal)
    }

    /// Finishes what the platform does by itself after the provisioning delay.
    fn finish(&self, step: Lifecycle, id: &str) -> Result<(), ApiError> {
        self.store.write(|tx| -> Result<(), ApiError> {
            let Some(current) = q::get(tx, "vms", id)? else { return Ok(()) };
            let mut fields = current.fields();
            let status = fields.get("status").and_then(Value::as_str).unwrap_or_default().to_string();
            match step {
                Lifecycle::Provision if status == "provisioning" => {
                    let power = fields.get("power_state").and_then(Value::as_str).unwrap_or("running").to_string();
                    let version = current.version + 1;
                    fields.insert("status".into(), Value::String(power));
                    fields.insert("updated_at".into(), Value::String(now_rfc3339()));
                    fields.insert("version".into(), Value::from(version));
                    q::update(tx, "vms", &stored(id, &current.name, version, &fields))?;
                    q::append_event(tx, "platform", "provisioned", "vms", id, &current.name, None)?;
                }
                Lifecycle::Remove if status == "deleting" => {
                    q::release_host(tx, id)?;
                    q::delete(tx, "vms", id)?;
                    q::append_event(tx, "platform", "deleted", "vms", id, &current.name, None)?;
                }
                _ => {}
            }
            Ok(())
        })?;
        self.notify();
        Ok(())
    }

    fn schedule(self: &Arc<Self>, step: Lifecycle, id: String) {
        let app = Arc::clone(self);
        let delay = self.config.provision_delay;
        let handle = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = app.finish(step, &id) {
                tracing::error!(vm = %id, error = %e, "lifecycle step failed; it resumes at the next start");
            }
        });
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle.abort_handle());
    }

    /// Re-schedules VMs left `provisioning` or `deleting` by an earlier run.
    pub fn resume(self: &Arc<Self>) -> anyhow::Result<()> {
        for vm in self.store.read(|c| q::all(c, "vms"))? {
            match vm.fields().get("status").and_then(Value::as_str) {
                Some("provisioning") => self.schedule(Lifecycle::Provision, vm.id),
                Some("deleting") => self.schedule(Lifecycle::Remove, vm.id),
                _ => {}
            }
        }
        Ok(())
    }

    /// Stops pending lifecycle steps (they resume from the database at the next start).
    pub fn stop_background(&self) {
        for t in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            t.abort();
        }
    }

    /// The longest a long-poll may wait.
    pub const MAX_WAIT: Duration = Duration::from_secs(60);
}

#[derive(Clone, Copy)]
enum Lifecycle {
    Provision,
    Remove,
}
