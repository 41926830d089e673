//! The working copy of one revision for Terraform: its files, a backend override, a CLI config and a provider mirror.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::RolloutError;
use crate::source::{SourceTree, join_path};

/// The environment variable naming the Terraform binary (the `--terraform` flag's fallback).
pub const TERRAFORM_ENV: &str = "NOVACRON_TERRAFORM";
/// The provider's binary name.
pub const PROVIDER_BINARY: &str = "terraform-provider-novacron";
/// The version the provider mirror offers the provider as: this crate's version.
pub const PROVIDER_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The Terraform override file that fixes the backend of every working copy.
pub const BACKEND_OVERRIDE_FILE: &str = "zz_novacron_backend_override.tf";
/// The basic-auth user the platform backend sees (the password is the API key, from `TF_HTTP_PASSWORD`).
pub const BACKEND_USERNAME: &str = "novacron-reconcile";

/// In a working copy's root: the fingerprint of the inputs of its last successful `init`.
pub(crate) const INIT_MARKER: &str = "init.fingerprint";
/// In a working copy's root: the dependency lock file that `init` wrote.
pub(crate) const INIT_LOCK_FILE: &str = "init.lock.hcl";

/// Where Terraform keeps the state of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The platform's state backend, `{endpoint}/v1/tfstate/{workspace}` (`backend "http"`).
    Platform {
        /// The state workspace name.
        workspace: String,
    },
    /// A local state file (`backend "local"`), for tests and single-machine setups.
    LocalFile(PathBuf),
}

/// How to run Terraform for rollouts.
#[derive(Clone)]
pub struct TerraformSettings {
    /// The Terraform binary (`--terraform`, `NOVACRON_TERRAFORM`, serve key `terraform`); `None`: `terraform` on PATH.
    pub binary: Option<PathBuf>,
    /// The provider binary; `None`: [`default_provider`]. Without one Terraform installs the provider itself.
    pub provider: Option<PathBuf>,
    /// Directory holding the working copies, the mirror and Terraform's plugin cache.
    pub cache_dir: PathBuf,
    /// The platform endpoint (for the provider and the state backend).
    pub endpoint: String,
    /// The API key. Secret: only ever passed in the environment of terraform children.
    pub api_key: String,
    /// Where the state lives.
    pub backend: Backend,
    /// How long Terraform waits for a held state lock before giving up (`-lock-timeout`).
    pub lock_timeout: Duration,
    /// CA bundle for an https:// endpoint: `SSL_CERT_FILE` for Terraform's own TLS (the http
    /// state backend), `NOVACRON_CA_FILE` for the provider.
    pub ca_file: Option<PathBuf>,
}

impl TerraformSettings {
    /// Settings with the defaults: terraform and the provider found as documented, no lock wait.
    pub fn new(cache_dir: PathBuf, endpoint: String, api_key: String, backend: Backend) -> TerraformSettings {
        TerraformSettings { binary: None, provider: default_provider(), cache_dir, endpoint, api_key, backend, lock_timeout: Duration::ZERO, ca_file: None }
    }

    /// The Terraform binary to run: the configured path if it exists (a bare name such as
    /// `terraform-1.15.5` is looked up on PATH), else `terraform` on PATH.
    pub fn resolve_binary(&self) -> Result<PathBuf, RolloutError> {
        let on_path = |name: &Path| std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
        match &self.binary {
            Some(path) if path.is_file() => Ok(path.clone()),
            Some(path) if path.components().count() == 1 && !path.is_absolute() => {
                on_path(path).ok_or_else(|| RolloutError::TerraformNotFound { looked_for: format!("`{}` on PATH", path.display()) })
            }
            Some(path) => Err(RolloutError::TerraformNotFound { looked_for: path.display().to_string() }),
            None => on_path(Path::new("terraform")).ok_or_else(|| RolloutError::TerraformNotFound { looked_for: "`terraform` on PATH".into() }),
        }
    }
}

