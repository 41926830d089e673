//! The `serve` config file (TOML): global settings and one `[[repo]]` table per desired-state repository.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

/// The whole file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Platform API endpoint.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// Address the HTTP server listens on (`--listen` beats it).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The state database (`--state` beats it); relative paths are relative to the config file.
    #[serde(default = "default_state")]
    pub state: PathBuf,
    /// Name of the environment variable holding a `postgres://` URL of a PostgreSQL state database
    /// that several replicas share (beats `state`; `--state` beats both). The password may also
    /// come from `PGPASSWORD` or libpq's passfile.
    #[serde(default)]
    pub state_env: Option<String>,
    /// Where the state lives when given on the command line (`--state`, a file or a
    /// `postgres://` URL); beats `state_env` and `state`.
    #[serde(skip)]
    pub state_location: Option<crate::state::StateLocation>,
    /// This replica's id among those sharing the state (default: host name, process id and a
    /// random suffix, new at every start).
    #[serde(default)]
    pub replica_id: Option<String>,
    /// How many reconciles this replica runs at once (the others wait their turn).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_reconciles: usize,
    /// Repository leases: how long one lasts and how early a replica stops acting on one.
    #[serde(default)]
    pub leases: LeasesConfig,
    /// Name of the environment variable holding the platform API key.
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    /// Where repository clones are cached (default: `<state>.cache` beside the database).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// The terraform binary rollouts run (default: `NOVACRON_TERRAFORM`, else terraform on PATH).
    #[serde(default)]
    pub terraform: Option<PathBuf>,
    /// The provider binary for Terraform (default: terraform-provider-novacron beside this program).
    #[serde(default)]
    pub provider: Option<PathBuf>,
    /// PEM CA bundle to trust for an https:// endpoint (relative to the config file); rollouts'
    /// Terraform gets it as `SSL_CERT_FILE` and `NOVACRON_CA_FILE`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (then its chain) to serve HTTPS with: webhooks, the API and the console
    /// (relative to the config file; needs `tls_key`). Reread on SIGHUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (relative to the config file). Reread on SIGHUP.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// The web console: sign-in, sessions and run history.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// The repositories to reconcile.
    #[serde(default)]
    pub repo: Vec<RepoConfig>,
}

/// The `[leases]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesConfig {
    /// How long a repository's lease lasts without renewal (`15s`): how soon another replica
    /// takes over from one that died. Renewed every third of it.
    #[serde(default = "default_lease_ttl", deserialize_with = "interval")]
    pub ttl: Duration,
    /// How long before its lease could expire a replica that cannot renew it stops acting on it
    /// (`5s`): longer than its longest single write.
    #[serde(default = "default_lease_margin", deserialize_with = "interval")]
    pub renew_margin: Duration,
}

impl Default for LeasesConfig {
    fn default() -> LeasesConfig {
        LeasesConfig { ttl: default_lease_ttl(), renew_margin: default_lease_margin() }
    }
}

fn default_max_concurrent() -> usize {
    16
}
fn default_lease_ttl() -> Duration {
    Duration::from_secs(15)
}
fn default_lease_margin() -> Duration {
    Duration::from_secs(5)
}

/// The `[console]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Every console page but `/signin` and the static assets needs a signed-in session.
    #[serde(default)]
    pub require_signin: bool,
    /// How long a browser session lasts after sign-in (`8h` by default).
    #[serde(default = "default_session_ttl", deserialize_with = "interval")]
    pub session_ttl: Duration,
    /// Runs kept per repository in the run history (older rows are deleted on insert).
    #[serde(default = "default_history_runs")]
    pub history_runs: usize,
}

