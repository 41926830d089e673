//! PlanResourceChange as a pure function: defaults planned, stable computed values kept
//! from prior state, values the platform will recompute marked unknown, and force-new
//! attributes reported for replacement.

use std::collections::BTreeMap;

use novacron_schemas::{Trigger, sha256_hex};

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

/// The name an API attribute has in the Terraform block: its block type for nested blocks
/// (`firewall_rules` is planned as `firewall_rule`).
fn tf_name<'a>(block: &'a TfBlock, api_name: &'a str) -> &'a str {
    block.blocks.iter().find(|b| b.api_name == api_name).map_or(api_name, |b| b.type_name.as_str())
}

/// What the platform recomputes when the settable values change, as `x-recomputed` in
/// `schemas/` declares: an attribute whose trigger changed is unknown until the platform
/// answers (one the configuration sets keeps its value), and one that follows an enum
/// attribute takes its new value when the prior one was steady.
fn adjust_computed(t: &TypeSchema, state: &mut Val, prior: Option<&Val>, config: &Val) {
    for (secret, hash_attr) in t.block.hashed() {
        let hash = planned_hash(t, secret, hash_attr, state, prior, config);
        set(state, hash_attr, hash);
    }
    let Some(prior) = prior else { return };
    let schema = t.kind.schema();
    for rule in &schema.recomputed {
        let name = rule.attribute.as_str();
        if !t.block.attr(name).is_some_and(|a| a.computed) || !config.get(name).is_null() {
            continue;
        }
        match &rule.trigger {
            Trigger::When(triggers) => {
                if triggers.iter().any(|k| changed(state, prior, tf_name(&t.block, k))) {
                    set(state, name, Val::Unknown);
                }
            }
            Trigger::Follows(followed) => {
                if changed(state, prior, followed) {
                    let steady = schema.attribute(followed).and_then(|a| a.constraints.enum_values.as_ref());
                    let was_steady = prior.get(name).as_str().is_some_and(|p| steady.is_some_and(|s| s.iter().any(|v| v == p)));
                    let next = match state.get(followed) {
                        Val::Str(v) if was_steady => Val::Str(v.clone()),
                        _ => Val::Unknown,
                    };
                    set(state, name, next);
                }
            }
        }
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

    /// A prior state of `t` as the platform left it: the plan of `config` with these computed values.
    fn applied(t: &TypeSchema, config: &Val, computed: &[(&str, Val)]) -> Val {
        let mut prior = plan(t, &Val::Null, config).state;
        for (k, v) in computed {
            set(&mut prior, k, v.clone());
        }
        prior
    }

    #[test]
    fn recompute_rules_come_from_the_schema() {
        let vm = resource("novacron_vm").expect("vm");
        let prior = applied(vm, &vm_config(4.0), &[("id", s("vm-1")), ("ip_address", s("10.0.0.2")), ("status", s("running"))]);
        let mut moved = vm_config(4.0);
        set(&mut moved, "network_id", s("net-b"));
        let p = plan(vm, &prior, &moved).state;
        assert_eq!((p.get("ip_address"), p.get("status")), (&Val::Unknown, &s("running")), "x-recomputed ip_address when network_id");
        let mut stopped = vm_config(4.0);
        set(&mut stopped, "power_state", s("stopped"));
        let provisioning = applied(vm, &vm_config(4.0), &[("id", s("vm-1")), ("ip_address", s("10.0.0.2")), ("status", s("provisioning"))]);
        assert_eq!(plan(vm, &provisioning, &stopped).state.get("status"), &Val::Unknown, "status follows power_state only from a steady state");

        let storage = resource("novacron_storage").expect("storage");
        let vol = obj(&[("name", s("d")), ("size_gb", Val::Num(10.0))]);
        let prior = applied(storage, &vol, &[("id", s("vol-1")), ("status", s("available"))]);
        let mut attached = vol.clone();
        set(&mut attached, "attached_to", s("vm-1"));
        let p = plan(storage, &prior, &attached).state;
        assert_eq!((p.get("status"), p.get("device_path")), (&Val::Unknown, &Val::Unknown));
        let mut bigger = vol.clone();
        set(&mut bigger, "size_gb", Val::Num(20.0));
        assert_eq!(plan(storage, &prior, &bigger).state.get("status"), &s("available"));

        let policy = resource("novacron_policy").expect("policy");
        let pol = obj(&[("name", s("p")), ("type", s("security")), ("rule", s("package p"))]);
        let prior = applied(policy, &pol, &[("id", s("pol-1")), ("version", Val::Num(3.0))]);
        assert_eq!(plan(policy, &prior, &pol).state.get("version"), &Val::Num(3.0));
        let mut edited = pol.clone();
        set(&mut edited, "priority", Val::Num(7.0));
        assert_eq!(plan(policy, &prior, &edited).state.get("version"), &Val::Unknown, "any settable attribute");

        let net = resource("novacron_network").expect("network");
        let config = obj(&[("name", s("n")), ("cidr", s("10.0.0.0/24"))]);
        let prior = applied(net, &config, &[("id", s("net-1")), ("gateway", s("10.0.0.1"))]);
        let mut renumbered = config.clone();
        set(&mut renumbered, "cidr", s("10.1.0.0/24"));
        assert_eq!(plan(net, &prior, &renumbered).state.get("gateway"), &Val::Unknown, "the gateway follows a new cidr");
        set(&mut renumbered, "gateway", s("10.1.0.9"));
        assert_eq!(plan(net, &prior, &renumbered).state.get("gateway"), &s("10.1.0.9"), "a configured gateway stays");
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
