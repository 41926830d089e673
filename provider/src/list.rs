//! List resources for `terraform query` (Terraform >= 1.14): one per managed resource type,
//! with filters the platform's list endpoint applies (`name_prefix` for every kind; `network_id`
//! and `status` for VMs; `attached_to` for volumes; `enforcement_mode` for policies). Results
//! stream page by page until Terraform's `limit`; each carries the resource's identity, a
//! display name, and (with `include_resource`) the object as the resource's state, from which
//! `-generate-config-out` writes configuration.

use std::collections::HashMap;

use novacron_client::{ListQuery, Object};
use novacron_schemas::Kind;
use tokio::sync::mpsc;
use tonic::Status;

use crate::apply::{Ctx, report_api_error};
use crate::diag::{Diagnostics, path};
use crate::proto::tfplugin5::{Schema, list_resource};
use crate::state::block_from_object;
use crate::tfschema::{self, TfAttr, TfBlock, TfType, TypeSchema};
use crate::value::Val;

/// Objects per API page while listing.
const PAGE_SIZE: i64 = 500;

/// One filter of a list resource's `config` block.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Its name in the `config` block and as the list endpoint's query parameter.
    pub name: &'static str,
    /// Docs text.
    pub description: String,
    /// The values it may take (from `schemas/`), when it is an enumeration.
    pub values: Option<Vec<String>>,
    /// The kind whose id it holds, when it is a reference.
    pub reference: Option<Kind>,
}

/// How docs and messages name several objects of `kind`: VMs, networks, volumes, policies.
fn plural(kind: Kind) -> &'static str {
    match kind {
        Kind::Vm => "VMs",
        other => other.collection(),
    }
}

/// The filters of the list resource of `kind`: `name_prefix`, then the attributes the schema
/// marks `x-list-filter` (the platform's list endpoint takes the same ones).
pub fn filters(kind: Kind) -> Vec<Filter> {
    let mut out =
        vec![Filter { name: "name_prefix", description: format!("Only {} whose name starts with this text.", plural(kind)), values: None, reference: None }];
    for a in kind.schema().list_filters() {
        let reference = a.reference.as_ref().map(|r| r.kind);
        let what = match reference {
            Some(k) => format!("Only {} whose `{}` is this {} id (`{}-…`).", plural(kind), a.name, k, k.schema().id_prefix),
            None => format!("Only {} whose `{}` is this value.", plural(kind), a.name),
        };
        out.push(Filter { name: a.name.as_str(), description: format!("{what} {}", a.description), values: a.constraints.enum_values.clone(), reference });
    }
    out
}

/// The `config` block of the list resource for `t`.
pub fn config_block(t: &TypeSchema) -> TfBlock {
    let attributes = filters(t.kind)
        .into_iter()
        .map(|f| TfAttr {
            name: f.name.to_string(),
            ty: TfType::String,
            required: false,
            optional: true,
            computed: false,
            sensitive: false,
            write_only: false,
            description: match &f.values {
                Some(v) => format!("{} One of: {}.", f.description, v.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")),
                None => f.description,
            },
            source: None,
        })
        .collect();
    TfBlock {
        description: format!(
            "Lists existing {} for `terraform query`, by identity (`{{ id }}`), e.g. to find and import objects no configuration manages. Filters combine; none lists every one.",
            plural(t.kind)
        ),
        attributes,
        blocks: vec![],
    }
}

/// The list resource schemas, keyed like the resource types they list.
pub fn schemas() -> HashMap<String, Schema> {
    tfschema::resources().iter().map(|t| (t.type_name.clone(), Schema { version: 0, block: Some(tfschema::to_proto_block(&config_block(t))) })).collect()
}

/// The filters of a list block: Terraform sends the `config` block's object, under `config`
/// when it sends the whole block. Returns them and the attribute path prefix to report under.
pub fn filter_values(config: &Val) -> (&Val, Vec<&'static str>) {
    match config.get("config") {
        nested @ Val::Obj(_) => (nested, vec!["config"]),
        _ => (config, vec![]),
    }
}

/// ValidateListResourceConfig: every filter value checked, each error on its attribute.
pub fn validate(t: &TypeSchema, config: &Val, diags: &mut Diagnostics) {
    let (config, prefix) = filter_values(config);
    let at = |name: &'static str| {
        let mut p = prefix.clone();
        p.push(name);
        path(&p)
    };
    for f in filters(t.kind) {
        let Val::Str(value) = config.get(f.name) else { continue };
        if value.trim().is_empty() {
            diags.error_at(at(f.name), format!("Empty {}", f.name), format!("{} is empty: leave it out to list all {}", f.name, plural(t.kind)));
            continue;
        }
        if let Some(values) = f.values.as_ref().filter(|v| !v.contains(value)) {
            diags.error_at(
                at(f.name),
                format!("Invalid value for {}", f.name),
                format!("{value:?} is not a {} {}: use one of {}", t.kind, f.name, values.join(", ")),
            );
        }
        if let Some(kind) = f.reference {
            let prefix = format!("{}-", kind.schema().id_prefix);
            if !value.starts_with(&prefix) {
                diags.error_at(
                    at(f.name),
                    format!("Invalid value for {}", f.name),
                    format!(
                        "{value:?} is not a {kind} id: {kind} ids look like {prefix}… (e.g. novacron_{}.x.id)",
                        kind.schema().terraform_type.trim_start_matches("novacron_")
                    ),
                );
            }
        }
    }
}