/// Shows everything but the API key.
impl fmt::Debug for TerraformSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TerraformSettings")
            .field("binary", &self.binary)
            .field("provider", &self.provider)
            .field("cache_dir", &self.cache_dir)
            .field("endpoint", &self.endpoint)
            .field("api_key", &"<redacted>")
            .field("backend", &self.backend)
            .field("lock_timeout", &self.lock_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// `terraform-provider-novacron` beside the running executable, when it is there.
pub fn default_provider() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let candidate = exe.parent()?.join(PROVIDER_BINARY);
    candidate.is_file().then_some(candidate)
}

/// A prepared Terraform working directory for one revision.
pub struct WorkingCopy {
    /// `<cache>/rollout/<key>`.
    pub(crate) root: PathBuf,
    /// The root module's directory, where terraform runs.
    pub(crate) module_dir: PathBuf,
    pub(crate) terraform: PathBuf,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) secrets: Vec<String>,
    pub(crate) lock_timeout: Duration,
    /// SHA-256 of everything `init` depends on.
    pub(crate) init_fingerprint: String,
}

/// Shows paths only: the environment holds the API key.
impl fmt::Debug for WorkingCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkingCopy").field("module_dir", &self.module_dir).field("terraform", &self.terraform).finish_non_exhaustive()
    }
}

impl WorkingCopy {
    /// The directory terraform runs in (the root module of the revision).
    pub fn module_dir(&self) -> &Path {
        &self.module_dir
    }
}

/// Checks a name that becomes a directory or a URL path segment.
fn safe_name(what: &'static str, name: &str) -> Result<(), RolloutError> {
    let ok = !name.is_empty() && name != "." && name != ".." && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(RolloutError::BadName { what, name: name.to_string() }) }
}

