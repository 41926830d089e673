//! Live state: every object of every managed kind, read through the platform API behind a small trait.

use std::future::Future;

use novacron_client::{Client, ClientConfig, Error as ClientError};
use novacron_schemas::Kind;

use crate::drift::LiveObject;

/// Reads live objects; the platform client in production, anything in tests.
pub trait PlatformApi {
    /// Every object of `kind`, following pagination.
    fn list_all(&self, kind: Kind) -> impl Future<Output = Result<Vec<LiveObject>, LiveError>> + Send;
}

/// Why the live state could not be read, in terms of what to fix.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The platform refused the API key.
    #[error("platform {endpoint}: the API key was refused (HTTP {status}); check NOVACRON_API_KEY")]
    Unauthorized {
        /// The endpoint.
        endpoint: String,
        /// 401 or 403.
        status: u16,
    },
    /// The platform could not be reached or kept failing.
    #[error("platform {endpoint}: {detail}; is it running there? (--endpoint or NOVACRON_ENDPOINT)")]
    Unreachable {
        /// The endpoint.
        endpoint: String,
        /// What the client said.
        detail: String,
    },
    /// The platform answered with an error.
    #[error("platform {endpoint}: {detail}")]
    Api {
        /// The endpoint.
        endpoint: String,
        /// What the client said.
        detail: String,
    },
    /// The endpoint or key is unusable before any request.
    #[error("{0}")]
    Config(String),
}

/// The platform API through `novacron-client`.
#[derive(Debug, Clone)]
pub struct ClientApi {
    client: Client,
}

impl ClientApi {
    /// A client for `endpoint` with `api_key`.
    pub fn new(endpoint: &str, api_key: &str) -> Result<ClientApi, LiveError> {
        let mut config = ClientConfig::new(endpoint, api_key);
        config.max_retries = 2;
        let client = Client::new(config).map_err(|e| LiveError::Config(e.to_string()))?;
        Ok(ClientApi { client })
    }
}

impl PlatformApi for ClientApi {
    async fn list_all(&self, kind: Kind) -> Result<Vec<LiveObject>, LiveError> {
        let objects = self.client.list_all(kind).await.map_err(|e| classify(self.client.endpoint(), &e))?;
        Ok(objects.into_iter().map(|o| LiveObject { kind, fields: o.into_map() }).collect())
    }
}

fn classify(endpoint: &str, e: &ClientError) -> LiveError {
    let endpoint = endpoint.to_string();
    match e.status() {
        Some(status @ (401 | 403)) => LiveError::Unauthorized { endpoint, status },
        Some(_) => LiveError::Api { endpoint, detail: e.to_string() },
        None => LiveError::Unreachable { endpoint, detail: e.to_string() },
    }
}

/// Reads every managed kind at once.
pub async fn read_live(api: &impl PlatformApi) -> Result<Vec<LiveObject>, LiveError> {
    let [vm, net, vol, pol] = Kind::MANAGED;
    let (a, b, c, d) = tokio::join!(api.list_all(vm), api.list_all(net), api.list_all(vol), api.list_all(pol));
    let mut all = a?;
    all.extend(b?);
    all.extend(c?);
    all.extend(d?);
    Ok(all)
}