/// The list endpoint query of a `config` block.
pub fn query(kind: Kind, config: &Val) -> ListQuery {
    let (config, _) = filter_values(config);
    let mut query = ListQuery::default();
    for f in filters(kind) {
        if let Some(value) = config.get(f.name).as_str() {
            // Every filter is a ListQuery field: the client's test checks each x-list-filter.
            query.set_filter(f.name, value.to_string());
        }
    }
    query
}

/// How a result is shown to a person: its name, id and the facts that tell objects apart.
pub fn display_name(kind: Kind, object: &Object) -> String {
    let text = |k: &str| object.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
    let num = |k: &str| object.get(k).map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let facts = match kind {
        Kind::Vm => format!("{}, {} vCPU, {} GiB", text("status"), num("cpu_cores"), num("memory_gb")),
        Kind::Network => text("cidr"),
        Kind::Volume => match object.get("attached_to").and_then(|v| v.as_str()) {
            Some(vm) => format!("{} GiB, attached to {vm}", num("size_gb")),
            None => format!("{} GiB, detached", num("size_gb")),
        },
        Kind::Policy => text("enforcement_mode"),
        Kind::Template => text("os"),
    };
    format!("{} ({}, {facts})", text("name"), object.id())
}

/// ListResource: sends up to `limit` results (Terraform's default is 100; 0 or less means no
/// limit), then stops; an API error ends the stream with one event carrying the diagnostic.
pub async fn run(ctx: Ctx, t: &'static TypeSchema, config: Val, include: bool, limit: i64, tx: mpsc::Sender<Result<list_resource::Event, Status>>) {
    let limit = if limit <= 0 { i64::MAX } else { limit };
    let mut query = query(t.kind, &config);
    let mut sent = 0i64;
    loop {
        query.page_size = Some(u32::try_from((limit - sent).min(PAGE_SIZE)).unwrap_or(PAGE_SIZE as u32));
        let page = match ctx.client.list_page(t.kind, &query).await {
            Ok(page) => page,
            Err(e) => {
                let mut diags = Diagnostics::default();
                report_api_error(&mut diags, &t.block, &format!("Listing {}", t.type_name), &e);
                let _ = tx.send(Ok(list_resource::Event { diagnostic: diags.0, ..Default::default() })).await;
                return;
            }
        };
        for object in &page.items {
            let event = list_resource::Event {
                identity: Some(crate::identity::data(object.id())),
                display_name: display_name(t.kind, object),
                resource_object: include.then(|| block_from_object(&t.block, object.as_map(), &Val::Null).to_dynamic()),
                diagnostic: vec![],
            };
            if tx.send(Ok(event)).await.is_err() {
                return; // Terraform stopped reading.
            }
            sent += 1;
            if sent >= limit {
                return;
            }
        }
        match page.next_page_token {
            Some(token) => query.page_token = Some(token),
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Val {
        Val::Obj(pairs.iter().map(|(k, v)| (k.to_string(), Val::Str(v.to_string()))).collect::<BTreeMap<_, _>>())
    }

    fn errors(type_name: &str, pairs: &[(&str, &str)]) -> Vec<String> {
        let mut diags = Diagnostics::default();
        validate(tfschema::resource(type_name).expect("type"), &config(pairs), &mut diags);
        diags.0.into_iter().map(|d| d.detail).collect()
    }

    #[test]
    fn every_kind_filters_by_name_prefix_and_its_own_attributes() {
        let names = |k: Kind| filters(k).into_iter().map(|f| f.name).collect::<Vec<_>>();
        assert_eq!(names(Kind::Vm), ["name_prefix", "network_id", "status"]);
        assert_eq!(names(Kind::Network), ["name_prefix"]);
        assert_eq!(names(Kind::Volume), ["name_prefix", "attached_to"]);
        assert_eq!(names(Kind::Policy), ["name_prefix", "enforcement_mode"]);
        assert_eq!(schemas().len(), 4);
        let q = query(Kind::Vm, &config(&[("name_prefix", "web-"), ("status", "running")]));
        assert_eq!((q.name_prefix.as_deref(), q.status.as_deref(), q.network_id), (Some("web-"), Some("running"), None));
    }

    #[test]
    fn bad_filter_values_name_the_filter_and_the_fix() {
        assert!(errors("novacron_vm", &[("status", "running"), ("network_id", "net-1"), ("name_prefix", "web")]).is_empty());
        let bad = errors("novacron_vm", &[("status", "up")]);
        assert!(bad[0].contains("\"up\" is not a vm status: use one of provisioning, running"), "{bad:?}");
        let bad = errors("novacron_vm", &[("network_id", "core")]);
        assert!(bad[0].contains("is not a network id: network ids look like net-"), "{bad:?}");
        let bad = errors("novacron_policy", &[("enforcement_mode", "deny")]);
        assert!(bad[0].contains("use one of block, warn, audit"), "{bad:?}");
        let bad = errors("novacron_network", &[("name_prefix", " ")]);
        assert!(bad[0].contains("leave it out to list all networks"), "{bad:?}");
    }
}
