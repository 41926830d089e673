//! The tfplugin5 Provider service: decodes requests, hands them to the resource logic,
//! and encodes answers. Problems travel as diagnostics, never as gRPC errors.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Duration;

use novacron_client::{Client, ClientConfig, DEFAULT_ENDPOINT};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::apply::{self, Ctx};
use crate::diag::{Diagnostics, path};
use crate::proto::tfplugin5::provider_server::Provider;
use crate::proto::tfplugin5::*;
use crate::tfschema::{self, TypeSchema};
use crate::value::Val;
use crate::{function, identity, list, plan, upgrade, validate, writeonly};

/// The provider: its configured client and the stop signal.
pub struct NovacronProvider {
    client: RwLock<Option<Client>>,
    stop: watch::Sender<bool>,
}

impl Default for NovacronProvider {
    fn default() -> Self {
        NovacronProvider { client: RwLock::new(None), stop: watch::channel(false).0 }
    }
}

fn decode(dv: Option<&DynamicValue>, what: &str, diags: &mut Diagnostics) -> Val {
    Val::from_dynamic(dv).unwrap_or_else(|e| {
        diags.error(format!("Cannot decode {what}"), e);
        Val::Null
    })
}

fn unknown_type(kind: &str, name: &str, diags: &mut Diagnostics) {
    diags.error(format!("Unknown {kind} type"), format!("this provider has no {kind} {name:?}"));
}

fn capabilities() -> ServerCapabilities {
    ServerCapabilities { plan_destroy: false, get_provider_schema_optional: true, move_resource_state: true }
}

impl NovacronProvider {
    fn ctx(&self, diags: &mut Diagnostics) -> Option<Ctx> {
        let client = self.client.read().unwrap_or_else(|p| p.into_inner()).clone();
        match client {
            Some(client) => Some(Ctx { client, stop: self.stop.subscribe() }),
            None => {
                diags.error("Provider not configured", "Terraform called the provider before Configure; this is a bug in the caller");
                None
            }
        }
    }

    /// Runs `work`, giving up with a diagnostic if Terraform calls Stop meanwhile.
    async fn cancellable<T: Default>(&self, diags: &mut Diagnostics, work: impl Future<Output = T>) -> T {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            out = work => out,
            _ = stop.wait_for(|s| *s) => {
                diags.error("Stopped", "Terraform asked the provider to stop; the operation was interrupted and may be partly done on the platform");
                T::default()
            }
        }
    }
}

/// Builds the client from the provider block, falling back to `env` (the process
/// environment in production) for the endpoint and key.
fn configure_client(config: &Val, env: impl Fn(&str) -> Option<String>, diags: &mut Diagnostics) -> Option<Client> {
    let cc = client_config(config, env, diags)?;
    match Client::new(cc) {
        Ok(c) => Some(c),
        Err(e) => {
            diags.error_at(path(&["endpoint"]), "Invalid provider configuration", e.to_string());
            None
        }
    }
}

/// The client settings of the provider block (with `env` fallbacks); warns when `insecure`.
fn client_config(config: &Val, env: impl Fn(&str) -> Option<String>, diags: &mut Diagnostics) -> Option<ClientConfig> {
    for key in ["endpoint", "api_key", "timeout", "max_retries", "ca_file", "insecure"] {
        if config.get(key) == &Val::Unknown {
            diags.error_at(
                path(&[key]),
                "Provider setting not known yet",
                format!(
                    "{key} depends on a value known only after apply; the provider needs it to plan, so use a literal, a variable or an environment variable"
                ),
            );
        }
    }
    if diags.has_errors() {
        return None;
    }
    let endpoint = config.get("endpoint").as_str().map(str::to_string).or_else(|| env("NOVACRON_ENDPOINT")).unwrap_or_else(|| DEFAULT_ENDPOINT.into());
    let Some(api_key) = config.get("api_key").as_str().map(str::to_string).or_else(|| env("NOVACRON_API_KEY")) else {
        diags.error_at(path(&["api_key"]), "Missing API key", "set api_key in the provider block or the NOVACRON_API_KEY environment variable");
        return None;
    };
    let mut cc = ClientConfig::new(endpoint, api_key);
    if let Some(t) = config.get("timeout").as_f64() {
        cc.timeout = Duration::from_secs_f64(t);
    }
    if let Some(r) = config.get("max_retries").as_f64() {
        cc.max_retries = r as u32;
    }
    cc.user_agent = format!("terraform-provider-novacron/{}", env!("CARGO_PKG_VERSION"));
    cc.ca_file = config.get("ca_file").as_str().map(str::to_string).or_else(|| env("NOVACRON_CA_FILE")).map(PathBuf::from);
    cc.insecure = match config.get("insecure") {
        Val::Bool(b) => *b,
        _ => env("NOVACRON_INSECURE").is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes")),
    };
    if cc.insecure {
        diags.warning(
            "TLS certificate not checked",
            "insecure is set (or NOVACRON_INSECURE): the platform's certificate is not verified, so anyone on the network path can read the API key; \
             set ca_file to your CA instead",
        );
    }
    Some(cc)
}

