//! The platform API client: one call per API operation, sent with timeouts, retries and a shared retry budget.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use novacron_schemas::Kind;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, IF_MATCH};
use reqwest::{Url, redirect};

use crate::answer::{Answer, api_failure, decode, respond, transport_failure};
use crate::config::ClientConfig;
use crate::dry_run::DryRun;
use crate::error::Error;
use crate::object::{Deleted, EventBatch, ListQuery, Object, Page, Response, WirePage};
use crate::request::{Call, IDEMPOTENCY_KEY, JSON, MERGE_PATCH, Verb, new_idempotency_key, quote_etag};
use crate::retry::{Outcome, Retry, RetryBudget, RetryPolicy};
use crate::tfstate::{LockInfo, StateVersion, TerraformState, WireVersions};
use crate::trust;

/// The page size `list_all` asks for.
const LIST_ALL_PAGE_SIZE: u32 = 500;

/// A client of the platform API. Cheap to clone: clones share one connection pool and one
/// retry budget.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    endpoint: String,
    timeout: Duration,
    policy: RetryPolicy,
    budget: RetryBudget,
}

/// Shows the endpoint only; the API key stays out of Debug output.
impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.inner.endpoint).finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`; fails when the endpoint is not an http(s) URL or the API key is empty.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let valid = config.validate()?;
        let mut default_headers = HeaderMap::new();
        default_headers.insert(AUTHORIZATION, valid.authorization);
        default_headers.insert(ACCEPT, HeaderValue::from_static("application/json, application/problem+json"));
        let mut builder = reqwest::Client::builder()
            .user_agent(valid.user_agent)
            .default_headers(default_headers)
            // The API never redirects; following one could hand the key to another host.
            .redirect(redirect::Policy::none());
        if let Some(path) = &config.ca_file {
            for cert in trust::ca_bundle(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        if config.insecure {
            tracing::warn!(endpoint = %valid.endpoint, "insecure: the server's TLS certificate is not checked; anyone on the path can read the API key");
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().map_err(|e| Error::Config(format!("could not build the HTTP client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base: valid.base,
                endpoint: valid.endpoint,
                timeout: config.timeout,
                policy: RetryPolicy::new(config.max_retries),
                budget: RetryBudget::new(),
            }),
        })
    }

    /// The endpoint this client talks to, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Creates an object (`POST /v1/{kind}`) under a fresh random `Idempotency-Key`, so
    /// retries cannot create it twice. VMs answer 202 with `status: "provisioning"`.
    pub async fn create(&self, kind: Kind, body: &serde_json::Value) -> Result<Response<Object>, Error> {
        self.create_with_key(kind, body, &new_idempotency_key()).await
    }

    /// Creates an object under a caller-chosen `Idempotency-Key`: repeating the same key and
    /// body replays the first answer (`replayed: true`); a different body is refused (422).
    pub async fn create_with_key(&self, kind: Kind, body: &serde_json::Value, idempotency_key: &str) -> Result<Response<Object>, Error> {
        if idempotency_key.trim().is_empty() {
            return Err(Error::Config("idempotency key is empty".to_string()));
        }
        let call = self.call(Verb::Post, &["v1", kind.collection()], &[]).body(body, JSON).header(
            HeaderName::from_static(IDEMPOTENCY_KEY),
            idempotency_key,
            "idempotency key",
        )?;
        let answer = self.execute(&call).await?;
        respond(&call, answer)
    }

    /// Reads one object (`GET /v1/{kind}/{id}`) with its ETag; a missing one is an error
    /// for which [`Error::is_not_found`] holds.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Response<Object>, Error> {
        let call = self.call(Verb::Get, &["v1", kind.collection(), id], &[]);
        let answer = self.execute(&call).await?;
        respond(&call, answer)
    }

    /// Reads one page of a list (`GET /v1/{kind}?...`).
    pub async fn list_page(&self, kind: Kind, query: &ListQuery) -> Result<Page, Error> {
        let call = self.call(Verb::Get, &["v1", kind.collection()], &query.pairs());
        let answer = self.execute(&call).await?;
        decode::<WirePage>(&call, &answer).map(Page::from)
    }

    /// Reads every object of a kind, following page tokens (500 per page).
    pub async fn list_all(&self, kind: Kind) -> Result<Vec<Object>, Error> {
        self.collect_pages(kind, ListQuery { page_size: Some(LIST_ALL_PAGE_SIZE), ..ListQuery::default() }).await
    }

    /// Every object matching `query`'s filters, following page tokens.
    pub async fn list_matching(&self, kind: Kind, query: &ListQuery) -> Result<Vec<Object>, Error> {
        let query = ListQuery { page_size: query.page_size.or(Some(LIST_ALL_PAGE_SIZE)), page_token: None, ..query.clone() };
        self.collect_pages(kind, query).await
    }

    /// The object of a kind with exactly this name, if any (names are unique per kind).
    pub async fn find_by_name(&self, kind: Kind, name: &str) -> Result<Option<Object>, Error> {
        let query = ListQuery { name: Some(name.to_string()), ..ListQuery::default() };
        let found = self.collect_pages(kind, query).await?;
        Ok(found.into_iter().find(|o| o.name() == name))
    }

    /// Changes an object with a JSON merge patch (`PATCH /v1/{kind}/{id}`). With `if_match`
    /// (an ETag such as `"3"`, or a bare version) a stale version fails with 412, and the
    /// call may be retried on server errors; without it, only on connect errors and 429.
    pub async fn patch(&self, kind: Kind, id: &str, patch: &serde_json::Value, if_match: Option<&str>) -> Result<Response<Object>, Error> {
        let mut call = self.call(Verb::Patch, &["v1", kind.collection(), id], &[]).body(patch, MERGE_PATCH);
        if let Some(etag) = if_match {
            call = call.header(IF_MATCH, &quote_etag(etag), "If-Match ETag")?;
        }
        let answer = self.execute(&call).await?;
        respond(&call, answer)
    }

    /// Dry-runs a create (`POST /v1/{kind}?dry_run=true`): the platform validates `body` and
    /// runs policy admission as a create would, writes nothing, and answers with the object
    /// it would store and each policy's verdict, also when a `block` policy denies
    /// ([`DryRun::allowed`] is then false). Invalid bodies, taken names and broken references
    /// fail as a real create would. Retried like any safe call; no `Idempotency-Key` is sent.
    pub async fn dry_run_create(&self, kind: Kind, body: &serde_json::Value) -> Result<DryRun, Error> {
        let call = self.call(Verb::Post, &["v1", kind.collection()], &[]).dry_run().body(body, JSON);
        let answer = self.execute(&call).await?;
        decode(&call, &answer)
    }

    /// Dry-runs a merge patch (`PATCH /v1/{kind}/{id}?dry_run=true`): the merged object and
    /// each policy's verdict on it, nothing written. A patch that changes nothing is judged
    /// too, on the object as it is. Retried like any safe call.
    pub async fn dry_run_update(&self, kind: Kind, id: &str, patch: &serde_json::Value) -> Result<DryRun, Error> {
        let call = self.call(Verb::Patch, &["v1", kind.collection(), id], &[]).dry_run().body(patch, MERGE_PATCH);
        let answer = self.execute(&call).await?;
        decode(&call, &answer)
    }

    /// Deletes an object (`DELETE /v1/{kind}/{id}`): gone at once (204), or, for VMs,
    /// accepted and going through `deleting` (202).
    pub async fn delete(&self, kind: Kind, id: &str) -> Result<Deleted, Error> {
        let call = self.call(Verb::Delete, &["v1", kind.collection(), id], &[]);
        let answer = self.execute(&call).await?;
        if answer.status == 204 || answer.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Deleted::Gone);
        }
        decode(&call, &answer).map(Deleted::Accepted)
    }

    /// Long-polls the change feed for events after `after`, waiting up to `wait` (whole
    /// seconds, rounded up) for one to arrive. The attempt timeout is extended by `wait`.
    pub async fn events(&self, after: u64, wait: Duration) -> Result<EventBatch, Error> {
        let wait_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let query = [("after", after.to_string()), ("wait", wait_secs.to_string())];
        let mut call = self.call(Verb::Get, &["v1", "events"], &query);
        call.timeout = self.inner.timeout.saturating_add(Duration::from_secs(wait_secs));
        let answer = self.execute(&call).await?;
        decode(&call, &answer)
    }

    /// The current Terraform state of `workspace` (`GET /v1/tfstate/{workspace}`), or `None`
    /// when none is stored. A body that is not JSON is an [`Error::Decode`] (which never quotes it).
    pub async fn terraform_state(&self, workspace: &str) -> Result<Option<TerraformState>, Error> {
        let call = self.call(Verb::Get, &["v1", "tfstate", workspace], &[]);
        let answer = match self.execute(&call).await {
            Ok(answer) => answer,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let json = serde_json::from_slice(&answer.body).map_err(|e| Error::Decode {
            method: call.verb.as_str(),
            path: call.path.clone(),
            message: format!("the stored state is not JSON: {e}"),
        })?;
        Ok(Some(TerraformState { raw: answer.body, json }))
    }

    /// Who holds the lock on `workspace` (`GET /v1/tfstate/{workspace}/lock`), or `None` when it is free.
    pub async fn terraform_state_lock(&self, workspace: &str) -> Result<Option<LockInfo>, Error> {
        let call = self.call(Verb::Get, &["v1", "tfstate", workspace, "lock"], &[]);
        match self.execute(&call).await {
            Ok(answer) => decode(&call, &answer).map(Some),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The stored versions of `workspace`'s state, newest first (`GET /v1/tfstate/{workspace}/versions`);
    /// empty when nothing was ever stored.
    pub async fn terraform_state_versions(&self, workspace: &str) -> Result<Vec<StateVersion>, Error> {
        let call = self.call(Verb::Get, &["v1", "tfstate", workspace, "versions"], &[]);
        let answer = self.execute(&call).await?;
        decode::<WireVersions>(&call, &answer).map(|v| v.items)
    }

    /// Checks readiness (`GET /readyz`). A single attempt, so it reports the state of now
    /// and does not draw on the retry budget.
    pub async fn health(&self) -> Result<(), Error> {
        let mut call = self.call(Verb::Get, &["readyz"], &[]);
        call.retry = false;
        self.execute(&call).await.map(|_| ())
    }

    fn call(&self, verb: Verb, segments: &[&str], query: &[(&str, String)]) -> Call {
        Call::new(verb, &self.inner.base, segments, query, self.inner.timeout)
    }

    /// Lists pages for `query` until the last one.
    async fn collect_pages(&self, kind: Kind, mut query: ListQuery) -> Result<Vec<Object>, Error> {
        let mut all = Vec::new();
        loop {
            let page = self.list_page(kind, &query).await?;
            all.extend(page.items);
            match page.next_page_token {
                Some(token) if query.page_token.as_deref() == Some(token.as_str()) => {
                    // A server handing back the token it was given would make this loop forever.
                    return Err(Error::Decode {
                        method: Verb::Get.as_str(),
                        path: format!("/v1/{}", kind.collection()),
                        message: format!("the server returned page token {token:?} again"),
                    });
                }
                Some(token) => query.page_token = Some(token),
                None => return Ok(all),
            }
        }
    }

    /// Sends `call`, retrying transient failures as the policy and the shared budget allow.
    async fn execute(&self, call: &Call) -> Result<Answer, Error> {
        let inner = &self.inner;
        let idempotency = call.idempotency();
        let mut rng = fastrand::Rng::new();
        let mut retries = 0u32;
        if call.retry {
            inner.budget.deposit();
        }
        loop {
            let (error, outcome) = match self.attempt(call).await {
                Ok(answer) if (200..300).contains(&answer.status) => return Ok(answer),
                Ok(answer) => api_failure(call, &answer),
                Err(failure) => failure,
            };
            let decision = if call.retry { inner.policy.decide(retries, idempotency, &outcome, &mut rng) } else { Retry::No };
            match decision {
                Retry::No => return Err(error),
                Retry::Exhausted if retries == 0 => return Err(error),
                Retry::Exhausted => return Err(Error::RetriesExhausted { attempts: retries + 1, last: Box::new(error) }),
                Retry::After(delay) => {
                    if !inner.budget.try_withdraw() {
                        tracing::debug!(method = call.verb.as_str(), path = %call.path, attempt = retries + 1, error = %error, "retry budget exhausted");
                        return Err(Error::RetryBudgetExhausted { last: Box::new(error) });
                    }
                    retries += 1;
                    tracing::debug!(
                        method = call.verb.as_str(),
                        path = %call.path,
                        attempt = retries + 1,
                        status = error.status(),
                        error = %error,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "retrying",
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// One attempt: send and read the whole answer within the call's timeout.
    async fn attempt(&self, call: &Call) -> Result<Answer, (Error, Outcome)> {
        let mut request = self.inner.http.request(call.verb.method(), call.url.clone());
        for (name, value) in &call.headers {
            request = request.header(name, value.clone());
        }
        if let Some(body) = &call.body {
            request = request.header(CONTENT_TYPE, body.content_type).body(body.bytes.clone());
        }
        let exchange = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.bytes().await?.to_vec();
            Ok::<_, reqwest::Error>(Answer { status, headers, body })
        };
        match tokio::time::timeout(call.timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(source)) => Err(transport_failure(call, source)),
            Err(_elapsed) => Err((Error::Timeout { method: call.verb.as_str(), path: call.path.clone(), after: call.timeout }, Outcome::Interrupted)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_server::{Stub, reply};
    use serde_json::json;

    const KEY: &str = "k-very-secret";

    fn client(stub: &Stub, max_retries: u32) -> Client {
        let mut config = ClientConfig::new(&stub.endpoint, KEY);
        config.max_retries = max_retries;
        config.timeout = Duration::from_millis(500);
        Client::new(config).expect("a valid config")
    }

    #[tokio::test]
    async fn create_sends_key_and_reads_etag_warnings_and_replay() {
        let stub = Stub::start(vec![reply(
            "202 Accepted",
            &["etag: \"1\"", "idempotency-replayed: true", "warning: 299 novacron \"vm web: no owner label\""],
            r#"{"id":"vm-1","name":"web","version":1,"status":"provisioning"}"#,
        )]);
        let created = client(&stub, 0).create(Kind::Vm, &json!({"name": "web"})).await.expect("created");
        assert_eq!((created.status, created.etag.as_deref(), created.replayed), (202, Some("\"1\""), true));
        assert_eq!(created.warnings, vec!["vm web: no owner label"]);
        assert_eq!(created.value.status(), Some("provisioning"));
        let seen = &stub.seen()[0];
        assert_eq!(seen.line, "POST /v1/vms");
        assert_eq!(seen.header("authorization"), Some("Bearer k-very-secret"));
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("idempotency-key").map(str::len), Some(32));
        assert_eq!(seen.body, r#"{"name":"web"}"#);
    }

    #[tokio::test]
    async fn get_is_retried_after_503_and_429() {
        let stub = Stub::start(vec![
            reply("503 Service Unavailable", &[], r#"{"title":"Service Unavailable","status":503,"detail":"chaos"}"#),
            reply("429 Too Many Requests", &["retry-after: 0"], r#"{"status":429}"#),
            reply("200 OK", &["etag: \"4\""], r#"{"id":"n1","name":"net","version":4}"#),
        ]);
        let got = client(&stub, 4).get(Kind::Network, "n1").await.expect("third attempt succeeds");
        assert_eq!(got.value.version(), 4);
        assert_eq!(stub.seen().len(), 3);
    }

    #[tokio::test]
    async fn unguarded_patch_is_not_retried_on_503() {
        let stub = Stub::start(vec![reply("503 Service Unavailable", &[], r#"{"status":503,"detail":"chaos"}"#), reply("200 OK", &[], "{}")]);
        let err = client(&stub, 4).patch(Kind::Volume, "v1", &json!({"size_gb": 20}), None).await.expect_err("503 is final");
        assert_eq!(err.status(), Some(503));
        assert_eq!(err.to_string(), "PATCH /v1/volumes/v1: 503 Service Unavailable: chaos");
        let seen = stub.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("content-type"), Some("application/merge-patch+json"));
        assert_eq!(seen[0].header("if-match"), None);
    }

    #[tokio::test]
    async fn dry_runs_send_the_flag_without_a_key_and_are_retried_on_503() {
        let unavailable = || reply("503 Service Unavailable", &[], r#"{"status":503,"detail":"chaos"}"#);
        let answer = r#"{"object":{"name":"big","cpu_cores":16},"allowed":false,
            "verdicts":[{"policy":"max-cores","mode":"block","messages":["too many cores"]}]}"#;
        let stub = Stub::start(vec![unavailable(), reply("200 OK", &[], answer), unavailable(), reply("200 OK", &[], r#"{"object":{},"verdicts":[]}"#)]);
        let c = client(&stub, 2);
        let created = c.dry_run_create(Kind::Vm, &json!({"name": "big", "cpu_cores": 16})).await.expect("a dry-run POST is retried");
        assert!(!created.allowed);
        assert_eq!(created.verdicts[0].policy, "max-cores");
        let patched = c.dry_run_update(Kind::Vm, "vm-1", &json!({"cpu_cores": 2})).await.expect("a dry-run PATCH without If-Match is retried");
        assert!(patched.allowed && patched.verdicts.is_empty());
        let seen = stub.seen();
        let lines: Vec<&str> = seen.iter().map(|s| s.line.as_str()).collect();
        assert_eq!(lines, ["POST /v1/vms?dry_run=true", "POST /v1/vms?dry_run=true", "PATCH /v1/vms/vm-1?dry_run=true", "PATCH /v1/vms/vm-1?dry_run=true"]);
        assert_eq!(seen[0].header("idempotency-key"), None, "dry runs are not keyed");
        assert_eq!(seen[0].header("content-type"), Some("application/json"));
        assert_eq!(seen[2].header("content-type"), Some("application/merge-patch+json"));
    }

    #[tokio::test]
    async fn retries_give_up_after_max_retries_and_keep_the_last_error() {
        let unavailable = || reply("503 Service Unavailable", &[], r#"{"status":503,"detail":"chaos"}"#);
        let stub = Stub::start(vec![unavailable(), unavailable()]);
        let err = client(&stub, 1).patch(Kind::Vm, "vm-1", &json!({"memory_gb": 4}), Some("3")).await.expect_err("gives up");
        assert!(matches!(err, Error::RetriesExhausted { attempts: 2, .. }), "{err}");
        assert!(err.is_retryable());
        assert_eq!(stub.seen()[1].header("if-match"), Some("\"3\""));
    }

    #[tokio::test]
    async fn problems_keep_field_errors_and_never_show_the_key() {
        let body = r#"{"type":"t","title":"Unprocessable Entity","status":422,"detail":"invalid vm: check cpu_cores",
            "errors":[{"field":"cpu_cores","message":"cpu_cores must be between 1 and 128, not 0"}]}"#;
        let stub = Stub::start(vec![reply("422 Unprocessable Entity", &["content-type: application/problem+json"], body)]);
        let err = client(&stub, 4).create(Kind::Vm, &json!({"cpu_cores": 0, "user_data": "hunter2"})).await.expect_err("422");
        assert_eq!(err.to_string(), "POST /v1/vms: 422 Unprocessable Entity: cpu_cores: cpu_cores must be between 1 and 128, not 0");
        let debug = format!("{err:?}");
        assert!(!debug.contains(KEY) && !debug.contains("hunter2"), "{debug}");
        assert_eq!(stub.seen().len(), 1, "422 is not retried");
    }

    #[tokio::test]
    async fn list_all_follows_page_tokens() {
        let stub = Stub::start(vec![
            reply("200 OK", &[], r#"{"items":[{"id":"a"},{"id":"b"}],"next_page_token":"p2"}"#),
            reply("200 OK", &[], r#"{"items":[{"id":"c"}],"next_page_token":""}"#),
        ]);
        let all = client(&stub, 0).list_all(Kind::Policy).await.expect("two pages");
        assert_eq!(all.iter().map(Object::id).collect::<Vec<_>>(), vec!["a", "b", "c"]);
        let lines: Vec<String> = stub.seen().into_iter().map(|s| s.line).collect();
        assert_eq!(lines, vec!["GET /v1/policies?page_size=500", "GET /v1/policies?page_size=500&page_token=p2"]);
    }

    #[tokio::test]
    async fn delete_tells_gone_from_accepted() {
        let stub = Stub::start(vec![reply("204 No Content", &[], ""), reply("202 Accepted", &[], r#"{"id":"vm-1","status":"deleting"}"#)]);
        let c = client(&stub, 0);
        assert!(matches!(c.delete(Kind::Network, "n1").await, Ok(Deleted::Gone)));
        match c.delete(Kind::Vm, "vm-1").await {
            Ok(Deleted::Accepted(o)) => assert_eq!(o.status(), Some("deleting")),
            other => panic!("expected 202 accepted, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_silent_server_times_out_and_events_extend_the_timeout() {
        let stub = Stub::start(vec![None, reply("200 OK", &[], r#"{"events":[],"next":7}"#)]);
        let c = client(&stub, 0);
        let err = c.get(Kind::Vm, "vm-1").await.expect_err("no answer");
        assert!(matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(500)), "{err}");
        let batch = c.events(7, Duration::from_millis(1500)).await.expect("an empty batch");
        assert_eq!(batch.next, 7);
        assert_eq!(stub.seen()[1].line, "GET /v1/events?after=7&wait=2");
    }

    #[tokio::test]
    async fn connect_errors_are_transport_errors_and_health_does_not_retry() {
        let stub = Stub::start(vec![]);
        // The listener is gone once the empty script ends; wait for that.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = client(&stub, 3).health().await.expect_err("nothing listens");
        assert!(matches!(err, Error::Transport { .. }), "{err}");
        assert!(err.to_string().starts_with("GET /readyz: could not connect"), "{err}");
    }

    #[test]
    fn debug_shows_the_endpoint_only() {
        let c = Client::new(ClientConfig::new("http://127.0.0.1:1/", KEY)).expect("valid");
        assert_eq!(c.endpoint(), "http://127.0.0.1:1");
        let shown = format!("{c:?}");
        assert!(!shown.contains(KEY), "{shown}");
    }
}
