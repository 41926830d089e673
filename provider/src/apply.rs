//! The calls that talk to the platform: apply (create, update, delete), read, import and
//! data source reads. Writes wait for the platform (as `x-lifecycle` in `schemas/` says) within
//! the `timeouts` block.

use std::time::{Duration, Instant};

use novacron_client::lookup::{self, Candidates, LookupArgs};
use novacron_client::{Client, Deleted, Error as ApiError, Object};
use novacron_schemas::{Kind, sha256_hex};
use serde_json::{Map, Value as Json};
use tokio::sync::watch;

use crate::diag::{Diagnostics, api_field_path, path};
use crate::state::{block_from_object, body_from_block};
use crate::tfschema::{TfBlock, TypeSchema};
use crate::value::Val;

/// What a call needs: the configured client and the stop signal.
pub struct Ctx {
    /// The platform client.
    pub client: Client,
    /// Becomes true when Terraform calls Stop.
    pub stop: watch::Receiver<bool>,
}

/// Default wait for create, update and delete.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Parses a Go-style duration such as `30s`, `10m`, `1h30m` or `500ms`: the grammar of
/// [`novacron_schemas::duration::parse`], which every NovaCron config shares.
pub fn parse_duration(text: &str) -> Option<Duration> {
    novacron_schemas::duration::parse(text).ok()
}

fn timeout_of(state: &Val, which: &str) -> Duration {
    state.get("timeouts").get(which).as_str().and_then(parse_duration).unwrap_or(DEFAULT_TIMEOUT)
}

/// Turns an API error into diagnostics: field errors at their attribute paths, policy
/// denials as one error naming each violation, everything else as one line.
pub fn report_api_error(diags: &mut Diagnostics, block: &TfBlock, action: &str, err: &ApiError) {
    let fields = err.field_errors();
    if err.status() == Some(403) && fields.iter().any(|f| f.field.starts_with("policy/")) {
        let lines: Vec<String> = fields.iter().map(|f| format!("- {}: {}", f.field.trim_start_matches("policy/"), f.message)).collect();
        diags.error(format!("{action} denied by NovaCron policy"), format!("The platform's admission policies refused this change:\n{}", lines.join("\n")));
        return;
    }
    let mut placed = false;
    for f in fields {
        if let Some(p) = api_field_path(block, &f.field) {
            diags.error_at(p, format!("{action} failed: invalid {}", f.field), f.message.clone());
            placed = true;
        }
    }
    if !placed {
        diags.error(format!("{action} failed"), err.to_string());
    }
}

