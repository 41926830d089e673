//! Client for the NovaCron platform API v1: typed calls per kind, dry runs, pagination, ETags, problem+json errors, retries, Terraform state reads.
//!
//! ```no_run
//! # async fn demo() -> Result<(), novacron_client::Error> {
//! use novacron_client::{Client, ClientConfig, Kind};
//!
//! let client = Client::new(ClientConfig::new("http://127.0.0.1:8080", "secret"))?;
//! let created = client.create(Kind::Network, &serde_json::json!({"name": "net", "cidr": "10.0.0.0/24"})).await?;
//! let id = created.value.id().to_string();
//! client.patch(Kind::Network, &id, &serde_json::json!({"mtu": 9000}), created.etag.as_deref()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Retries: connect errors, timeouts, 429 and 500/502/503/504 are retried on calls that are
//! safe to repeat (GET, DELETE, PATCH with `If-Match`, POST with an `Idempotency-Key`, which
//! [`Client::create`] always sends, and dry runs, which write nothing). PATCH without `If-Match` is retried only when the
//! server cannot have applied it (connect errors, 429). Delays grow from 100 ms, doubling
//! to 5 s, with full jitter; `Retry-After` is honoured up to 60 s. All clones of a client
//! share one retry budget (a token bucket: 20 tokens, 0.2 earned per call, 1 spent per
//! retry), so an outage adds bounded load. Neither the API key nor request bodies ever
//! appear in errors, logs or Debug output.
//!
//! HTTPS: the server certificate is checked against the built-in (webpki) roots plus
//! [`ClientConfig::ca_file`]; a refused certificate is [`Error::Certificate`], never retried.

#![allow(clippy::result_large_err, reason = "Error::Api carries the whole Problem, as the API contract fixes; errors are the cold path")]

mod answer;
mod client;
mod config;
mod dry_run;
mod error;
mod headers;
pub mod lookup;
mod object;
mod request;
mod retry;
#[cfg(test)]
mod test_server;
mod tfstate;
mod trust;

pub use client::Client;
pub use config::{ClientConfig, DEFAULT_ENDPOINT, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT};
pub use dry_run::{DryRun, PolicyVerdict};
pub use error::{Error, Problem, ProblemField};
pub use novacron_schemas::Kind;
pub use object::{Deleted, Event, EventBatch, ListQuery, Object, Page, Response};
pub use tfstate::{LockInfo, StateVersion, TerraformState};
pub use trust::CertificateProblem;
