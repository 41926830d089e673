//! terraform-provider-novacron: a Terraform provider for the NovaCron platform, speaking
//! plugin protocol 5 over gRPC (tonic + prost).
//!
//! One file per concept: `server` (go-plugin handshake and listener), `tls` (AutoMTLS),
//! `plugin_services` (go-plugin side services), `grpc` (the thin tfplugin5 service),
//! `tfschema` (schemas derived from `schemas/`), `value` (msgpack/JSON values), `plan`
//! (pure planning), `apply` (platform calls), `state` (object <-> state), `validate`,
//! `upgrade`, `function` (`policy_eval`), `identity` (resource identity), `list` (list resources for `terraform query`),
//! `writeonly` (the write-only twins) and `diag`.

pub mod apply;
pub mod diag;
pub mod docs;
pub mod function;
pub mod grpc;
pub mod identity;
pub mod list;
pub mod plan;
pub mod plugin_services;
pub mod server;
pub mod state;
pub mod tfschema;
pub mod tls;
pub mod upgrade;
pub mod validate;
pub mod value;
pub mod writeonly;

/// Code generated from `proto/` by `build.rs`.
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]
pub mod proto {
    /// Terraform plugin protocol 5.
    pub mod tfplugin5 {
        tonic::include_proto!("tfplugin5");
    }
    /// go-plugin's side services.
    pub mod plugin {
        tonic::include_proto!("plugin");
    }
}