impl Default for ConsoleConfig {
    fn default() -> ConsoleConfig {
        ConsoleConfig { require_signin: false, session_ttl: default_session_ttl(), history_runs: default_history_runs() }
    }
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_history_runs() -> usize {
    500
}

/// A secret read from the config file: usable through [`Redacted::expose`], shown as `***`
/// by `Debug`, so a config printed in a log or a panic never carries it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Redacted(String);

impl Redacted {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// One `[[repo]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Unique name, used in URLs, metrics and logs.
    pub name: Spanned<String>,
    /// Repository: a local path or a file://, https:// or ssh:// URL.
    pub url: String,
    /// Branch, tag or commit; the default branch when absent.
    #[serde(rename = "ref", default)]
    pub reference: Option<String>,
    /// Directory of the configuration inside the repository.
    #[serde(default = "default_path")]
    pub path: String,
    /// How often to poll (e.g. `30s`, `5m`, `1h30m`); each wait is jittered by ±10%.
    #[serde(default = "default_interval", deserialize_with = "interval")]
    pub interval: Duration,
    /// The highest drift severity reverted without approval (`none` for never); critical never is.
    #[serde(default = "default_auto_sync_max")]
    pub auto_sync_max: AutoSyncMax,
    /// What happens to drift above `auto_sync_max`.
    #[serde(default)]
    pub remediation: Remediation,
    /// The highest rollout (plan) severity applied without approval (`none` for never); critical never is.
    #[serde(default = "default_auto_apply_max")]
    pub auto_apply_max: AutoApplyMax,
    /// Rollouts may delete objects removed from Git.
    #[serde(default)]
    pub prune: bool,
    /// The platform's Terraform state workspace (default: from the configuration's backend "http" address).
    #[serde(default)]
    pub workspace: Option<String>,
    /// A local Terraform state file instead (relative paths are relative to the config file).
    #[serde(default)]
    pub tfstate: Option<PathBuf>,
    /// Forge REST API base for remediation pull requests (GitHub-compatible).
    #[serde(default)]
    pub forge_url: Option<String>,
    /// `owner/name` of the repository on the forge.
    #[serde(default)]
    pub forge_repo: Option<String>,
    /// Name of the environment variable holding the forge token (default `NOVACRON_FORGE_TOKEN`).
    #[serde(default)]
    pub forge_token_env: Option<String>,
    /// Plan every pull request against `ref` (webhook `pull_request`) and post one comment and a
    /// `novacron/plan` status on it; needs `forge_repo` (and `forge_url` off github.com).
    #[serde(default)]
    pub review_pull_requests: bool,
    /// Also plan pull requests from forks (off: a fork's HCL could read files of this machine).
    #[serde(default)]
    pub review_forks: bool,
    /// Name of the environment variable holding the API key pull-request plans use (give one
    /// that can only read, and read state); default: the service's own key, with a warning.
    #[serde(default)]
    pub review_api_key_env: Option<String>,
    /// Name of the environment variable holding the webhook secret.
    #[serde(default)]
    pub webhook_secret_env: Option<Spanned<String>>,
    /// The webhook secret in plain text (discouraged: a warning is logged).
    #[serde(default)]
    pub webhook_secret: Option<Redacted>,
    /// Root variables, as `--var NAME=VALUE`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Ignore patterns, as `--ignore`.
    #[serde(default)]
    pub ignore: Vec<String>,
}

pub use crate::remediation::Remediation;
pub use crate::sync::{AutoApplyMax, AutoSyncMax};

/// Why the config file cannot be used; names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config {file}: cannot read it: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key or value is wrong.
    #[error("config {file}:{line}: {key}{message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line.
        line: usize,
        /// `key `name`: ` when known.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn default_endpoint() -> String {
    novacron_client::DEFAULT_ENDPOINT.into()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8090))
}
fn default_state() -> PathBuf {
    PathBuf::from("novacron-reconcile.db")
}
fn default_api_key_env() -> String {
    "NOVACRON_API_KEY".into()
}
fn default_path() -> String {
    ".".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_auto_sync_max() -> AutoSyncMax {
    AutoSyncMax::Low
}

fn default_auto_apply_max() -> AutoApplyMax {
    AutoApplyMax::Medium
}

fn interval<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// Parses an `interval` or `session_ttl`: `500ms`, `30s`, `5m`, `1h`, `1h30m` (the grammar of
/// [`novacron_schemas::duration::parse`]), and greater than zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    use novacron_schemas::duration::{DurationError, parse};
    let d = parse(text).map_err(|e| match e {
        DurationError::Empty | DurationError::Number { .. } => {
            format!("invalid interval {text:?}: write a number and a unit, e.g. \"30s\", \"5m\", \"1h30m\"")
        }
        DurationError::Unit { .. } => format!("invalid interval {text:?}: the unit must be ms, s, m or h"),
        DurationError::TooLong => format!("invalid interval {text:?}: it is too long"),
    })?;
    if d.is_zero() {
        return Err(format!("invalid interval {text:?}: it must be greater than zero"));
    }
    Ok(d)
}

