//! The values calls return: objects, pages, deletion results, change-feed events.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A platform object as the API serves it: `id`, `name`, `created_at`, `updated_at`,
/// `version` and the kind's own attributes, kept as untyped JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Object(pub Map<String, Value>);

impl Object {
    /// The object's id, or `""` when absent.
    pub fn id(&self) -> &str {
        self.str_field("id").unwrap_or("")
    }

    /// The object's name, or `""` when absent.
    pub fn name(&self) -> &str {
        self.str_field("name").unwrap_or("")
    }

    /// The object's version (bumped on every change), or 0 when absent.
    pub fn version(&self) -> i64 {
        self.0.get("version").and_then(Value::as_i64).unwrap_or(0)
    }

    /// The lifecycle status (`provisioning`, `running`, `deleting`, ...) of kinds that have one.
    pub fn status(&self) -> Option<&str> {
        self.str_field("status")
    }

    /// One attribute.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Every attribute.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The attributes, by value.
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }
}

impl From<Map<String, Value>> for Object {
    fn from(map: Map<String, Value>) -> Self {
        Object(map)
    }
}

/// A successful answer with the headers that carry meaning.
#[derive(Debug, Clone)]
pub struct Response<T> {
    /// The decoded body.
    pub value: T,
    /// The `ETag` as sent, quoted (e.g. `"3"`), for use in `If-Match`.
    pub etag: Option<String>,
    /// The HTTP status (200, 201, 202, ...).
    pub status: u16,
    /// The text of each `Warning` header, e.g. from policies in `warn` mode.
    pub warnings: Vec<String>,
    /// Whether the server replayed the answer to an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Filters and paging for a list call. Filters combine (an object must match all of them);
/// one that the kind does not take is refused by the server with a 400 naming it. A page token
/// continues only the listing that issued it: send the same filters with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only objects with exactly this name.
    pub name: Option<String>,
    /// Only objects whose name starts with this (every kind).
    pub name_prefix: Option<String>,
    /// Only templates of this operating system (templates only).
    pub os: Option<String>,
    /// Only VMs on this network id (VMs only).
    pub network_id: Option<String>,
    /// Only VMs in this status: `provisioning`, `running`, `stopped`, `deleting` or `error` (VMs only).
    pub status: Option<String>,
    /// Only volumes attached to this VM id (volumes only).
    pub attached_to: Option<String>,
    /// Only policies with this enforcement mode: `block`, `warn` or `audit` (policies only).
    pub enforcement_mode: Option<String>,
    /// Objects per page, 1..=1000 (server default 100).
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

impl ListQuery {
    /// Sets the attribute filter `name` (an `x-list-filter` attribute of the schema, or
    /// `name_prefix`) to `value`; false when the query has no such filter.
    pub fn set_filter(&mut self, name: &str, value: String) -> bool {
        let field = match name {
            "name_prefix" => &mut self.name_prefix,
            "os" => &mut self.os,
            "network_id" => &mut self.network_id,
            "status" => &mut self.status,
            "attached_to" => &mut self.attached_to,
            "enforcement_mode" => &mut self.enforcement_mode,
            _ => return false,
        };
        *field = Some(value);
        true
    }

    /// The query parameters, in a stable order.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, String)> {
        let filters = [
            ("name", &self.name),
            ("name_prefix", &self.name_prefix),
            ("os", &self.os),
            ("network_id", &self.network_id),
            ("status", &self.status),
            ("attached_to", &self.attached_to),
            ("enforcement_mode", &self.enforcement_mode),
        ];
        let mut pairs: Vec<(&'static str, String)> = filters.into_iter().filter_map(|(key, value)| Some((key, value.clone()?))).collect();
        if let Some(size) = self.page_size {
            pairs.push(("page_size", size.to_string()));
        }
        if let Some(token) = &self.page_token {
            pairs.push(("page_token", token.clone()));
        }
        pairs
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    /// The objects on this page.
    pub items: Vec<Object>,
    /// The token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// The wire form of a page: the token may be missing, `null` or `""` on the last page.
#[derive(Deserialize)]
pub(crate) struct WirePage {
    items: Vec<Object>,
    #[serde(default)]
    next_page_token: Option<String>,
}

impl From<WirePage> for Page {
    fn from(wire: WirePage) -> Self {
        Page { items: wire.items, next_page_token: wire.next_page_token.filter(|t| !t.is_empty()) }
    }
}

/// What a delete answered.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// The object is gone (204).
    Gone,
    /// Deletion started and finishes asynchronously (202); the object with status `deleting`.
    Accepted(Object),
}

/// One record of the change feed, as the platform sends it.
pub use novacron_schemas::wire::Event;

/// An answer of the change feed.
#[derive(Debug, Clone, Deserialize)]
pub struct EventBatch {
    /// The events after the requested position, oldest first; empty when the wait ran out.
    pub events: Vec<Event>,
    /// The position to ask for next (`after=next`).
    pub next: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Object {
        serde_json::from_value(value).expect("an object")
    }

