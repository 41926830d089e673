//! Live state: every object of every managed kind, read through the platform API behind a small trait.

use std::future::Future;
use std::path::Path;

use novacron_client::{Client, ClientConfig, Error as ClientError, Event};
use novacron_schemas::Kind;

use crate::drift::LiveObject;

/// Reads live objects; the platform client in production, anything in tests.
pub trait PlatformApi {
    /// Every object of `kind`, following pagination.
    fn list_all(&self, kind: Kind) -> impl Future<Output = Result<Vec<LiveObject>, LiveError>> + Send;

    /// One object by id (`None` when it is gone); its `version` field gives the ETag.
    fn get_object(&self, kind: Kind, id: &str) -> impl Future<Output = Result<Option<LiveObject>, LiveError>> + Send {
        let _ = (kind, id);
        async { Err(LiveError::Config("this platform API cannot read single objects".into())) }
    }

    /// Applies a JSON merge patch conditioned on `If-Match: etag`; a stale ETag is
    /// [`PatchOutcome::Stale`], not an error.
    fn patch_object(&self, kind: Kind, id: &str, patch: &serde_json::Value, etag: &str) -> impl Future<Output = Result<PatchOutcome, LiveError>> + Send {
        let _ = (kind, id, patch, etag);
        async { Err(LiveError::Config("this platform API cannot change objects".into())) }
    }

    /// The Terraform state stored in the platform's workspace (`None` when there is none yet).
    fn read_tfstate(&self, workspace: &str) -> impl Future<Output = Result<Option<Vec<u8>>, LiveError>> + Send {
        let _ = workspace;
        async { Err(LiveError::Config("this platform API cannot read Terraform state".into())) }
    }

    /// The holder of the workspace's state lock (Terraform's lock info JSON), `None` when free.
    fn tfstate_lock(&self, workspace: &str) -> impl Future<Output = Result<Option<serde_json::Value>, LiveError>> + Send {
        let _ = workspace;
        async { Ok(None) }
    }

    /// Releases the workspace's state lock held under `lock` (its lock info, with its ID): the
    /// holder's own unlock, which the client library leaves to Terraform; only recovery uses it.
    fn tfstate_unlock(&self, workspace: &str, lock: &serde_json::Value) -> impl Future<Output = Result<(), LiveError>> + Send {
        let _ = (workspace, lock);
        async { Err(LiveError::Config("this platform API cannot release state locks".into())) }
    }

    /// A dry run of a create (`id` `None`, `body` the object) or an update (`body` a merge
    /// patch): what the platform's policies would say, writing nothing.
    fn dry_run(&self, kind: Kind, id: Option<&str>, body: &serde_json::Value) -> impl Future<Output = Result<Preview, LiveError>> + Send {
        let _ = (kind, id, body);
        async { Err(LiveError::Config("this platform API cannot make dry runs".into())) }
    }

    /// Up to `limit` change-feed events after `after`, oldest first, without waiting.
    fn events_after(&self, after: u64, limit: usize) -> impl Future<Output = Result<Vec<Event>, LiveError>> + Send {
        let _ = (after, limit);
        async { Ok(Vec::new()) }
    }
}

/// What a dry run found.
#[derive(Debug, Clone, PartialEq)]
pub enum Preview {
    /// The platform judged it: `allowed` is false when a `block` policy denies it.
    Judged {
        /// No `block` verdict.
        allowed: bool,
        /// Each policy that objected.
        verdicts: Vec<novacron_client::PolicyVerdict>,
    },
    /// The platform refused the request itself (validation, a reference, a name taken): why.
    Refused {
        /// The platform's answer, one line.
        detail: String,
    },
}

/// What a conditional PATCH did.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOutcome {
    /// Applied; the object as it is now.
    Applied(LiveObject),
    /// 412: the object changed since the ETag was read.
    Stale,
}

/// The ETag of a live object as the platform sends it (`"<version>"`).
pub fn etag_of(object: &LiveObject) -> String {
    format!("\"{}\"", object.fields.get("version").and_then(serde_json::Value::as_i64).unwrap_or(0))
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
    /// For the state backend, which speaks its own protocol beside the object API.
    http: reqwest::Client,
    api_key: String,
}

impl ClientApi {
    /// A client for `endpoint` with `api_key`, trusting the public roots.
    pub fn new(endpoint: &str, api_key: &str) -> Result<ClientApi, LiveError> {
        ClientApi::with_ca_file(endpoint, api_key, None)
    }