/// Writes a clean working copy of `tree`'s root module at `path` (and the local modules it
/// calls) under `<cache>/rollout/<key>/src`, keeping the root module's `.terraform/` from the
/// previous revision so that `init` is quick, plus the backend override and the CLI config.
/// Other directories are copied when a module names a file in them through `${path.module}/`
/// or `${path.root}/`; a file reached any other way is not (a [`SourceTree`] lists files, not
/// directories).
pub fn prepare(settings: &TerraformSettings, key: &str, tree: &dyn SourceTree, path: &str) -> Result<WorkingCopy, RolloutError> {
    safe_name("rollout key", key)?;
    let terraform = settings.resolve_binary()?;
    let module = join_path("", path).ok_or_else(|| RolloutError::BadName { what: "module path", name: path.to_string() })?;
    if tree.files(&module).is_none() {
        return Err(RolloutError::NoSuchPath { path: module });
    }
    let shared = settings.cache_dir.join("rollout");
    let root = shared.join("work").join(key);
    let src = root.join("src");
    let module_dir = if module.is_empty() { src.clone() } else { src.join(&module) };
    std::fs::create_dir_all(&src).map_err(RolloutError::io(format!("create {}", src.display())))?;
    clean(&src, &module_dir.join(".terraform"))?;
    // What `init` depends on: every file written, the backend, the CLI config, both binaries.
    let mut inputs: Vec<u8> = Vec::new();
    for dir in module_dirs(tree, &module) {
        for name in tree.files(&dir).unwrap_or_default() {
            let rel = if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") };
            let Some(text) = tree.read(&rel) else { continue };
            let target = src.join(&rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(RolloutError::io(format!("create {}", parent.display())))?;
            }
            // The mirror serves this reconciler's own provider build, whose checksum no committed
            // lock file can know: its entry goes, so that `init` records the mirror's.
            let text = if name == ".terraform.lock.hcl" && settings.provider.is_some() { without_locked_provider(&text) } else { text };
            for part in [rel.as_bytes(), text.as_bytes()] {
                inputs.extend_from_slice(&(part.len() as u64).to_le_bytes());
                inputs.extend_from_slice(part);
            }
            std::fs::write(&target, text).map_err(RolloutError::io(format!("write {}", target.display())))?;
        }
    }
    std::fs::create_dir_all(&module_dir).map_err(RolloutError::io(format!("create {}", module_dir.display())))?;
    let override_path = module_dir.join(BACKEND_OVERRIDE_FILE);
    let override_text = backend_override(&settings.backend, &settings.endpoint)?;
    std::fs::write(&override_path, &override_text).map_err(RolloutError::io(format!("write {}", override_path.display())))?;

    let home = shared.join("home");
    let plugin_cache = shared.join("plugin-cache");
    for dir in [&home, &plugin_cache] {
        std::fs::create_dir_all(dir).map_err(RolloutError::io(format!("create {}", dir.display())))?;
    }
    let mirror = match &settings.provider {
        Some(provider) => Some(install_mirror(provider, &shared.join("mirror"))?),
        None => None,
    };
    let cli_config = shared.join("cli.tfrc");
    let cli_text = cli_config_text(&plugin_cache, mirror.as_deref());
    write_atomically(&cli_config, cli_text.as_bytes())?;
    let stat = |p: &Path| std::fs::metadata(p).map(|m| format!("{}:{}:{:?}", p.display(), m.len(), m.modified().ok())).unwrap_or_default();
    let binaries = format!("{}|{}", stat(&terraform), settings.provider.as_deref().map(stat).unwrap_or_default());
    for part in [override_text.as_bytes(), cli_text.as_bytes(), binaries.as_bytes()] {
        inputs.extend_from_slice(&(part.len() as u64).to_le_bytes());
        inputs.extend_from_slice(part);
    }
    let init_fingerprint = novacron_schemas::sha256_hex(&inputs);
    // The same inputs as the last successful init: put back the lock file it wrote, so that
    // `init` may be skipped (the revision's own lock file lacks the mirror's checksum).
    if std::fs::read_to_string(root.join(INIT_MARKER)).is_ok_and(|m| m == init_fingerprint) {
        let saved = root.join(INIT_LOCK_FILE);
        let lock = module_dir.join(".terraform.lock.hcl");
        if saved.is_file() {
            std::fs::copy(&saved, &lock).map_err(RolloutError::io(format!("restore {}", lock.display())))?;
        }
    }

    let mut env: Vec<(String, String)> = ["PATH", "TMPDIR", "LANG"].into_iter().filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))).collect();
    for (k, v) in [
        ("HOME", home.display().to_string()),
        ("TF_CLI_CONFIG_FILE", cli_config.display().to_string()),
        ("TF_IN_AUTOMATION", "1".into()),
        ("TF_INPUT", "0".into()),
        ("CHECKPOINT_DISABLE", "1".into()),
        ("NOVACRON_ENDPOINT", settings.endpoint.clone()),
        ("NOVACRON_API_KEY", settings.api_key.clone()),
        ("TF_HTTP_PASSWORD", settings.api_key.clone()),
    ] {
        env.push((k.to_string(), v));
    }
    if let Some(ca_file) = &settings.ca_file {
        // Terraform runs in the module directory: a relative path would point elsewhere there.
        let ca_file = std::path::absolute(ca_file).unwrap_or_else(|_| ca_file.clone()).display().to_string();
        // Go's TLS (Terraform's http backend) reads SSL_CERT_FILE instead of the system bundle
        // file; the system certificate directories are still read.
        env.push(("SSL_CERT_FILE".to_string(), ca_file.clone()));
        env.push(("NOVACRON_CA_FILE".to_string(), ca_file));
    }
    Ok(WorkingCopy { root, module_dir, terraform, env, secrets: vec![settings.api_key.clone()], lock_timeout: settings.lock_timeout, init_fingerprint })
}