impl ServeConfig {
    /// Where the state lives: `--state`, else the URL in `state_env`'s variable (read through
    /// `env`), else the `state` file.
    pub fn resolve_state(&self, env: impl Fn(&str) -> Option<String>) -> Result<crate::state::StateLocation, String> {
        if let Some(location) = &self.state_location {
            return Ok(location.clone());
        }
        match &self.state_env {
            Some(var) => {
                let url = env(var)
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| format!("state_env names {var}, which is not set: export the PostgreSQL URL (postgres://USER@HOST:PORT/DATABASE) in it"))?;
                if !crate::state::is_postgres_url(&url) {
                    return Err(format!("{var} (state_env) must hold a postgres:// URL; for a SQLite file set state instead"));
                }
                url.parse().map_err(|e: String| format!("{var} (state_env): {e}"))
            }
            None => Ok(crate::state::StateLocation::File(self.state.clone())),
        }
    }

    /// Reads and checks `file`; relative paths in it become relative to its directory.
    pub fn load(file: &Path) -> Result<ServeConfig, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.display().to_string(), source })?;
        let mut config = ServeConfig::parse(&text, &file.display().to_string())?;
        let base = file.parent().unwrap_or(Path::new("."));
        if config.state.is_relative() {
            config.state = base.join(&config.state);
        }
        for repo in &mut config.repo {
            if let Some(file) = repo.tfstate.as_mut().filter(|f| f.is_relative()) {
                *file = base.join(&*file);
            }
        }
        if let Some(cache) = config.cache_dir.as_mut().filter(|c| c.is_relative()) {
            *cache = base.join(&*cache);
        }
        for path in [&mut config.ca_file, &mut config.tls_cert, &mut config.tls_key] {
            if let Some(path) = path.as_mut().filter(|p| p.is_relative()) {
                *path = base.join(&*path);
            }
        }
        Ok(config)
    }

    /// Parses and checks the text of a config file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<ServeConfig, ConfigError> {
        let config: ServeConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            invalid(text, file, offset, e.message().trim_end().to_string())
        })?;
        match (&config.tls_cert, &config.tls_key) {
            (Some(_), None) => {
                let at = text.find("tls_cert").unwrap_or(0);
                return Err(invalid(text, file, at, "needs tls_key: set the certificate's private key too (or neither for plain HTTP)".into()));
            }
            (None, Some(_)) => {
                let at = text.find("tls_key").unwrap_or(0);
                return Err(invalid(text, file, at, "needs tls_cert: set the certificate too (or neither for plain HTTP)".into()));
            }
            _ => {}
        }
        if config.max_concurrent_reconciles == 0 {
            let at = text.find("max_concurrent_reconciles").unwrap_or(0);
            return Err(invalid(text, file, at, "max_concurrent_reconciles must be at least 1".into()));
        }
        if config.leases.ttl < Duration::from_secs(3) {
            let at = text.find("ttl").unwrap_or(0);
            return Err(invalid(text, file, at, "the lease ttl must be at least 3s (leases are renewed every third of it)".into()));
        }
        if config.leases.renew_margin * 3 > config.leases.ttl * 2 {
            let at = text.find("renew_margin").unwrap_or(0);
            return Err(invalid(
                text,
                file,
                at,
                format!(
                    "renew_margin ({}s) must be at most two thirds of the lease ttl ({}s): a replica must still hold a lease between two renewals",
                    config.leases.renew_margin.as_secs_f64(),
                    config.leases.ttl.as_secs_f64()
                ),
            ));
        }
        if let Some(env) = &config.state_env
            && (env.trim().is_empty() || env.contains("://"))
        {
            let at = text.find("state_env").unwrap_or(0);
            return Err(invalid(
                text,
                file,
                at,
                "state_env names the environment variable that holds the postgres:// URL (e.g. NOVACRON_STATE_URL), not the URL itself".into(),
            ));
        }
        if let Some(id) = &config.replica_id
            && (id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)))
        {
            let at = text.find("replica_id").unwrap_or(0);
            return Err(invalid(text, file, at, format!("replica_id {id:?} must be non-empty letters, digits, '-', '_', '.' or ':'")));
        }
        if config.console.history_runs == 0 {
            let at = text.find("history_runs").unwrap_or(0);
            return Err(invalid(text, file, at, "history_runs must be at least 1 (runs kept per repository)".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for repo in &config.repo {
            let name = repo.name.get_ref();
            let at = repo.name.span().start;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
                return Err(invalid(text, file, at, format!("repo name {name:?} must be non-empty letters, digits, '-', '_' or '.'")));
            }
            if !seen.insert(name.clone()) {
                return Err(invalid(text, file, at, format!("a second repo is named {name:?}; names must be unique")));
            }
            if repo.remediation == Remediation::Pr && repo.forge_repo.is_none() {
                return Err(invalid(text, file, at, format!("repo {name:?} has remediation = \"pr\" but no forge_repo (owner/name)")));
            }
            if repo.review_pull_requests && repo.forge_repo.is_none() {
                return Err(invalid(text, file, at, format!("repo {name:?} has review_pull_requests = true but no forge_repo (owner/name)")));
            }
            if repo.review_forks && !repo.review_pull_requests {
                return Err(invalid(text, file, at, format!("repo {name:?} has review_forks = true but review_pull_requests is off: turn it on too")));
            }
            if let Some(env) = &repo.webhook_secret_env
                && env.get_ref().trim().is_empty()
            {
                return Err(invalid(text, file, env.span().start, "webhook_secret_env must name an environment variable".into()));
            }
        }
        Ok(config)
    }
}

