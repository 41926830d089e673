//! PlanResourceChange as a pure function: defaults planned, stable computed values kept
//! from prior state, values the platform will recompute marked unknown, and force-new
//! attributes reported for replacement.

use std::collections::BTreeMap;

use novacron_schemas::{Kind, sha256_hex};

use crate::proto::tfplugin5::AttributePath;
use crate::tfschema::{Nesting, TfBlock, TypeSchema};
use crate::value::Val;

/// The planned state and the paths that force a replacement.
#[derive(Debug)]
pub struct Planned {
    /// Planned new state (null for a destroy).
    pub state: Val,
    /// Attributes whose change requires destroying and recreating the object.
    pub requires_replace: Vec<AttributePath>,
}

fn plan_block(block: &TfBlock, prior: Option<&Val>, config: &Val) -> Val {
    let mut out = BTreeMap::new();
    for a in &block.attributes {
        let cfg = config.get(&a.name);
        let prior_v = prior.map(|p| p.get(&a.name));
        let computed_only = a.computed && !a.optional;
        // A write-only value is in the configuration only: planned (and stored) as null.
        let v = if a.write_only {
            Val::Null
        } else if computed_only {
            prior_v.cloned().unwrap_or(Val::Unknown)
        } else if !cfg.is_null() {
            cfg.clone()
        } else if let Some(default) = a.source.as_ref().and_then(|s| s.default.as_ref()) {
            Val::from_json(default)
        } else if a.computed {
            prior_v.filter(|v| !v.is_null()).cloned().unwrap_or(Val::Unknown)
        } else {
            Val::Null
        };
        out.insert(a.name.clone(), v);
    }
    for nb in &block.blocks {
        let cfg = config.get(&nb.type_name);
        let v = match (nb.nesting, cfg) {
            (Nesting::List, Val::List(items)) => Val::List(items.iter().map(|i| plan_block(&nb.block, None, i)).collect()),
            (Nesting::List, Val::Unknown) => Val::Unknown,
            (Nesting::List, _) => Val::List(vec![]),
            (Nesting::Single, other) => other.clone(),
        };
        out.insert(nb.type_name.clone(), v);
    }
    Val::Obj(out)
}

fn set(state: &mut Val, key: &str, v: Val) {
    if let Val::Obj(m) = state {
        m.insert(key.to_string(), v);
    }
}

fn changed(planned: &Val, prior: &Val, key: &str) -> bool {
    planned.get(key) != prior.get(key)
}

/// Whether a write-only twin's value goes to the platform in this change: on create, and on
/// update only when its `_version` changes (Terraform's write-only convention).
pub fn sends_write_only(prior: &Val, planned: &Val, version: &str) -> bool {
    prior.is_null() || prior.get(version) != planned.get(version)
}

/// The hash a write-only value will have after this change: of the value sent, else the
/// prior (refreshed) one.
fn planned_hash(t: &TypeSchema, secret: &str, hash_attr: &str, state: &Val, prior: Option<&Val>, config: &Val) -> Val {
    let hash_of = |v: &Val| match v {
        Val::Str(s) => Val::Str(sha256_hex(s.as_bytes())),
        Val::Null => Val::Null,
        _ => Val::Unknown,
    };
    if let Some((twin, _, version)) = t.block.write_only_twins().find(|(_, src, _)| *src == secret)
        && state.get(secret).is_null()
        && !config.get(twin).is_null()
    {
        return match prior {
            Some(p) if !sends_write_only(p, state, &version) => p.get(hash_attr).clone(),
            _ => hash_of(config.get(twin)),
        };
    }
    hash_of(state.get(secret))
}

/// What the platform recomputes when the settable values change.
fn adjust_computed(t: &TypeSchema, state: &mut Val, prior: Option<&Val>, config: &Val) {
    for (secret, hash_attr) in t.block.hashed() {
        let hash = planned_hash(t, secret, hash_attr, state, prior, config);
        set(state, hash_attr, hash);
    }
    let Some(prior) = prior else { return };
    match t.kind {
        Kind::Vm => {
            if changed(state, prior, "network_id") {
                set(state, "ip_address", Val::Unknown);
            }
            let steady = matches!(prior.get("status").as_str(), Some("running" | "stopped"));
            if changed(state, prior, "power_state") {
                let status = match state.get("power_state") {
                    Val::Str(p) if steady => Val::Str(p.clone()),
                    _ => Val::Unknown,
                };
                set(state, "status", status);
            }
        }
        Kind::Volume => {
            if changed(state, prior, "attached_to") {
                set(state, "status", Val::Unknown);
                set(state, "device_path", Val::Unknown);
            }
        }
        Kind::Policy => {
            if t.block.settable().any(|k| changed(state, prior, k)) {
                set(state, "version", Val::Unknown);
            }
        }
        Kind::Network | Kind::Template => {}
    }
}