/// The root module directory, every local module directory it calls (transitively), and the
/// directories of files they name as `${path.module}/...` or `${path.root}/...` (`file()`,
/// `templatefile()`). A module that does not parse is still copied; Terraform reports its errors.
fn module_dirs(tree: &dyn SourceTree, root: &str) -> Vec<String> {
    let mut out = vec![root.to_string()];
    let mut next = 0;
    while next < out.len() {
        let dir = out[next].clone();
        next += 1;
        let Ok(Some(config)) = crate::hcl::parse::read_module(tree, &dir) else { continue };
        for call in config.modules {
            let Some(source) = call.source.filter(|s| s.starts_with("./") || s.starts_with("../")) else { continue };
            if let Some(child) = join_path(&dir, &source).filter(|c| !out.contains(c)) {
                out.push(child);
            }
        }
    }
    let modules = out.clone();
    for dir in &modules {
        for name in tree.files(dir).unwrap_or_default().iter().filter(|n| n.ends_with(".tf") || n.ends_with(".tf.json")) {
            let text = tree.read(&if dir.is_empty() { name.clone() } else { format!("{dir}/{name}") }).unwrap_or_default();
            for (base, rel) in referenced_paths(&text).into_iter().map(|(is_root, rel)| (if is_root { root } else { dir.as_str() }, rel)) {
                let Some((parent, _file)) = rel.rsplit_once('/') else { continue };
                if let Some(data_dir) = join_path(base, parent).filter(|d| !out.contains(d) && tree.files(d).is_some()) {
                    out.push(data_dir);
                }
            }
        }
    }
    out
}

/// The relative paths after `${path.module}/` (`false`) and `${path.root}/` (`true`) in a file's text.
fn referenced_paths(text: &str) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    for (marker, is_root) in [("${path.module}/", false), ("${path.root}/", true)] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let end = rest.find(|c: char| c == '"' || c == '$' || c == '}' || c == ')' || c == ',' || c.is_whitespace()).unwrap_or(rest.len());
            out.push((is_root, rest[..end].to_string()));
        }
    }
    out
}