/// Polls an object until `done` holds for it, or the timeout passes. Returns the last object.
async fn wait_for(ctx: &Ctx, kind: Kind, id: &str, timeout: Duration, done: impl Fn(Option<&Object>) -> bool) -> Result<Option<Object>, String> {
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        let current = match ctx.client.get(kind, id).await {
            Ok(r) => Some(r.value),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.to_string()),
        };
        if done(current.as_ref()) {
            return Ok(current);
        }
        if Instant::now() + delay > deadline {
            let attribute = kind.schema().lifecycle.wait_while.as_ref().map_or("status", |(a, _)| a.as_str());
            let state = current.as_ref().and_then(|o| o.get(attribute)).and_then(Json::as_str).unwrap_or("gone").to_string();
            return Err(format!("{kind} {id} is still {state} after {}s; raise the timeouts block or check the platform", timeout.as_secs()));
        }
        let mut stop = ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => return Err("Terraform asked the provider to stop".into()),
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Deletes an object, waiting while the platform says it is still in use (409): Terraform
/// may be destroying what holds it in parallel (a VM on a network both being destroyed
/// without a reference between them). Waits at most a minute (or the delete timeout, if
/// shorter), then gives the platform's answer, which names what holds the object.
async fn delete_when_free(ctx: &Ctx, kind: Kind, id: &str, timeout: Duration) -> Result<Deleted, ApiError> {
    let deadline = Instant::now() + timeout.min(Duration::from_secs(60));
    let mut delay = Duration::from_millis(100);
    loop {
        match ctx.client.delete(kind, id).await {
            Err(e) if e.is_conflict() && Instant::now() + delay < deadline => {
                tracing::debug!(%id, error = %e, "still in use; waiting before deleting again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// Whether a written object has settled: gone, or its `x-lifecycle` `wait-while` attribute
/// holds none of the values to wait through (a VM no longer `provisioning`).
fn settled(kind: Kind, o: Option<&Object>) -> bool {
    let Some((attribute, values)) = &kind.schema().lifecycle.wait_while else { return true };
    o.is_none_or(|o| !o.get(attribute).and_then(Json::as_str).is_some_and(|v| values.iter().any(|w| w == v)))
}

/// Puts the write-only twins' values into an API body: the twin's value (from `config`, the
/// only place Terraform keeps it) goes in its API attribute when it is sent in this change;
/// otherwise the API attribute is left alone, since the null planned for it means "not
/// managed here", not "clear it".
fn write_only_into(t: &TypeSchema, prior: &Val, planned: &Val, config: &Val, body: &mut Map<String, Json>) {
    for (twin, src, version) in t.block.write_only_twins() {
        let Some(value) = config.get(twin).to_json().filter(|v| !v.is_null()) else { continue };
        body.remove(src);
        if crate::plan::sends_write_only(prior, planned, &version) {
            body.insert(src.to_string(), value);
        }
    }
}

/// ApplyResourceChange. `config` carries the write-only values (nowhere else holds them).
pub async fn apply(ctx: &Ctx, t: &TypeSchema, prior: &Val, planned: &Val, config: &Val, diags: &mut Diagnostics) -> Val {
    let kind = t.kind;
    if planned.is_null() {
        let id = prior.get("id").as_str().unwrap_or_default().to_string();
        // The platform refuses to delete an object whose `x-lifecycle` `detach-before-delete`
        // reference is set (an attached volume); Terraform owns the object, so destroying it
        // means clearing that reference first.
        if let Some(attribute) = &kind.schema().lifecycle.detach_before_delete
            && !prior.get(attribute).is_null()
        {
            let mut detach = Map::new();
            detach.insert(attribute.clone(), Json::Null);
            match ctx.client.patch(kind, &id, &Json::Object(detach), None).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => return Val::Null,
                Err(e) => {
                    report_api_error(diags, &t.block, &format!("Detaching {} before deleting it", t.type_name), &e);
                    return prior.clone();
                }
            }
        }
        match delete_when_free(ctx, kind, &id, timeout_of(prior, "delete")).await {
            // Accepted (202): the platform finishes the delete by itself; wait until it is gone.
            Ok(Deleted::Accepted(_)) => {
                if let Err(e) = wait_for(ctx, kind, &id, timeout_of(prior, "delete"), |o| o.is_none()).await {
                    diags.error(format!("Deleting {} failed", t.type_name), e);
                    return prior.clone();
                }
            }
            Ok(Deleted::Gone) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                report_api_error(diags, &t.block, &format!("Deleting {}", t.type_name), &e);
                return prior.clone();
            }
        }
        return Val::Null;
    }
    let result = if prior.is_null() {
        let mut body = body_from_block(&t.block, planned, false);
        write_only_into(t, prior, planned, config, &mut body);
        ctx.client.create(kind, &Json::Object(body)).await.map(|r| r.value)
    } else {
        let id = prior.get("id").as_str().unwrap_or_default().to_string();
        let mut before = body_from_block(&t.block, prior, true);
        let mut after = body_from_block(&t.block, planned, true);
        for (_, src, _) in t.block.write_only_twins().filter(|(twin, _, _)| !config.get(twin).is_null()) {
            before.remove(src);
        }
        // A write-only value being sent is not in `before`, so it is always in the patch.
        write_only_into(t, prior, planned, config, &mut after);
        let patch: Map<String, Json> = after.into_iter().filter(|(k, v)| before.get(k) != Some(v)).collect();
        if patch.is_empty() {
            ctx.client.get(kind, &id).await.map(|r| r.value)
        } else {
            ctx.client.patch(kind, &id, &Json::Object(patch), None).await.map(|r| r.value)
        }
    };
    let object = match result {
        Ok(o) => o,
        Err(e) => {
            let action = if prior.is_null() { "Creating" } else { "Updating" };
            report_api_error(diags, &t.block, &format!("{action} {}", t.type_name), &e);
            return prior.clone();
        }
    };
    let object = if kind.schema().lifecycle.wait_while.is_some() {
        let which = if prior.is_null() { "create" } else { "update" };
        match wait_for(ctx, kind, object.id(), timeout_of(planned, which), |o| settled(kind, o)).await {
            Ok(Some(o)) => o,
            Ok(None) => {
                diags.error(format!("{} disappeared", t.type_name), format!("{kind} {} was deleted while Terraform waited for it", object.id()));
                return Val::Null;
            }
            Err(e) => {
                diags.error(format!("Waiting for {} failed", t.type_name), e);
                object
            }
        }
    } else {
        object
    };
    block_from_object(&t.block, object.as_map(), planned)
}

/// ReadResource: the live object, or null when it is gone (Terraform then drops it).
pub async fn read(ctx: &Ctx, t: &TypeSchema, current: &Val, diags: &mut Diagnostics) -> Val {
    let id = current.get("id").as_str().unwrap_or_default().to_string();
    match ctx.client.get(t.kind, &id).await {
        Ok(r) => {
            let mut keep = current.clone();
            // A write-only value changed out of band shows as drift: forget what we sent.
            for (secret, hash_attr) in t.block.hashed() {
                if let (Val::Str(sent), Val::Obj(m)) = (current.get(secret), &mut keep) {
                    let live = r.value.get(hash_attr).and_then(Json::as_str);
                    if live != Some(sha256_hex(sent.as_bytes()).as_str()) {
                        m.insert(secret.to_string(), Val::Null);
                    }
                }
            }
            block_from_object(&t.block, r.value.as_map(), &keep)
        }
        Err(e) if e.is_not_found() => Val::Null,
        Err(e) => {
            report_api_error(diags, &t.block, &format!("Reading {} {id}", t.type_name), &e);
            current.clone()
        }
    }
}

/// ImportResourceState: the object by id.
pub async fn import(ctx: &Ctx, t: &TypeSchema, id: &str, diags: &mut Diagnostics) -> Val {
    match ctx.client.get(t.kind, id).await {
        Ok(r) => block_from_object(&t.block, r.value.as_map(), &Val::Null),
        Err(e) if e.is_not_found() => {
            diags.error(
                format!("Cannot import {}", t.type_name),
                format!("no {} with id {id:?} exists on the platform; check the id (ids look like {}-…)", t.kind, t.kind.schema().id_prefix),
            );
            Val::Null
        }
        Err(e) => {
            report_api_error(diags, &t.block, &format!("Importing {}", t.type_name), &e);
            Val::Null
        }
    }
}

/// ReadDataSource: finds one object by id, name or (templates) filters; the choice among the
/// candidates is `novacron_client::lookup::select`, which the reconciler shares.
pub async fn read_data_source(ctx: &Ctx, t: &TypeSchema, config: &Val, diags: &mut Diagnostics) -> Val {
    let args = LookupArgs::from_arguments(t.kind, |k| match config.get(k) {
        Val::Str(s) => Some(s.clone()),
        Val::Bool(b) => Some(b.to_string()),
        _ => None,
    });
    let found = match args.candidates() {
        Candidates::ById(id) => match ctx.client.get(t.kind, &id).await {
            Ok(r) => vec![r.value],
            Err(e) if e.is_not_found() => vec![],
            Err(e) => {
                report_api_error(diags, &t.block, &format!("Reading data source {}", t.type_name), &e);
                return Val::Null;
            }
        },
        Candidates::List(query) => match ctx.client.list_matching(t.kind, &query).await {
            Ok(items) => items,
            Err(e) => {
                report_api_error(diags, &t.block, &format!("Reading data source {}", t.type_name), &e);
                return Val::Null;
            }
        },
    };
    match lookup::select(t.kind, &args, found) {
        Ok(object) => {
            let keep = crate::value::Val::Obj([("most_recent".to_string(), config.get("most_recent").clone())].into_iter().collect());
            block_from_object(&t.block, object.as_map(), &keep)
        }
        Err(e) => {
            diags.error(e.summary(), e.to_string());
            Val::Null
        }
    }
}

/// Validates the `timeouts` block durations.
pub fn check_timeouts(config: &Val, diags: &mut Diagnostics) {
    for which in ["create", "update", "delete"] {
        if let Some(text) = config.get("timeouts").get(which).as_str()
            && parse_duration(text).is_none()
        {
            diags.error_at(path(&["timeouts", which]), "Invalid duration", format!("{text:?} is not a duration; write e.g. 30s, 10m or 1h30m"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration(""), None);
    }
}