/// Plans a change. `prior` is null for a create; `config` null for a destroy.
pub fn plan(t: &TypeSchema, prior: &Val, config: &Val) -> Planned {
    if config.is_null() {
        return Planned { state: Val::Null, requires_replace: vec![] };
    }
    let prior_opt = (!prior.is_null()).then_some(prior);
    let mut state = plan_block(&t.block, prior_opt, config);
    adjust_computed(t, &mut state, prior_opt, config);
    let mut requires_replace = Vec::new();
    if let Some(prior) = prior_opt {
        for a in &t.block.attributes {
            if a.source.as_ref().is_some_and(|s| s.immutable) && changed(&state, prior, &a.name) {
                requires_replace.push(crate::diag::path(&[&a.name]));
            }
        }
    }
    Planned { state, requires_replace }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfschema::resource;

    fn obj(pairs: &[(&str, Val)]) -> Val {
        Val::Obj(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn s(v: &str) -> Val {
        Val::Str(v.into())
    }

    fn vm_config(memory: f64) -> Val {
        obj(&[("name", s("web")), ("cpu_cores", Val::Num(2.0)), ("memory_gb", Val::Num(memory)), ("template_id", s("tpl-a")), ("network_id", s("net-a"))])
    }

    #[test]
    fn create_plans_defaults_and_unknown_computed() {
        let vm = resource("novacron_vm").expect("vm");
        let p = plan(vm, &Val::Null, &vm_config(4.0));
        assert_eq!(p.state.get("disk_gb"), &Val::Num(20.0));
        assert_eq!(p.state.get("power_state"), &s("running"));
        assert_eq!(p.state.get("id"), &Val::Unknown);
        assert_eq!(p.state.get("ip_address"), &Val::Unknown);
        assert_eq!(p.state.get("user_data_sha256"), &Val::Null);
        assert_eq!(p.state.get("metadata"), &Val::Null);
        assert!(p.requires_replace.is_empty());
    }

    #[test]
    fn update_keeps_stable_computed_values_and_flags_force_new() {
        let vm = resource("novacron_vm").expect("vm");
        let mut prior = plan(vm, &Val::Null, &vm_config(4.0)).state;
        for (k, v) in [("id", s("vm-1")), ("ip_address", s("10.0.0.2")), ("status", s("running")), ("created_at", s("t"))] {
            set(&mut prior, k, v);
        }
        let same = plan(vm, &prior, &vm_config(4.0));
        assert_eq!(same.state, prior, "no change plans no diff");
        let bigger = plan(vm, &prior, &vm_config(8.0));
        assert_eq!(bigger.state.get("ip_address"), &s("10.0.0.2"));
        assert_eq!(bigger.state.get("id"), &s("vm-1"));
        assert!(bigger.requires_replace.is_empty());
        let mut moved = vm_config(4.0);
        set(&mut moved, "template_id", s("tpl-b"));
        set(&mut moved, "power_state", s("stopped"));
        let p = plan(vm, &prior, &moved);
        assert_eq!(p.requires_replace.len(), 1);
        assert_eq!(p.state.get("status"), &s("stopped"));
    }

    #[test]
    fn write_only_user_data_is_planned_null_and_resent_only_with_a_new_version() {
        let vm = resource("novacron_vm").expect("vm");
        let with_wo = |secret: &str, version: f64| {
            let mut c = vm_config(4.0);
            set(&mut c, "user_data_wo", s(secret));
            set(&mut c, "user_data_wo_version", Val::Num(version));
            c
        };
        let created = plan(vm, &Val::Null, &with_wo("token-1", 1.0)).state;
        assert_eq!(created.get("user_data_wo"), &Val::Null, "a write-only value is never planned");
        assert_eq!(created.get("user_data"), &Val::Null);
        assert_eq!(created.get("user_data_sha256"), &s(&sha256_hex(b"token-1")), "the hash of what create sends");
        let mut prior = created.clone();
        for (k, v) in [("id", s("vm-1")), ("ip_address", s("10.0.0.2")), ("status", s("running")), ("created_at", s("t"))] {
            set(&mut prior, k, v);
        }
        assert_eq!(plan(vm, &prior, &with_wo("token-2", 1.0)).state, prior, "a new value with the same version plans nothing");
        let bumped = plan(vm, &prior, &with_wo("token-2", 2.0)).state;
        assert_eq!(bumped.get("user_data_sha256"), &s(&sha256_hex(b"token-2")));
        assert_eq!(bumped.get("user_data_wo_version"), &Val::Num(2.0));
        assert!(sends_write_only(&prior, &bumped, "user_data_wo_version"));
        assert!(!sends_write_only(&prior, &prior, "user_data_wo_version"));
        let mut unknown = with_wo("x", 3.0);
        set(&mut unknown, "user_data_wo", Val::Unknown);
        assert_eq!(plan(vm, &prior, &unknown).state.get("user_data_sha256"), &Val::Unknown);
    }

    #[test]
    fn nested_blocks_get_defaults_and_destroy_plans_null() {
        let net = resource("novacron_network").expect("network");
        let config = obj(&[("name", s("n")), ("cidr", s("10.0.0.0/24")), ("firewall_rule", Val::List(vec![obj(&[("direction", s("ingress"))])]))]);
        let p = plan(net, &Val::Null, &config);
        let rule = match p.state.get("firewall_rule") {
            Val::List(items) => items[0].clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(rule.get("ports"), &s("any"));
        assert_eq!(rule.get("cidr"), &s("0.0.0.0/0"));
        assert_eq!(p.state.get("gateway"), &Val::Unknown);
        assert_eq!(p.state.get("timeouts"), &Val::Null);
        assert_eq!(plan(net, &p.state, &Val::Null).state, Val::Null);
    }
}
