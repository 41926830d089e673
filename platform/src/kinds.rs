//! What the platform computes for each kind on a write: addresses, statuses, device paths,
//! gateway defaults, write-only hashes, and the referential checks that `x-reference` in
//! `schemas/` declares.

use novacron_schemas::net::Cidr;
use novacron_schemas::{Format, Kind, Violation, sha256_hex};
use rusqlite::Transaction;
use serde_json::{Map, Value};

use crate::problem::ApiError;
use crate::store::q;

/// A write-only value to store or clear beside the object.
pub enum SecretChange {
    /// Store this value for the attribute.
    Set(String, String),
    /// Forget the attribute's value.
    Clear(String),
}

/// The object body to store, and what to do with write-only values.
pub struct Materialized {
    /// The public body (without id, timestamps and version, which the caller adds).
    pub body: Map<String, Value>,
    /// Write-only values to store or clear.
    pub secrets: Vec<SecretChange>,
}

fn unprocessable(kind: Kind, field: &str, message: String) -> ApiError {
    ApiError::field(kind.singular(), field, Violation::Format, message)
}

fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    m.get(key).and_then(Value::as_str)
}

/// Checks that need no database: every attribute of `format: rego` (a policy's `rule`) must
/// compile.
pub fn check_static(kind: Kind, settable: &Map<String, Value>) -> Result<(), ApiError> {
    for a in kind.schema().attributes.iter().filter(|a| a.constraints.format == Some(Format::Rego)) {
        if let Some(rule) = str_field(settable, &a.name) {
            // "the Rego module does not compile: rule.rego:LINE:COLUMN: ..."
            novacron_policy::Module::compile(rule).map_err(|e| unprocessable(kind, &a.name, e.to_string()))?;
        }
    }
    Ok(())
}

/// A minimal stored object of each kind that policies judge, as (kind, public body): what a
/// new policy is tried on against the admission budget before it is accepted.
pub fn representative_objects() -> Vec<(&'static str, Value)> {
    let stamp = "2026-01-01T00:00:00Z";
    vec![
        (
            "vm",
            serde_json::json!({
                "id": "vm-0000000000000000", "name": "example", "cpu_cores": 2, "memory_gb": 4,
                "template_id": "tpl-ubuntu-24-04", "network_id": "net-0000000000000000", "ip_address": "10.0.0.2",
                "status": "provisioning", "power_state": "running", "metadata": {},
                "created_at": stamp, "updated_at": stamp, "version": 1
            }),
        ),
        (
            "network",
            serde_json::json!({"id": "net-0000000000000000", "name": "example", "cidr": "10.0.0.0/24", "created_at": stamp, "updated_at": stamp, "version": 1}),
        ),
        ("volume", serde_json::json!({"id": "vol-0000000000000000", "name": "example", "size_gb": 10, "created_at": stamp, "updated_at": stamp, "version": 1})),
    ]
}

