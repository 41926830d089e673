//! The last-applied view: Terraform's state (format version 4) read into API-shaped attributes per resource address.
//!
//! Terraform's state is what the last `apply` left: the object id of every managed resource and
//! the values it applied. The reconciler reads it from the configuration's backend (the
//! platform's `/v1/tfstate/{workspace}`) or from a local file, and never writes it itself:
//! only Terraform does.

use std::collections::HashMap;

use novacron_schemas::{AttrType, Kind};
use serde_json::{Map, Value};

use crate::source::SourceTree;

/// Where the reconciler reads Terraform's state from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSource {
    /// The platform's state backend, `/v1/tfstate/{workspace}`.
    Platform {
        /// The workspace name.
        workspace: String,
    },
    /// A local state file (`--tfstate FILE`).
    File(std::path::PathBuf),
}

impl std::fmt::Display for StateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateSource::Platform { workspace } => write!(f, "the platform's state workspace {workspace:?}"),
            StateSource::File(path) => write!(f, "state file {}", path.display()),
        }
    }
}

/// One managed `novacron_*` resource instance as the last apply left it.
#[derive(Clone, PartialEq)]
pub struct AppliedResource {
    /// Its address, e.g. `module.store["a"].novacron_storage.this` or `novacron_vm.web[0]`.
    pub address: String,
    /// Its kind.
    pub kind: Kind,
    /// The platform object's id.
    pub id: String,
    /// Its `name` as applied.
    pub name: String,
    /// Every settable attribute Terraform recorded, by API name (`firewall_rules`), nulls left out;
    /// for a write-only attribute whose value the state does not hold (it was given through its
    /// write-only twin, `user_data_wo`), its hash attribute (`user_data_sha256`) instead.
    pub attributes: Map<String, Value>,
}

/// Shows attribute names only: state values may be sensitive (`user_data`).
impl std::fmt::Debug for AppliedResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppliedResource")
            .field("address", &self.address)
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("name", &self.name)
            .field("attributes", &self.attributes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A whole state snapshot: its identity and the `novacron_*` resources in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedState {
    /// Increases with every write.
    pub serial: u64,
    /// Identifies the state's history.
    pub lineage: String,
    /// The Terraform version that wrote it.
    pub terraform_version: String,
    /// The managed `novacron_*` resource instances, in state order.
    pub resources: Vec<AppliedResource>,
}

impl AppliedState {
    /// The resources by address.
    pub fn by_address(&self) -> HashMap<&str, &AppliedResource> {
        self.resources.iter().map(|r| (r.address.as_str(), r)).collect()
    }
}

/// Why a state snapshot cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateReadError {
    /// Not JSON, or not a Terraform state.
    #[error("{source_name}: not a Terraform state: {detail}")]
    Malformed {
        /// Where it came from.
        source_name: String,
        /// What is wrong.
        detail: String,
    },
    /// A state format this reconciler does not read.
    #[error("{source_name}: state format version {version} is not supported (Terraform 0.12 and later write version 4)")]
    Version {
        /// Where it came from.
        source_name: String,
        /// The `version` field.
        version: u64,
    },
    /// A local state file could not be read.
    #[error("--tfstate {path}: {detail}")]
    File {
        /// The file.
        path: String,
        /// What the file system said.
        detail: String,
    },
}

/// Parses a state snapshot (`source_name` names it in errors). Resources of other providers and
/// data sources are skipped; an instance without an id (a create that never finished) too.
pub fn parse_state(text: &[u8], source_name: &str) -> Result<AppliedState, StateReadError> {
    let malformed = |detail: String| StateReadError::Malformed { source_name: source_name.to_string(), detail };
    let doc: Value = serde_json::from_slice(text).map_err(|e| malformed(e.to_string()))?;
    let version = doc.get("version").and_then(Value::as_u64).ok_or_else(|| malformed("it has no \"version\"".into()))?;
    if version != 4 {
        return Err(StateReadError::Version { source_name: source_name.to_string(), version });
    }
    let mut state = AppliedState {
        serial: doc.get("serial").and_then(Value::as_u64).unwrap_or(0),
        lineage: doc.get("lineage").and_then(Value::as_str).unwrap_or("").to_string(),
        terraform_version: doc.get("terraform_version").and_then(Value::as_str).unwrap_or("").to_string(),
        resources: Vec::new(),
    };
    let empty = Map::new();
    for r in doc.get("resources").and_then(Value::as_array).into_iter().flatten() {
        if r.get("mode").and_then(Value::as_str) != Some("managed") {
            continue;
        }
        let Some(kind) = r.get("type").and_then(Value::as_str).and_then(Kind::from_terraform_type) else { continue };
        let name = r.get("name").and_then(Value::as_str).unwrap_or("");
        let module = r.get("module").and_then(Value::as_str).filter(|m| !m.is_empty());
        for inst in r.get("instances").and_then(Value::as_array).into_iter().flatten() {
            let attrs = inst.get("attributes").and_then(Value::as_object);
            let Some(id) = attrs.and_then(|a| a.get("id")).and_then(Value::as_str).filter(|id| !id.is_empty()) else { continue };
            let base = format!("{}.{name}", kind.terraform_type());
            let mut address = match module {
                Some(m) => format!("{m}.{base}"),
                None => base,
            };
            match inst.get("index_key") {
                Some(Value::Number(n)) => address.push_str(&format!("[{n}]")),
                Some(Value::String(k)) => address.push_str(&format!("[{}]", serde_json::to_string(k).unwrap_or_default())),
                _ => {}
            }
            let attrs = attrs.unwrap_or(&empty);
            let mut attributes = api_attributes(kind, attrs);
            keep_hashes(kind, attrs, &mut attributes);
            let applied_name = attributes.get("name").and_then(Value::as_str).unwrap_or("").to_string();
            state.resources.push(AppliedResource { address, kind, id: id.to_string(), name: applied_name, attributes });
        }
    }
    Ok(state)
}