    /// A client for `endpoint` with `api_key` that also trusts the CA certificates in
    /// `ca_file` (`--ca-file`, serve key `ca_file`), for the object API and the state backend alike.
    pub fn with_ca_file(endpoint: &str, api_key: &str, ca_file: Option<&Path>) -> Result<ClientApi, LiveError> {
        let mut config = ClientConfig::new(endpoint, api_key);
        config.max_retries = 2;
        config.ca_file = ca_file.map(Path::to_path_buf);
        let client = Client::new(config).map_err(|e| LiveError::Config(e.to_string()))?;
        let mut http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        if let Some(path) = ca_file {
            // Client::new above has read the same file, so its errors were reported there.
            let pem = std::fs::read(path).map_err(|e| LiveError::Config(format!("--ca-file {}: cannot read it ({e})", path.display())))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| LiveError::Config(format!("--ca-file {}: {e}", path.display())))? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http.build().map_err(|e| LiveError::Config(e.to_string()))?;
        Ok(ClientApi { client, http, api_key: api_key.to_string() })
    }
}

impl PlatformApi for ClientApi {
    async fn list_all(&self, kind: Kind) -> Result<Vec<LiveObject>, LiveError> {
        let objects = self.client.list_all(kind).await.map_err(|e| classify(self.client.endpoint(), &e))?;
        Ok(objects.into_iter().map(|o| LiveObject { kind, fields: o.into_map() }).collect())
    }

    async fn get_object(&self, kind: Kind, id: &str) -> Result<Option<LiveObject>, LiveError> {
        match self.client.get(kind, id).await {
            Ok(r) => Ok(Some(LiveObject { kind, fields: r.value.into_map() })),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(classify(self.client.endpoint(), &e)),
        }
    }

    async fn patch_object(&self, kind: Kind, id: &str, patch: &serde_json::Value, etag: &str) -> Result<PatchOutcome, LiveError> {
        match self.client.patch(kind, id, patch, Some(etag)).await {
            Ok(r) => Ok(PatchOutcome::Applied(LiveObject { kind, fields: r.value.into_map() })),
            Err(e) if e.is_precondition_failed() => Ok(PatchOutcome::Stale),
            Err(e) => Err(classify(self.client.endpoint(), &e)),
        }
    }

    async fn read_tfstate(&self, workspace: &str) -> Result<Option<Vec<u8>>, LiveError> {
        let state = self.client.terraform_state(workspace).await.map_err(|e| classify(self.client.endpoint(), &e))?;
        Ok(state.map(|s| s.raw))
    }

    async fn tfstate_lock(&self, workspace: &str) -> Result<Option<serde_json::Value>, LiveError> {
        let lock = self.client.terraform_state_lock(workspace).await.map_err(|e| classify(self.client.endpoint(), &e))?;
        Ok(lock.and_then(|l| serde_json::to_value(l).ok()))
    }

    async fn tfstate_unlock(&self, workspace: &str, lock: &serde_json::Value) -> Result<(), LiveError> {
        let endpoint = self.client.endpoint().trim_end_matches('/').to_string();
        let url = format!("{endpoint}/v1/tfstate/{workspace}");
        let method = reqwest::Method::from_bytes(b"UNLOCK").map_err(|e| LiveError::Config(e.to_string()))?;
        let answer = self
            .http
            .request(method, &url)
            .bearer_auth(&self.api_key)
            .json(lock)
            .send()
            .await
            .map_err(|e| LiveError::Unreachable { endpoint: endpoint.clone(), detail: e.to_string() })?;
        match answer.status().as_u16() {
            200 => Ok(()),
            status => Err(LiveError::Api { endpoint, detail: format!("UNLOCK /v1/tfstate/{workspace}: HTTP {status}") }),
        }
    }

    async fn dry_run(&self, kind: Kind, id: Option<&str>, body: &serde_json::Value) -> Result<Preview, LiveError> {
        let answer = match id {
            None => self.client.dry_run_create(kind, body).await,
            Some(id) => self.client.dry_run_update(kind, id, body).await,
        };
        match answer {
            Ok(d) => Ok(Preview::Judged { allowed: d.allowed, verdicts: d.verdicts }),
            Err(e) if e.status().is_some_and(|s| (400..500).contains(&s) && s != 401 && s != 403 && s != 429) => Ok(Preview::Refused { detail: e.to_string() }),
            Err(e) => Err(classify(self.client.endpoint(), &e)),
        }
    }

    async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<Event>, LiveError> {
        let _ = limit;
        let batch = self.client.events(after, std::time::Duration::ZERO).await.map_err(|e| classify(self.client.endpoint(), &e))?;
        Ok(batch.events)
    }
}

fn classify(endpoint: &str, e: &ClientError) -> LiveError {
    let endpoint = endpoint.to_string();
    match e.status() {
        Some(status @ (401 | 403)) => LiveError::Unauthorized { endpoint, status },
        Some(_) => LiveError::Api { endpoint, detail: e.to_string() },
        // It is running there, with a certificate this client does not accept; the message says why.
        None if matches!(e, ClientError::Certificate { .. }) => LiveError::Api { endpoint, detail: e.to_string() },
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