/// A dependency lock file without its `novacron/novacron` entry. Terraform writes lock files
/// with each top-level block opening on its own line and closing with `}` at column 0.
fn without_locked_provider(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        if !skipping && line.starts_with("provider \"registry.terraform.io/novacron/novacron\"") {
            skipping = true;
            continue;
        }
        if skipping {
            skipping = line.trim_end() != "}";
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Removes everything under `dir` except `keep` (and the directories leading to it).
fn clean(dir: &Path, keep: &Path) -> Result<(), RolloutError> {
    let entries = std::fs::read_dir(dir).map_err(RolloutError::io(format!("list {}", dir.display())))?;
    for entry in entries {
        let path = entry.map_err(RolloutError::io(format!("list {}", dir.display())))?.path();
        if path == keep {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).map_err(RolloutError::io(format!("inspect {}", path.display())))?;
        if meta.is_dir() && keep.starts_with(&path) {
            clean(&path, keep)?;
        } else if meta.is_dir() {
            std::fs::remove_dir_all(&path).map_err(RolloutError::io(format!("remove {}", path.display())))?;
        } else {
            std::fs::remove_file(&path).map_err(RolloutError::io(format!("remove {}", path.display())))?;
        }
    }
    Ok(())
}

/// The override file's text. The platform backend carries no password: Terraform reads it
/// from `TF_HTTP_PASSWORD`, so neither the file nor a saved plan holds the key.
pub fn backend_override(backend: &Backend, endpoint: &str) -> Result<String, RolloutError> {
    Ok(match backend {
        Backend::Platform { workspace } => {
            safe_name("state workspace", workspace)?;
            let address = hcl_string(&format!("{}/v1/tfstate/{workspace}", endpoint.trim_end_matches('/')));
            format!(
                "# Written by novacron-reconcile: the state of this rollout lives on the platform.\nterraform {{\n  backend \"http\" {{\n    address        = {address}\n    lock_address   = {address}\n    unlock_address = {address}\n    username       = {}\n  }}\n}}\n",
                hcl_string(BACKEND_USERNAME)
            )
        }
        Backend::LocalFile(path) => {
            let path = std::path::absolute(path).map_err(RolloutError::io(format!("resolve {}", path.display())))?;
            format!(
                "# Written by novacron-reconcile: the state of this rollout lives in a local file.\nterraform {{\n  backend \"local\" {{\n    path = {}\n  }}\n}}\n",
                hcl_string(&path.display().to_string())
            )
        }
    })
}

/// The CLI configuration: the plugin cache, and when a provider binary is known, the mirror
/// that serves it (everything else installs directly).
fn cli_config_text(plugin_cache: &Path, mirror: Option<&Path>) -> String {
    let mut text = format!("# Written by novacron-reconcile.\nplugin_cache_dir = {}\n", hcl_string(&plugin_cache.display().to_string()));
    if let Some(mirror) = mirror {
        text.push_str(&format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = {}\n    include = [\"novacron/novacron\"]\n  }}\n  direct {{\n    exclude = [\"novacron/novacron\"]\n  }}\n}}\n",
            hcl_string(&mirror.display().to_string())
        ));
    }
    text
}

/// `<os>_<arch>` as Terraform names platforms.
fn terraform_platform() -> String {
    let os = std::env::consts::OS;
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    };
    format!("{os}_{arch}")
}

/// Lays out `mirror` (an unpacked filesystem mirror) holding `provider` as [`PROVIDER_VERSION`],
/// replacing the copy when the binary's size or modification time changed. Returns `mirror`.
fn install_mirror(provider: &Path, mirror: &Path) -> Result<PathBuf, RolloutError> {
    let source = std::fs::metadata(provider).map_err(|_| RolloutError::ProviderNotFound { path: provider.to_path_buf() })?;
    if !source.is_file() {
        return Err(RolloutError::ProviderNotFound { path: provider.to_path_buf() });
    }
    let dir = mirror.join("registry.terraform.io/novacron/novacron").join(PROVIDER_VERSION).join(terraform_platform());
    std::fs::create_dir_all(&dir).map_err(RolloutError::io(format!("create {}", dir.display())))?;
    let installed = dir.join(format!("{PROVIDER_BINARY}_v{PROVIDER_VERSION}"));
    let same = |m: &std::fs::Metadata| m.len() == source.len() && m.modified().ok() == source.modified().ok();
    if std::fs::metadata(&installed).is_ok_and(|m| same(&m)) {
        return Ok(mirror.to_path_buf());
    }
    // Built beside the final name, then renamed over it: a terraform reading the mirror sees
    // the old binary or the new one, never half of one.
    let staging = dir.join(format!(".{PROVIDER_BINARY}.{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    if std::fs::hard_link(provider, &staging).is_err() {
        std::fs::copy(provider, &staging).map_err(RolloutError::io(format!("copy {} to {}", provider.display(), staging.display())))?;
        if let Ok(modified) = source.modified() {
            let file = std::fs::File::options().write(true).open(&staging).map_err(RolloutError::io(format!("open {}", staging.display())))?;
            file.set_modified(modified).map_err(RolloutError::io(format!("set the time of {}", staging.display())))?;
        }
    }
    std::fs::rename(&staging, &installed).map_err(RolloutError::io(format!("install {}", installed.display())))?;
    Ok(mirror.to_path_buf())
}

/// Writes `path` through a temporary file and a rename, so concurrent readers never see half a file.
fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), RolloutError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, contents).map_err(RolloutError::io(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(RolloutError::io(format!("write {}", path.display())))
}

/// A quoted HCL string literal (no interpolation).
fn hcl_string(s: &str) -> String {
    let escaped = s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace("${", "$${").replace("%{", "%%{");
    format!("\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::MemoryTree;

    fn settings(dir: &Path, provider: Option<PathBuf>) -> TerraformSettings {
        let fake_tf = dir.join("terraform");
        std::fs::write(&fake_tf, "").expect("write");
        TerraformSettings {
            binary: Some(fake_tf),
            provider,
            cache_dir: dir.join("cache"),
            endpoint: "http://127.0.0.1:9/".into(),
            api_key: "k3y-s3cret".into(),
            backend: Backend::Platform { workspace: "prod".into() },
            lock_timeout: Duration::ZERO,
            ca_file: None,
        }
    }

    #[test]
    fn a_ca_file_reaches_terraform_as_ssl_cert_file_and_the_provider_as_novacron_ca_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = settings(tmp.path(), None);
        let plain = prepare(&s, "k", &MemoryTree::new([("main.tf", "")]), "").expect("prepare");
        assert!(!plain.env.iter().any(|(k, _)| k == "SSL_CERT_FILE" || k == "NOVACRON_CA_FILE"));
        s.ca_file = Some(PathBuf::from("certs/ca.pem"));
        let wc = prepare(&s, "k", &MemoryTree::new([("main.tf", "")]), "").expect("prepare");
        let absolute = std::path::absolute("certs/ca.pem").expect("absolute").display().to_string();
        for name in ["SSL_CERT_FILE", "NOVACRON_CA_FILE"] {
            assert_eq!(wc.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()), Some(absolute.as_str()), "{name}");
        }
    }

    #[test]
    fn prepare_writes_the_revision_and_removes_the_previous_one_but_keeps_dot_terraform() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(tmp.path(), None);
        let first = MemoryTree::new([
            ("infra/main.tf", "module \"web\" {\n  source = \"../modules/web\"\n}\n"),
            ("infra/old.tf", "# gone next time\n"),
            ("modules/web/main.tf", "resource \"novacron_vm\" \"this\" {}\n"),
            ("unrelated/x.tf", ""),
        ]);
        let wc = prepare(&s, "prod", &first, "infra").expect("prepare");
        let src = wc.module_dir().parent().expect("parent").to_path_buf();
        assert!(wc.module_dir().join("old.tf").is_file());
        assert!(src.join("modules/web/main.tf").is_file(), "local modules are copied");
        assert!(!src.join("unrelated").exists(), "directories no module calls are not");
        std::fs::create_dir_all(wc.module_dir().join(".terraform/providers")).expect("mkdir");
        std::fs::write(wc.module_dir().join(".terraform.lock.hcl"), "").expect("write");

        let second = MemoryTree::new([("infra/main.tf", "# no modules now\n")]);
        let wc = prepare(&s, "prod", &second, "infra").expect("prepare again");
        let mut left: Vec<String> = walk(&src);
        left.sort();
        assert_eq!(left, ["infra/.terraform/providers", "infra/main.tf", format!("infra/{BACKEND_OVERRIDE_FILE}").as_str()]);
        assert_eq!(std::fs::read_to_string(wc.module_dir().join("main.tf")).expect("read"), "# no modules now\n");
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let p = e.expect("entry").path();
            let rel = |p: &Path| p.strip_prefix(dir).expect("under dir").display().to_string();
            if p.is_dir() && p.file_name().is_some_and(|n| n != ".terraform") {
                out.extend(walk(&p).into_iter().map(|c| format!("{}/{c}", rel(&p))));
            } else if p.is_dir() {
                out.extend(std::fs::read_dir(&p).expect("read_dir").map(|c| format!("{}/{}", rel(&p), c.expect("entry").file_name().to_string_lossy())));
            } else {
                out.push(rel(&p));
            }
        }
        out
    }

    #[test]
    fn the_platform_backend_names_the_workspace_and_no_key() {
        let text = backend_override(&Backend::Platform { workspace: "prod".into() }, "http://h:1/").expect("override");
        assert!(text.contains("backend \"http\""), "{text}");
        for key in ["address", "lock_address", "unlock_address"] {
            assert!(text.lines().any(|l| l.trim_start().starts_with(key) && l.ends_with("= \"http://h:1/v1/tfstate/prod\"")), "{key}: {text}");
        }
        assert!(text.contains("username       = \"novacron-reconcile\"") && !text.contains("password"), "{text}");
        assert!(matches!(backend_override(&Backend::Platform { workspace: "a/b".into() }, "http://h"), Err(RolloutError::BadName { .. })));
        let local = backend_override(&Backend::LocalFile("/var/state/x.tfstate".into()), "").expect("local");
        assert!(local.contains("backend \"local\" {\n    path = \"/var/state/x.tfstate\"\n  }"), "{local}");
    }

    #[test]
    fn the_mirror_holds_the_provider_and_is_refreshed_when_it_changes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let provider = tmp.path().join(PROVIDER_BINARY);
        std::fs::write(&provider, "v1").expect("write");
        let s = settings(tmp.path(), Some(provider.clone()));
        prepare(&s, "k", &MemoryTree::new([("main.tf", "")]), "").expect("prepare");
        let shared = tmp.path().join("cache/rollout");
        let installed = shared
            .join(format!("mirror/registry.terraform.io/novacron/novacron/{PROVIDER_VERSION}/{}/{PROVIDER_BINARY}_v{PROVIDER_VERSION}", terraform_platform()));
        assert_eq!(std::fs::read_to_string(&installed).expect("installed"), "v1");
        std::fs::remove_file(&provider).expect("rm");
        std::fs::write(&provider, "v2 longer").expect("rewrite");
        prepare(&s, "k", &MemoryTree::new([("main.tf", "")]), "").expect("prepare");
        assert_eq!(std::fs::read_to_string(&installed).expect("installed"), "v2 longer");
        let config = std::fs::read_to_string(shared.join("cli.tfrc")).expect("cli config");
        assert!(
            config.contains("filesystem_mirror {") && config.contains("exclude = [\"novacron/novacron\"]") && config.contains("plugin_cache_dir"),
            "{config}"
        );

        let missing = settings(tmp.path(), Some(tmp.path().join("nope")));
        let err = prepare(&missing, "k", &MemoryTree::new([]), "").expect_err("no provider");
        assert!(matches!(err, RolloutError::ProviderNotFound { .. }), "{err}");
    }

    #[test]
    fn the_key_stays_out_of_debug_and_files_and_bad_names_fail() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(tmp.path(), None);
        let wc = prepare(&s, "k", &MemoryTree::new([("main.tf", "")]), "").expect("prepare");
        assert!(!format!("{s:?}{wc:?}").contains("k3y-s3cret"));
        for f in walk(&tmp.path().join("cache")) {
            let text = std::fs::read_to_string(tmp.path().join("cache").join(&f)).unwrap_or_default();
            assert!(!text.contains("k3y-s3cret"), "{f}");
        }
        assert!(wc.env.iter().any(|(k, v)| k == "TF_HTTP_PASSWORD" && v == "k3y-s3cret"));
        for bad in ["", "..", "a/b", "a b"] {
            assert!(matches!(prepare(&s, bad, &MemoryTree::new([]), ""), Err(RolloutError::BadName { .. })), "{bad:?}");
        }
        let e = prepare(&s, "k", &MemoryTree::new([("main.tf", "")]), "infra").expect_err("no such directory");
        assert!(matches!(&e, RolloutError::NoSuchPath { path } if path == "infra"), "{e:?}");
    }

    #[test]
    fn the_init_fingerprint_follows_the_inputs_and_brings_back_the_lock_file_of_the_last_init() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(tmp.path(), None);
        let a = MemoryTree::new([("main.tf", "# a\n")]);
        let first = prepare(&s, "k", &a, "").expect("prepare");
        assert_eq!(prepare(&s, "k", &a, "").expect("prepare").init_fingerprint, first.init_fingerprint);
        let b = MemoryTree::new([("main.tf", "# b\n")]);
        assert_ne!(prepare(&s, "k", &b, "").expect("prepare").init_fingerprint, first.init_fingerprint);
        let mut other = s.clone();
        other.backend = Backend::Platform { workspace: "staging".into() };
        assert_ne!(prepare(&other, "k", &a, "").expect("prepare").init_fingerprint, first.init_fingerprint);

        // As a successful init of `a` leaves it: then preparing `a` again restores its lock file.
        std::fs::write(first.root.join(INIT_MARKER), &first.init_fingerprint).expect("marker");
        std::fs::write(first.root.join(INIT_LOCK_FILE), "# lock of the last init\n").expect("lock");
        let again = prepare(&s, "k", &a, "").expect("prepare");
        assert_eq!(std::fs::read_to_string(again.module_dir().join(".terraform.lock.hcl")).expect("restored"), "# lock of the last init\n");
        let changed = prepare(&s, "k", &b, "").expect("prepare");
        assert!(!changed.module_dir().join(".terraform.lock.hcl").exists(), "another revision starts without it");
    }

    #[test]
    fn files_named_through_path_module_are_copied_with_their_directory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(tmp.path(), None);
        let tree = MemoryTree::new([
            ("shop/main.tf", "module \"web\" {\n  source = \"./modules/web\"\n}\nlocals {\n  a = file(\"${path.module}/files/cloud-init.yaml\")\n}\n"),
            ("shop/files/cloud-init.yaml", "#cloud-config\n"),
            (
                "shop/modules/web/main.tf",
                "locals {\n  t = templatefile(\"${path.module}/../../templates/user-data.tftpl\", {})\n  r = file(\"${path.root}/root-only/x.txt\")\n}\n",
            ),
            ("shop/templates/user-data.tftpl", "hello ${name}\n"),
            ("shop/root-only/x.txt", "x\n"),
            ("unrelated/y.txt", "y\n"),
        ]);
        let wc = prepare(&s, "k", &tree, "shop").expect("prepare");
        let src = wc.module_dir().parent().expect("src").to_path_buf();
        for f in ["shop/files/cloud-init.yaml", "shop/templates/user-data.tftpl", "shop/root-only/x.txt", "shop/modules/web/main.tf"] {
            assert!(src.join(f).is_file(), "{f} is copied");
        }
        assert!(!src.join("unrelated").exists());
        assert_eq!(referenced_paths("file(\"${path.module}/a/b.txt\") ${path.root}/c"), [(false, "a/b.txt".to_string()), (true, "c".to_string())]);
    }

    #[test]
    fn a_committed_lock_file_loses_the_novacron_entry_only() {
        let lock = "# This file is maintained automatically by \"terraform init\".\n\nprovider \"registry.terraform.io/hashicorp/random\" {\n  version = \"3.6.0\"\n  hashes = [\n    \"h1:a=\",\n  ]\n}\n\nprovider \"registry.terraform.io/novacron/novacron\" {\n  version     = \"1.2.0\"\n  constraints = \"~> 1.2\"\n  hashes = [\n    \"h1:b=\",\n  ]\n}\n";
        let out = without_locked_provider(lock);
        assert!(out.contains("hashicorp/random") && out.contains("h1:a="), "{out}");
        assert!(!out.contains("novacron/novacron") && !out.contains("h1:b="), "{out}");
        assert!(out.ends_with("}\n\n"), "{out:?}");
    }

    #[test]
    fn a_missing_terraform_names_the_flag_and_the_variable() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = settings(tmp.path(), None);
        s.binary = Some(tmp.path().join("no-terraform"));
        let e = s.resolve_binary().expect_err("missing");
        let text = e.to_string();
        assert!(text.contains("--terraform") && text.contains(TERRAFORM_ENV) && text.contains("no-terraform"), "{text}");
        s.binary = Some(PathBuf::from("sh"));
        assert!(s.resolve_binary().expect("a bare name is looked up on PATH").is_absolute());
        s.binary = Some(PathBuf::from("no-such-terraform-anywhere"));
        let text = s.resolve_binary().expect_err("not on PATH").to_string();
        assert!(text.contains("`no-such-terraform-anywhere` on PATH") && text.contains("--terraform"), "{text}");
    }
}