/// Reads a local state file; a missing file is no state yet (`None`).
pub fn read_state_file(path: &std::path::Path) -> Result<Option<AppliedState>, StateReadError> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(bytes) => parse_state(&bytes, &format!("state file {}", path.display())).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StateReadError::File { path: path.display().to_string(), detail: e.to_string() }),
    }
}

/// The backend the configuration in `dir` declares: `Some("http")`, `Some("local")`, ... or `None`
/// for none; with an `http` backend whose literal `address` points at `/v1/tfstate/<workspace>`,
/// that workspace too.
pub fn declared_backend(tree: &dyn SourceTree, dir: &str) -> Option<(String, Option<String>)> {
    for name in tree.files(dir)?.into_iter().filter(|n| n.ends_with(".tf")) {
        let path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        let Some(body) = tree.read(&path).and_then(|text| hcl::parse(&text).ok()) else { continue };
        for terraform in body.blocks().filter(|b| b.identifier() == "terraform") {
            if let Some(backend) = terraform.body().blocks().find(|b| b.identifier() == "backend") {
                let kind = backend.labels().first().map(|l| l.as_str().to_string()).unwrap_or_default();
                let workspace = backend
                    .body()
                    .attributes()
                    .find(|a| a.key() == "address")
                    .and_then(|a| match a.expr() {
                        hcl::Expression::String(s) => Some(s.clone()),
                        _ => None,
                    })
                    .and_then(|address| workspace_of_address(&address));
                return Some((kind, workspace));
            }
        }
    }
    None
}

/// `prod` from `https://host/v1/tfstate/prod`.
pub fn workspace_of_address(address: &str) -> Option<String> {
    let (_, rest) = address.split_once("/v1/tfstate/")?;
    let ws = rest.split(['/', '?']).next().filter(|w| !w.is_empty())?;
    Some(ws.to_string())
}

/// Keeps the hash attribute (`user_data_sha256`) of every write-only attribute the state holds no
/// value of: a value given through the write-only twin (`user_data_wo`) never reaches the state,
/// and its hash is then all that says what was applied.
fn keep_hashes(kind: Kind, state: &Map<String, Value>, out: &mut Map<String, Value>) {
    for attr in kind.schema().settable() {
        let Some(hash_attr) = &attr.hash_attribute else { continue };
        if out.contains_key(&attr.name) {
            continue;
        }
        if let Some(hash) = state.get(hash_attr).filter(|v| v.is_string()) {
            out.insert(hash_attr.clone(), hash.clone());
        }
    }
}