#[tonic::async_trait]
impl Provider for NovacronProvider {
    async fn get_metadata(&self, _: Request<get_metadata::Request>) -> Result<Response<get_metadata::Response>, Status> {
        Ok(Response::new(get_metadata::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: vec![],
            data_sources: tfschema::data_sources().iter().map(|d| get_metadata::DataSourceMetadata { type_name: d.type_name.clone() }).collect(),
            resources: tfschema::resources().iter().map(|r| get_metadata::ResourceMetadata { type_name: r.type_name.clone() }).collect(),
            functions: function::functions().iter().map(|f| get_metadata::FunctionMetadata { name: f.name.to_string() }).collect(),
            list_resources: tfschema::resources().iter().map(|r| get_metadata::ListResourceMetadata { type_name: r.type_name.clone() }).collect(),
        }))
    }

    async fn get_schema(&self, _: Request<get_provider_schema::Request>) -> Result<Response<get_provider_schema::Response>, Status> {
        let map = |types: &[TypeSchema]| types.iter().map(|t| (t.type_name.clone(), tfschema::to_proto(t))).collect::<HashMap<_, _>>();
        Ok(Response::new(get_provider_schema::Response {
            provider: Some(Schema { version: 0, block: Some(tfschema::to_proto_block(&tfschema::provider_block())) }),
            resource_schemas: map(tfschema::resources()),
            data_source_schemas: map(tfschema::data_sources()),
            functions: function::definitions(),
            list_resource_schemas: list::schemas(),
            diagnostics: vec![],
            provider_meta: None,
            server_capabilities: Some(capabilities()),
        }))
    }

    async fn prepare_provider_config(&self, req: Request<prepare_provider_config::Request>) -> Result<Response<prepare_provider_config::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "provider config", &mut diags);
        validate::provider(&config, &mut diags);
        Ok(Response::new(prepare_provider_config::Response { prepared_config: req.config, diagnostics: diags.0 }))
    }

    async fn validate_resource_type_config(
        &self,
        req: Request<validate_resource_type_config::Request>,
    ) -> Result<Response<validate_resource_type_config::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "config", &mut diags);
        match tfschema::resource(&req.type_name) {
            Some(t) => {
                validate::resource(t, &config, &mut diags);
                writeonly::validate(t, &config, req.client_capabilities.as_ref(), &mut diags);
            }
            None => unknown_type("resource", &req.type_name, &mut diags),
        }
        Ok(Response::new(validate_resource_type_config::Response { diagnostics: diags.0 }))
    }

    async fn validate_data_source_config(
        &self,
        req: Request<validate_data_source_config::Request>,
    ) -> Result<Response<validate_data_source_config::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "config", &mut diags);
        match tfschema::data_source(&req.type_name) {
            Some(t) => validate::data_source(t, &config, &mut diags),
            None => unknown_type("data source", &req.type_name, &mut diags),
        }
        Ok(Response::new(validate_data_source_config::Response { diagnostics: diags.0 }))
    }

    async fn upgrade_resource_state(&self, req: Request<upgrade_resource_state::Request>) -> Result<Response<upgrade_resource_state::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let state = match tfschema::resource(&req.type_name) {
            Some(t) => upgrade::upgrade(t, req.version, req.raw_state.as_ref(), &mut diags),
            None => {
                unknown_type("resource", &req.type_name, &mut diags);
                Val::Null
            }
        };
        Ok(Response::new(upgrade_resource_state::Response { upgraded_state: Some(state.to_dynamic()), diagnostics: diags.0 }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _: Request<get_resource_identity_schemas::Request>,
    ) -> Result<Response<get_resource_identity_schemas::Response>, Status> {
        Ok(Response::new(get_resource_identity_schemas::Response { identity_schemas: identity::schemas(), diagnostics: vec![] }))
    }

    async fn upgrade_resource_identity(
        &self,
        req: Request<upgrade_resource_identity::Request>,
    ) -> Result<Response<upgrade_resource_identity::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let upgraded = match tfschema::resource(&req.type_name) {
            Some(t) => identity::upgrade(req.version, req.raw_identity.as_ref())
                .map_err(|e| diags.error(format!("Cannot upgrade the identity of {}", t.type_name), e))
                .ok(),
            None => {
                unknown_type("resource", &req.type_name, &mut diags);
                None
            }
        };
        Ok(Response::new(upgrade_resource_identity::Response { upgraded_identity: upgraded, diagnostics: diags.0 }))
    }

    async fn configure(&self, req: Request<configure::Request>) -> Result<Response<configure::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "provider config", &mut diags);
        validate::provider(&config, &mut diags);
        if !diags.has_errors()
            && let Some(client) = configure_client(&config, |k| std::env::var(k).ok().filter(|v| !v.is_empty()), &mut diags)
        {
            *self.client.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
        }
        Ok(Response::new(configure::Response { diagnostics: diags.0 }))
    }

    async fn read_resource(&self, req: Request<read_resource::Request>) -> Result<Response<read_resource::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let current = decode(req.current_state.as_ref(), "state", &mut diags);
        let mut new_state = current.clone();
        if let (Some(t), Some(ctx)) = (tfschema::resource(&req.type_name), self.ctx(&mut diags))
            && !current.is_null()
        {
            let mut inner = Diagnostics::default();
            new_state = self.cancellable(&mut diags, apply::read(&ctx, t, &current, &mut inner)).await;
            diags.0.extend(inner.0);
            if diags.has_errors() && new_state.is_null() {
                new_state = current.clone();
            }
        }
        Ok(Response::new(read_resource::Response {
            new_identity: identity::of(&new_state),
            new_state: Some(new_state.to_dynamic()),
            diagnostics: diags.0,
            private: req.private,
        }))
    }

    async fn plan_resource_change(&self, req: Request<plan_resource_change::Request>) -> Result<Response<plan_resource_change::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let prior = decode(req.prior_state.as_ref(), "prior state", &mut diags);
        let config = decode(req.config.as_ref(), "config", &mut diags);
        let proposed = decode(req.proposed_new_state.as_ref(), "proposed state", &mut diags);
        let Some(t) = tfschema::resource(&req.type_name) else {
            unknown_type("resource", &req.type_name, &mut diags);
            return Ok(Response::new(plan_resource_change::Response { planned_state: req.proposed_new_state, diagnostics: diags.0, ..Default::default() }));
        };
        let config = if proposed.is_null() { Val::Null } else { config };
        let planned = plan::plan(t, &prior, &config);
        // The identity is the id, which an update keeps; a create learns it at apply.
        let planned_identity = if planned.state.is_null() { None } else { identity::of(&prior) };
        Ok(Response::new(plan_resource_change::Response {
            planned_state: Some(planned.state.to_dynamic()),
            requires_replace: planned.requires_replace,
            planned_private: req.prior_private,
            diagnostics: diags.0,
            planned_identity,
        }))
    }

    async fn apply_resource_change(&self, req: Request<apply_resource_change::Request>) -> Result<Response<apply_resource_change::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let prior = decode(req.prior_state.as_ref(), "prior state", &mut diags);
        let planned = decode(req.planned_state.as_ref(), "planned state", &mut diags);
        let config = decode(req.config.as_ref(), "config", &mut diags);
        let mut new_state = prior.clone();
        if let (Some(t), Some(ctx)) = (tfschema::resource(&req.type_name), self.ctx(&mut diags))
            && !diags.has_errors()
        {
            let mut inner = Diagnostics::default();
            let result = self.cancellable(&mut diags, apply::apply(&ctx, t, &prior, &planned, &config, &mut inner)).await;
            diags.0.extend(inner.0);
            new_state = if diags.0.iter().any(|d| d.summary == "Stopped") { prior.clone() } else { result };
        }
        Ok(Response::new(apply_resource_change::Response {
            new_identity: identity::of(&new_state),
            new_state: Some(new_state.to_dynamic()),
            private: req.planned_private,
            diagnostics: diags.0,
        }))
    }

    async fn import_resource_state(&self, req: Request<import_resource_state::Request>) -> Result<Response<import_resource_state::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let mut imported = vec![];
        // `import { identity = { id = ... } }` (Terraform >= 1.12) sends the identity and no id.
        let id = match req.identity.as_ref().filter(|_| req.id.trim().is_empty()) {
            Some(identity) => identity::id_of(identity).map_err(|e| diags.error("Invalid import identity", e)).unwrap_or_default(),
            None => req.id.trim().to_string(),
        };
        match (tfschema::resource(&req.type_name), self.ctx(&mut diags)) {
            (Some(t), Some(ctx)) if !id.is_empty() => {
                let state = apply::import(&ctx, t, &id, &mut diags).await;
                if !state.is_null() {
                    imported.push(import_resource_state::ImportedResource {
                        type_name: t.type_name.clone(),
                        identity: identity::of(&state),
                        state: Some(state.to_dynamic()),
                        private: vec![],
                    });
                }
            }
            (Some(_), Some(_)) if !diags.has_errors() => {
                diags.error(format!("Missing id to import {}", req.type_name), "give the platform id of the object, e.g. terraform import ADDRESS vm-…");
            }
            (None, _) => unknown_type("resource", &req.type_name, &mut diags),
            _ => {}
        }
        Ok(Response::new(import_resource_state::Response { imported_resources: imported, diagnostics: diags.0 }))
    }

    async fn move_resource_state(&self, req: Request<move_resource_state::Request>) -> Result<Response<move_resource_state::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let state = match tfschema::resource(&req.target_type_name) {
            Some(t) => {
                upgrade::move_state(t, &req.source_provider_address, &req.source_type_name, req.source_schema_version, req.source_state.as_ref(), &mut diags)
            }
            None => {
                unknown_type("resource", &req.target_type_name, &mut diags);
                Val::Null
            }
        };
        Ok(Response::new(move_resource_state::Response {
            target_identity: identity::of(&state),
            target_state: Some(state.to_dynamic()),
            diagnostics: diags.0,
            target_private: req.source_private,
        }))
    }

    async fn read_data_source(&self, req: Request<read_data_source::Request>) -> Result<Response<read_data_source::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "config", &mut diags);
        let mut state = Val::Null;
        match (tfschema::data_source(&req.type_name), self.ctx(&mut diags)) {
            (Some(t), Some(ctx)) => {
                let mut inner = Diagnostics::default();
                state = self.cancellable(&mut diags, apply::read_data_source(&ctx, t, &config, &mut inner)).await;
                diags.0.extend(inner.0);
            }
            (None, _) => unknown_type("data source", &req.type_name, &mut diags),
            _ => {}
        }
        Ok(Response::new(read_data_source::Response { state: Some(state.to_dynamic()), diagnostics: diags.0 }))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        req: Request<validate_ephemeral_resource_config::Request>,
    ) -> Result<Response<validate_ephemeral_resource_config::Response>, Status> {
        let mut diags = Diagnostics::default();
        unknown_type("ephemeral resource", &req.into_inner().type_name, &mut diags);
        Ok(Response::new(validate_ephemeral_resource_config::Response { diagnostics: diags.0 }))
    }

    type ListResourceStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<list_resource::Event, Status>> + Send>>;

    async fn list_resource(&self, req: Request<list_resource::Request>) -> Result<Response<Self::ListResourceStream>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "list config", &mut diags);
        let t = tfschema::resource(&req.type_name);
        if t.is_none() {
            unknown_type("list resource", &req.type_name, &mut diags);
        }
        if let Some(t) = t {
            list::validate(t, &config, &mut diags);
        }
        let ctx = self.ctx(&mut diags);
        match (t, ctx) {
            (Some(t), Some(ctx)) if !diags.has_errors() => {
                let (tx, rx) = tokio::sync::mpsc::channel(64);
                let mut stop = self.stop.subscribe();
                tokio::spawn(async move {
                    tokio::select! {
                        () = list::run(ctx, t, config, req.include_resource_object, req.limit, tx) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                });
                Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
            }
            _ => {
                let event = list_resource::Event { diagnostic: diags.0, ..Default::default() };
                Ok(Response::new(Box::pin(tokio_stream::iter([Ok(event)]))))
            }
        }
    }

    async fn validate_list_resource_config(
        &self,
        req: Request<validate_list_resource_config::Request>,
    ) -> Result<Response<validate_list_resource_config::Response>, Status> {
        let req = req.into_inner();
        let mut diags = Diagnostics::default();
        let config = decode(req.config.as_ref(), "list config", &mut diags);
        match tfschema::resource(&req.type_name) {
            Some(t) => list::validate(t, &config, &mut diags),
            None => unknown_type("list resource", &req.type_name, &mut diags),
        }
        if let Ok(Val::Num(limit)) = Val::from_dynamic(req.limit.as_ref())
            && (limit < 0.0 || limit.fract() != 0.0)
        {
            diags.error_at(path(&["limit"]), "Invalid limit", format!("limit must be a whole number of results, 0 or more, not {limit}"));
        }
        Ok(Response::new(validate_list_resource_config::Response { diagnostics: diags.0 }))
    }

    async fn get_functions(&self, _: Request<get_functions::Request>) -> Result<Response<get_functions::Response>, Status> {
        Ok(Response::new(get_functions::Response { functions: function::definitions(), diagnostics: vec![] }))
    }

    async fn call_function(&self, req: Request<call_function::Request>) -> Result<Response<call_function::Response>, Status> {
        let req = req.into_inner();
        Ok(Response::new(match function::call(&req.name, &req.arguments) {
            Ok(result) => call_function::Response { result: Some(result), error: None },
            Err(error) => call_function::Response { result: None, error: Some(error) },
        }))
    }

    async fn stop(&self, _: Request<stop::Request>) -> Result<Response<stop::Response>, Status> {
        self.stop.send_replace(true);
        Ok(Response::new(stop::Response { error: String::new() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stop_interrupts_work_in_flight() {
        let provider = std::sync::Arc::new(NovacronProvider::default());
        let p = provider.clone();
        let worker = tokio::spawn(async move {
            let mut diags = Diagnostics::default();
            let v: Val = p
                .cancellable(&mut diags, async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Val::Bool(true)
                })
                .await;
            (v, diags)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        provider.stop(Request::new(stop::Request {})).await.expect("stop");
        let (v, diags) = tokio::time::timeout(Duration::from_secs(5), worker).await.expect("stopped promptly").expect("task");
        assert_eq!(v, Val::Null);
        assert_eq!(diags.0[0].summary, "Stopped");
    }

    #[tokio::test]
    async fn calls_before_configure_say_so() {
        let provider = NovacronProvider::default();
        let resp = provider
            .read_resource(Request::new(read_resource::Request {
                type_name: "novacron_vm".into(),
                current_state: Some(Val::Null.to_dynamic()),
                ..Default::default()
            }))
            .await
            .expect("read")
            .into_inner();
        assert_eq!(resp.diagnostics[0].summary, "Provider not configured");
    }

    #[test]
    fn missing_api_key_is_an_error_on_the_attribute() {
        let mut diags = Diagnostics::default();
        assert!(configure_client(&Val::Obj(Default::default()), |_| None, &mut diags).is_none());
        assert_eq!(diags.0[0].summary, "Missing API key");
        let mut diags = Diagnostics::default();
        let unknown = Val::Obj([("endpoint".to_string(), Val::Unknown)].into_iter().collect());
        assert!(configure_client(&unknown, |_| None, &mut diags).is_none());
        assert_eq!(diags.0[0].summary, "Provider setting not known yet");
    }

    fn block(pairs: &[(&str, Val)]) -> Val {
        Val::Obj(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn ca_file_and_insecure_reach_the_client_config_from_the_block_or_the_environment() {
        let mut diags = Diagnostics::default();
        let config = block(&[("api_key", Val::Str("k".into())), ("ca_file", Val::Str("/etc/novacron/ca.pem".into()))]);
        let cc = client_config(&config, |_| None, &mut diags).expect("a config");
        assert_eq!(cc.ca_file, Some(PathBuf::from("/etc/novacron/ca.pem")));
        assert!(!cc.insecure);
        assert!(diags.0.is_empty(), "{:?}", diags.0);

        let env = |k: &str| match k {
            "NOVACRON_API_KEY" => Some("k".to_string()),
            "NOVACRON_CA_FILE" => Some("/from/env.pem".to_string()),
            "NOVACRON_INSECURE" => Some("true".to_string()),
            _ => None,
        };
        let mut diags = Diagnostics::default();
        let cc = client_config(&block(&[]), env, &mut diags).expect("a config");
        assert_eq!(cc.ca_file, Some(PathBuf::from("/from/env.pem")));
        assert!(cc.insecure);
        assert_eq!(diags.0.len(), 1);
        assert_eq!(diags.0[0].severity, diagnostic::Severity::Warning as i32);
        assert_eq!(diags.0[0].summary, "TLS certificate not checked");

        // The block wins over the environment.
        let mut diags = Diagnostics::default();
        let cc = client_config(&block(&[("insecure", Val::Bool(false))]), env, &mut diags).expect("a config");
        assert!(!cc.insecure);
        assert!(diags.0.is_empty());
    }
}