/// An [`ConfigError::Invalid`] at byte `offset` of `text`, naming the key written on that line.
fn invalid(text: &str, file: &str, offset: usize, message: String) -> ConfigError {
    let offset = offset.min(text.len());
    let line = text[..offset].matches('\n').count() + 1;
    let line_text = text.lines().nth(line - 1).unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .map(|k| format!("key `{k}`: "))
        .unwrap_or_default();
    ConfigError::Invalid { file: file.to_string(), line, key, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "endpoint = \"http://127.0.0.1:8080\"\nstate = \"state.db\"\n\n[[repo]]\nname = \"prod\"\nurl = \"/srv/infra\"\ninterval = \"30s\"\nauto_sync_max = \"medium\"\nwebhook_secret_env = \"PROD_SECRET\"\n";

    #[test]
    fn a_plain_text_webhook_secret_never_prints() {
        let text = GOOD.replace("webhook_secret_env = \"PROD_SECRET\"", "webhook_secret = \"hunter2-webhook\"");
        let c = ServeConfig::parse(&text, "serve.toml").unwrap();
        assert_eq!(c.repo[0].webhook_secret.as_ref().map(Redacted::expose), Some("hunter2-webhook"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn parses_a_good_file_with_defaults() {
        let c = ServeConfig::parse(GOOD, "serve.toml").unwrap();
        assert_eq!(c.repo.len(), 1);
        let r = &c.repo[0];
        assert_eq!(r.interval, Duration::from_secs(30));
        assert_eq!(r.auto_sync_max, AutoSyncMax::Medium);
        assert_eq!(r.path, ".");
        assert_eq!(r.remediation, Remediation::None);
        assert_eq!(c.listen, default_listen());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = format!("{GOOD}colour = \"blue\"\n");
        let e = ServeConfig::parse(&text, "serve.toml").unwrap_err().to_string();
        assert!(e.starts_with("config serve.toml:10: key `colour`: unknown field `colour`"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let e = ServeConfig::parse(&GOOD.replace("\"30s\"", "\"soon\""), "f").unwrap_err().to_string();
        assert!(e.starts_with("config f:7: key `interval`: invalid interval \"soon\""), "{e}");
        let e = ServeConfig::parse(&GOOD.replace("\"medium\"", "\"hgh\""), "f").unwrap_err().to_string();
        assert!(e.starts_with("config f:8: key `auto_sync_max`: unknown variant `hgh`"), "{e}");
        let dup = format!("{GOOD}\n[[repo]]\nname = \"prod\"\nurl = \"/x\"\n");
        let e = ServeConfig::parse(&dup, "f").unwrap_err().to_string();
        assert!(e.starts_with("config f:12: key `name`: a second repo is named \"prod\""), "{e}");
    }

    #[test]
    fn the_console_table_has_defaults_and_checks() {
        let c = ServeConfig::parse(GOOD, "f").unwrap();
        assert!(!c.console.require_signin);
        assert_eq!(c.console.session_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(c.console.history_runs, 500);
        let text = format!("{GOOD}\n[console]\nrequire_signin = true\nsession_ttl = \"30m\"\nhistory_runs = 20\n");
        let c = ServeConfig::parse(&text, "f").unwrap();
        assert!(c.console.require_signin);
        assert_eq!((c.console.session_ttl, c.console.history_runs), (Duration::from_secs(1800), 20));
        let e = ServeConfig::parse(&format!("{GOOD}\n[console]\nhistory_runs = 0\n"), "f").unwrap_err().to_string();
        assert!(e.starts_with("config f:12: key `history_runs`: history_runs must be at least 1"), "{e}");
        let e = ServeConfig::parse(&format!("{GOOD}\n[console]\nsession_ttl = \"forever\"\n"), "f").unwrap_err().to_string();
        assert!(e.starts_with("config f:12: key `session_ttl`: invalid interval"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_take_several_units_and_keep_their_messages() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0h0m"), Err("invalid interval \"0h0m\": it must be greater than zero".into()));
        assert_eq!(parse_duration("soon"), Err("invalid interval \"soon\": write a number and a unit, e.g. \"30s\", \"5m\", \"1h30m\"".into()));
        assert_eq!(parse_duration("10"), Err("invalid interval \"10\": the unit must be ms, s, m or h".into()));
        assert_eq!(parse_duration("5 minutes"), Err("invalid interval \"5 minutes\": the unit must be ms, s, m or h".into()));
        assert_eq!(parse_duration("99999999999999999999999h"), Err("invalid interval \"99999999999999999999999h\": it is too long".into()));
        let text = GOOD.replace("\"30s\"", "\"1h30m\"").replace("[[repo]]", "[console]\nsession_ttl = \"2h30m\"\n\n[[repo]]");
        let c = ServeConfig::parse(&text, "f").unwrap();
        assert_eq!((c.repo[0].interval, c.console.session_ttl), (Duration::from_secs(5400), Duration::from_secs(9000)));
    }

    #[test]
    fn tls_files_are_relative_to_the_config_file_and_come_in_pairs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "tls_cert = \"certs/serve.crt\"\ntls_key = \"/etc/novacron/serve.key\"\n").expect("write");
        let config = ServeConfig::load(&file).expect("loads");
        assert_eq!(config.tls_cert, Some(dir.path().join("certs/serve.crt")));
        assert_eq!(config.tls_key, Some(PathBuf::from("/etc/novacron/serve.key")));
        let only_cert = ServeConfig::parse("listen = \"127.0.0.1:8443\"\ntls_cert = \"a.crt\"\n", "serve.toml").expect_err("a certificate without a key");
        assert_eq!(
            only_cert.to_string(),
            "config serve.toml:2: key `tls_cert`: needs tls_key: set the certificate's private key too (or neither for plain HTTP)"
        );
        let only_key = ServeConfig::parse("tls_key = \"a.key\"\n", "serve.toml").expect_err("a key without a certificate");
        assert!(only_key.to_string().contains("key `tls_key`: needs tls_cert"), "{only_key}");
    }

    #[test]
    fn ca_file_is_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("serve.toml");
        std::fs::write(&file, "endpoint = \"https://platform.internal:8443\"\nca_file = \"certs/ca.pem\"\n").expect("write");
        let config = ServeConfig::load(&file).expect("loads");
        assert_eq!(config.ca_file, Some(dir.path().join("certs/ca.pem")));
        std::fs::write(&file, "ca_file = \"/etc/novacron/ca.pem\"\n").expect("write");
        assert_eq!(ServeConfig::load(&file).expect("loads").ca_file, Some(PathBuf::from("/etc/novacron/ca.pem")));
    }
}