/// Builds the stored body from validated settable attributes. `previous` is the stored body
/// on update; `cleared` lists write-only attributes the patch set to null.
pub fn materialize(
    kind: Kind,
    tx: &Transaction<'_>,
    id: &str,
    previous: Option<&Map<String, Value>>,
    settable: Map<String, Value>,
    cleared: &[String],
) -> Result<Materialized, ApiError> {
    let schema = kind.schema();
    let mut body = Map::new();
    if let Some(prev) = previous {
        for (k, v) in prev {
            if schema.attribute(k).is_some_and(|a| a.read_only) {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    let mut secrets = Vec::new();
    for (k, v) in settable {
        let Some(attr) = schema.attribute(&k) else { continue };
        match (&attr.hash_attribute, v) {
            (Some(hash_attr), Value::String(secret)) => {
                body.insert(hash_attr.clone(), Value::String(sha256_hex(secret.as_bytes())));
                secrets.push(SecretChange::Set(k, secret));
            }
            (Some(_), _) => {}
            (None, v) => {
                body.insert(k, v);
            }
        }
    }
    for k in cleared {
        if let Some(hash_attr) = schema.attribute(k).and_then(|a| a.hash_attribute.as_ref()) {
            body.remove(hash_attr);
            secrets.push(SecretChange::Clear(k.clone()));
        }
    }
    check_references(kind, tx, &body)?;
    match kind {
        Kind::Vm => vm(tx, id, previous, &mut body)?,
        Kind::Network => network(tx, id, &mut body)?,
        Kind::Volume => volume(tx, id, previous, &mut body)?,
        Kind::Policy | Kind::Template => {}
    }
    Ok(Materialized { body, secrets })
}

/// Every reference the body sets (`x-reference` in the kind's schema) must name an existing
/// object of the referenced kind (422 with the schema's `if-missing` advice otherwise).
/// Required references are checked even when absent, as the empty id names nothing. The
/// first missing one is answered; immutable references go first (a VM's template before its
/// network), since fixing one of those may mean another object altogether.
fn check_references(kind: Kind, tx: &Transaction<'_>, body: &Map<String, Value>) -> Result<(), ApiError> {
    let schema = kind.schema();
    let mut references: Vec<_> = schema.references().collect();
    references.sort_by_key(|(attr, _)| !attr.immutable);
    for (attr, reference) in references {
        let value = match body.get(&attr.name) {
            Some(Value::String(id)) => id.as_str(),
            None | Some(Value::Null) if attr.required => "",
            _ => continue,
        };
        if q::get(tx, reference.kind.collection(), value)?.is_none() {
            return Err(unprocessable(kind, &attr.name, format!("no {} with id {value:?}; {}", reference.kind, reference.if_missing)));
        }
    }
    Ok(())
}

fn vm(tx: &Transaction<'_>, id: &str, previous: Option<&Map<String, Value>>, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let network_id = str_field(body, "network_id").unwrap_or_default().to_string();
    let network = q::get(tx, "networks", &network_id)?.ok_or_else(|| ApiError::Internal(format!("network {network_id} vanished in the transaction")))?;
    let power = str_field(body, "power_state").unwrap_or("running").to_string();
    let status = match previous.and_then(|p| str_field(p, "status")) {
        None => "provisioning".to_string(),
        Some(s @ ("provisioning" | "deleting" | "error")) => s.to_string(),
        Some(_) => power,
    };
    body.insert("status".into(), Value::String(status));
    let moved = previous.and_then(|p| str_field(p, "network_id")) != Some(network_id.as_str());
    if moved {
        q::release_host(tx, id)?;
        let net = network.fields();
        let cidr =
            str_field(&net, "cidr").and_then(|c| Cidr::parse(c).ok()).ok_or_else(|| ApiError::Internal(format!("network {network_id} has no valid cidr")))?;
        let gateway = str_field(&net, "gateway").and_then(|g| g.parse().ok()).and_then(|g| cidr.host_index(&g));
        let index = q::allocate_host(tx, &network_id, id, cidr.usable_hosts(), gateway)?.ok_or_else(|| ApiError::Conflict {
            detail: format!("network {} ({cidr}) has no free addresses; use a larger network", network.name),
            errors: vec![],
        })?;
        let ip = cidr.host(index).ok_or_else(|| ApiError::Internal("allocated index outside the network".into()))?;
        body.insert("ip_address".into(), Value::String(ip.to_string()));
    }
    Ok(())
}

fn network(tx: &Transaction<'_>, id: &str, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let cidr = str_field(body, "cidr").and_then(|c| Cidr::parse(c).ok()).ok_or_else(|| ApiError::Internal("validated cidr did not parse".into()))?;
    match str_field(body, "gateway") {
        None => {
            let first =
                cidr.host(0).ok_or_else(|| unprocessable(Kind::Network, "cidr", format!("{cidr} has no host addresses; use a prefix of /30 or shorter")))?;
            body.insert("gateway".into(), Value::String(first.to_string()));
        }
        Some(g) => {
            let ip = g.parse().map_err(|_| ApiError::Internal("validated gateway did not parse".into()))?;
            let Some(index) = cidr.host_index(&ip) else {
                return Err(unprocessable(Kind::Network, "gateway", format!("gateway {g} is the network or broadcast address of {cidr}; use a host address")));
            };
            if let Some(user) = q::referencing(tx, "vms", "network_id", id)?.into_iter().find(|vm| str_field(&vm.fields(), "ip_address") == Some(g)) {
                return Err(ApiError::Conflict {
                    detail: format!("gateway {g} (host {index}) is the address of vm {} ({}); pick another gateway", user.name, user.id),
                    errors: vec![],
                });
            }
        }
    }
    body.insert("status".into(), Value::String("active".into()));
    Ok(())
}

fn volume(tx: &Transaction<'_>, id: &str, previous: Option<&Map<String, Value>>, body: &mut Map<String, Value>) -> Result<(), ApiError> {
    let Some(vm_id) = str_field(body, "attached_to").map(str::to_string) else {
        body.insert("status".into(), Value::String("available".into()));
        body.remove("device_path");
        return Ok(());
    };
    let vm = q::get(tx, "vms", &vm_id)?.ok_or_else(|| ApiError::Internal(format!("vm {vm_id} vanished in the transaction")))?;
    if str_field(&vm.fields(), "status") == Some("deleting") {
        return Err(ApiError::Conflict { detail: format!("vm {} ({vm_id}) is being deleted; attach to another vm", vm.name), errors: vec![] });
    }
    body.insert("status".into(), Value::String("attached".into()));
    let same_vm = previous.and_then(|p| str_field(p, "attached_to")) == Some(vm_id.as_str());
    if !same_vm || !body.contains_key("device_path") {
        let used: Vec<String> = q::referencing(tx, "volumes", "attached_to", &vm_id)?
            .into_iter()
            .filter(|v| v.id != id)
            .filter_map(|v| str_field(&v.fields(), "device_path").map(str::to_string))
            .collect();
        let path = (b'b'..=b'z')
            .map(|c| format!("/dev/vd{}", char::from(c)))
            .find(|p| !used.contains(p))
            .ok_or_else(|| ApiError::Conflict { detail: format!("vm {} has no free device slots (25 volumes attached)", vm.name), errors: vec![] })?;
        body.insert("device_path".into(), Value::String(path));
    }
    Ok(())
}