/// The settable attributes of a state instance, renamed to API names (a block list such as
/// `firewall_rule` becomes `firewall_rules`); null values are left out, as the API leaves them.
pub fn api_attributes(kind: Kind, state: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for attr in kind.schema().settable() {
        let value = match &attr.ty {
            AttrType::Blocks { block_name, attributes } => {
                let items = state.get(block_name).and_then(Value::as_array).map(|items| {
                    items
                        .iter()
                        .map(|item| {
                            let fields = item.as_object().map(|o| {
                                attributes
                                    .iter()
                                    .filter_map(|a| o.get(&a.name).filter(|v| !v.is_null()).map(|v| (a.name.clone(), v.clone())))
                                    .collect::<Map<String, Value>>()
                            });
                            Value::Object(fields.unwrap_or_default())
                        })
                        .collect::<Vec<_>>()
                });
                items.map(Value::Array)
            }
            _ => state.get(&attr.name).cloned(),
        };
        if let Some(v) = value.filter(|v| !v.is_null()) {
            out.insert(attr.name.clone(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state() -> Value {
        json!({
            "version": 4, "terraform_version": "1.15.5", "serial": 7, "lineage": "abc",
            "resources": [
                {"mode": "data", "type": "novacron_template", "name": "ubuntu", "instances": [{"attributes": {"id": "tpl-1"}}]},
                {"mode": "managed", "type": "novacron_network", "name": "core", "instances": [{"attributes": {
                    "id": "net-1", "name": "core", "cidr": "10.0.0.0/24", "status": "active", "mtu": null,
                    "firewall_rule": [{"direction": "ingress", "ports": "22", "cidr": null, "protocol": "tcp", "action": "allow"}],
                    "timeouts": null}}]},
                {"mode": "managed", "type": "novacron_vm", "name": "web", "instances": [
                    {"index_key": 0, "attributes": {"id": "vm-1", "name": "web-1", "memory_gb": 4, "user_data": "secret"}},
                    {"index_key": 1, "attributes": {"id": "", "name": "web-2"}}]},
                {"mode": "managed", "module": "module.store[\"alpha\"]", "type": "novacron_storage", "name": "this",
                    "instances": [{"attributes": {"id": "vol-1", "name": "alpha", "size_gb": 10}}]},
                {"mode": "managed", "type": "random_id", "name": "x", "instances": [{"attributes": {"id": "r"}}]},
                {"mode": "managed", "type": "novacron_storage", "name": "keyed", "instances": [{"index_key": "a\"b", "attributes": {"id": "vol-2", "name": "k"}}]}
            ]
        })
    }

    #[test]
    fn reads_managed_novacron_instances_with_addresses_and_api_names() {
        let s = parse_state(state().to_string().as_bytes(), "t").expect("parses");
        assert_eq!((s.serial, s.lineage.as_str(), s.terraform_version.as_str()), (7, "abc", "1.15.5"));
        let addresses: Vec<&str> = s.resources.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(
            addresses,
            ["novacron_network.core", "novacron_vm.web[0]", "module.store[\"alpha\"].novacron_storage.this", "novacron_storage.keyed[\"a\\\"b\"]"]
        );
        let net = &s.resources[0];
        assert_eq!(net.id, "net-1");
        assert_eq!(net.attributes["firewall_rules"], json!([{"direction": "ingress", "ports": "22", "protocol": "tcp", "action": "allow"}]));
        assert!(!net.attributes.contains_key("status") && !net.attributes.contains_key("mtu") && !net.attributes.contains_key("timeouts"));
        assert_eq!(s.resources[1].name, "web-1");
        assert!(!format!("{:?}", s.resources[1]).contains("secret"), "Debug hides values");
    }

    #[test]
    fn a_value_given_write_only_is_known_by_its_hash() {
        // As Terraform >= 1.11 records a VM whose user data came through user_data_wo.
        let state = json!({"version": 4, "serial": 1, "lineage": "l", "resources": [
            {"mode": "managed", "type": "novacron_vm", "name": "wo", "instances": [{"attributes": {
                "id": "vm-1", "name": "wo", "user_data": null, "user_data_wo": null, "user_data_wo_version": 2, "user_data_sha256": "abc"}}]},
            {"mode": "managed", "type": "novacron_vm", "name": "plain", "instances": [{"attributes": {
                "id": "vm-2", "name": "plain", "user_data": "secret", "user_data_sha256": "def"}}]},
            {"mode": "managed", "type": "novacron_vm", "name": "none", "instances": [{"attributes": {
                "id": "vm-3", "name": "none", "user_data": null, "user_data_sha256": null}}]}]});
        let s = parse_state(state.to_string().as_bytes(), "t").expect("parses");
        let keys = |i: usize| {
            let mut keys: Vec<&str> = s.resources[i].attributes.keys().map(String::as_str).collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(0), ["name", "user_data_sha256"], "the hash instead of the value; the twin and its version are Terraform's");
        assert_eq!(s.resources[0].attributes["user_data_sha256"], json!("abc"));
        assert_eq!(keys(1), ["name", "user_data"], "the value itself when the state has it");
        assert_eq!(keys(2), ["name"]);
    }

    #[test]
    fn other_versions_and_garbage_are_clear_errors() {
        let err = parse_state(br#"{"version": 3}"#, "state file x").expect_err("v3");
        assert!(err.to_string().contains("format version 3"), "{err}");
        let err = parse_state(b"not json", "state file x").expect_err("garbage");
        assert!(err.to_string().starts_with("state file x: not a Terraform state"), "{err}");
    }

    #[test]
    fn the_backend_and_its_workspace_come_from_the_configuration() {
        use crate::source::MemoryTree;
        let tree = MemoryTree::new([
            ("infra/main.tf", "terraform {\n  backend \"http\" {\n    address = \"http://127.0.0.1:8080/v1/tfstate/prod\"\n    username = \"t\"\n  }\n}\n"),
            ("other/main.tf", "terraform {\n  backend \"http\" {}\n}\n"),
            ("none/main.tf", "resource \"novacron_vm\" \"a\" {}\n"),
        ]);
        assert_eq!(declared_backend(&tree, "infra"), Some(("http".into(), Some("prod".into()))));
        assert_eq!(declared_backend(&tree, "other"), Some(("http".into(), None)));
        assert_eq!(declared_backend(&tree, "none"), None);
        assert_eq!(workspace_of_address("https://h/v1/tfstate/a-b?x=1").as_deref(), Some("a-b"));
    }

    #[test]
    fn a_missing_or_empty_file_is_no_state() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_state_file(&dir.path().join("none.tfstate")).expect("missing"), None);
        std::fs::write(dir.path().join("empty.tfstate"), "\n").expect("write");
        assert_eq!(read_state_file(&dir.path().join("empty.tfstate")).expect("empty"), None);
    }
}