    #[test]
    fn accessors_read_the_common_fields() {
        let o = object(json!({"id": "vm-1", "name": "web", "version": 3, "status": "running", "cpu_cores": 2}));
        assert_eq!((o.id(), o.name(), o.version(), o.status()), ("vm-1", "web", 3, Some("running")));
        assert_eq!(o.get("cpu_cores"), Some(&json!(2)));
        assert_eq!(o.as_map().len(), 5);
    }

    #[test]
    fn missing_fields_read_as_empty() {
        let o = object(json!({"cidr": "10.0.0.0/24"}));
        assert_eq!((o.id(), o.name(), o.version(), o.status()), ("", "", 0, None));
    }

    #[test]
    fn objects_serialize_flat() {
        let o = object(json!({"id": "n1", "name": "net"}));
        assert_eq!(serde_json::to_value(&o).expect("serializes"), json!({"id": "n1", "name": "net"}));
    }

    #[test]
    fn empty_null_or_missing_page_token_means_last_page() {
        for body in [json!({"items": [], "next_page_token": ""}), json!({"items": [], "next_page_token": null}), json!({"items": []})] {
            let page: Page = serde_json::from_value::<WirePage>(body).expect("a page").into();
            assert_eq!(page.next_page_token, None);
        }
        let page: Page = serde_json::from_value::<WirePage>(json!({"items": [{"id": "a"}], "next_page_token": "t2"})).expect("a page").into();
        assert_eq!(page.next_page_token.as_deref(), Some("t2"));
        assert_eq!(page.items[0].id(), "a");
    }

    #[test]
    fn every_list_filter_of_the_schemas_has_a_field() {
        for kind in novacron_schemas::Kind::ALL {
            for attribute in kind.schema().list_filters() {
                let mut q = ListQuery::default();
                assert!(q.set_filter(&attribute.name, "x".into()), "{kind}: x-list-filter {} has no ListQuery field", attribute.name);
                let keys: Vec<&str> = q.pairs().iter().map(|(k, _)| *k).collect();
                assert_eq!(keys, [attribute.name.as_str()], "sent under its own name");
            }
        }
        assert!(!ListQuery::default().set_filter("cpu_cores", "2".into()));
    }

    #[test]
    fn list_query_pairs_skip_unset_fields() {
        let q = ListQuery { name: Some("web".into()), page_size: Some(500), ..ListQuery::default() };
        assert_eq!(q.pairs(), vec![("name", "web".to_string()), ("page_size", "500".to_string())]);
        assert!(ListQuery::default().pairs().is_empty());
        let filtered = ListQuery {
            name_prefix: Some("web-".into()),
            network_id: Some("net-1".into()),
            status: Some("running".into()),
            attached_to: Some("vm-1".into()),
            enforcement_mode: Some("warn".into()),
            page_token: Some("t".into()),
            ..ListQuery::default()
        };
        let keys: Vec<&str> = filtered.pairs().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["name_prefix", "network_id", "status", "attached_to", "enforcement_mode", "page_token"]);
    }

    #[test]
    fn events_decode_with_and_without_detail() {
        let batch: EventBatch = serde_json::from_value(json!({"events": [
            {"seq": 1, "time": "2026-01-01T00:00:00Z", "actor": "ci", "action": "create", "kind": "vms", "id": "vm-1", "name": "web"},
            {"seq": 2, "time": "2026-01-01T00:00:01Z", "actor": "ci", "action": "policy_audit", "kind": "vms", "id": "vm-1", "name": "web", "detail": "too big"}
        ], "next": 2}))
        .expect("a batch");
        assert_eq!(batch.next, 2);
        assert_eq!(batch.events[0].detail, None);
        assert_eq!(batch.events[1].detail.as_deref(), Some("too big"));
        let back = serde_json::to_value(&batch.events[0]).expect("serializes");
        assert!(back.get("detail").is_none());
    }
}
