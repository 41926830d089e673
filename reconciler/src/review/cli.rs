//! `novacron-reconcile plan`: the review of a branch without a forge, for any CI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;

use super::{ReviewOptions, Scrubber, render_markdown, render_text, run_review};
use crate::command::DriftOptions;
use crate::live::ClientApi;
use crate::remediation::FORGE_TOKEN_ENV;
use crate::sync::{RunnerSettings, TerraformReviewer, review_key};

/// Flags of `plan`.
#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Repository: a local path, file://, https:// or ssh:// URL.
    #[arg(long)]
    pub repo: String,
    /// The branch, tag, commit SHA or `refs/pull/N/head` to review (default: the default branch).
    #[arg(long = "ref")]
    pub reference: Option<String>,
    /// The branch it would merge into, for drift and pending rollouts (default: the default branch).
    #[arg(long)]
    pub base: Option<String>,
    /// Directory of the configuration inside the repository.
    #[arg(long, default_value = ".")]
    pub path: String,
    /// Platform API endpoint. The API key comes from NOVACRON_API_KEY (a key that can read is enough).
    #[arg(long, env = "NOVACRON_ENDPOINT", default_value = novacron_client::DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// PEM file of CA certificates to trust for an https:// endpoint (a private CA), besides the
    /// public roots; Terraform runs get it as SSL_CERT_FILE and NOVACRON_CA_FILE.
    #[arg(long, env = "NOVACRON_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Set a root variable: NAME=VALUE (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Where repository clones and working copies are cached.
    #[arg(long, env = "NOVACRON_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// A local Terraform state file to plan against.
    #[arg(long, value_name = "FILE", conflicts_with = "workspace")]
    pub tfstate: Option<PathBuf>,
    /// The platform's Terraform state workspace (default: from the configuration's backend "http" address).
    #[arg(long, value_name = "NAME")]
    pub workspace: Option<String>,
    /// The terraform binary (default: terraform on PATH).
    #[arg(long, env = "NOVACRON_TERRAFORM", value_name = "PATH")]
    pub terraform: Option<PathBuf>,
    /// The provider binary for Terraform (default: terraform-provider-novacron beside this program).
    #[arg(long, env = "NOVACRON_PROVIDER", value_name = "PATH")]
    pub provider: Option<PathBuf>,
    /// Output format: text, markdown (the pull-request comment) or json.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Write the output to FILE instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// `--format` of `plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
#[allow(missing_docs)]
pub enum PlanFormat {
    Text,
    Markdown,
    Json,
}

/// Runs `plan`: exit 0 no changes, 2 changes, 1 error (including a configuration Terraform rejects).
pub fn run_plan_cli(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let api_key =
        std::env::var("NOVACRON_API_KEY").ok().filter(|k| !k.trim().is_empty()).context("NOVACRON_API_KEY is not set: export the platform API key")?;
    let cache_dir = args.cache_dir.clone().unwrap_or_else(crate::cli::default_cache_dir);
    let head = DriftOptions {
        repo: args.repo.clone(),
        reference: args.reference.clone(),
        path: args.path.clone(),
        vars: args.vars.clone(),
        ignore: Vec::new(),
        cache_dir: cache_dir.clone(),
        tfstate: args.tfstate.clone(),
        workspace: args.workspace.clone(),
        http_address: std::env::var("TF_HTTP_ADDRESS").ok(),
        progress: crate::progress::SharedProgress::new(crate::progress::Terminal),
        clock: crate::clock::SharedClock::default(),
    };
    let options = ReviewOptions { head, base: args.base.clone(), pull_request: None };
    let api = ClientApi::with_ca_file(&args.endpoint, &api_key, args.ca_file.as_deref())?;
    let planner = TerraformReviewer {
        settings: RunnerSettings {
            terraform: args.terraform.clone(),
            provider: args.provider.clone(),
            cache_dir: cache_dir.join("terraform"),
            endpoint: args.endpoint.clone(),
            api_key: api_key.clone(),
            ca_file: args.ca_file.clone(),
        },
        key: review_key(&args.repo, &args.path, None),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    let review = runtime.block_on(run_review(&options, &api, &planner))?;
    let scrubber = Scrubber::new([Some(api_key), std::env::var(FORGE_TOKEN_ENV).ok()].into_iter().flatten());
    let text = match args.format {
        PlanFormat::Text => render_text(&review),
        PlanFormat::Markdown => render_markdown(&review, &args.path),
        PlanFormat::Json => serde_json::to_string_pretty(&review).context("cannot encode the review")? + "\n",
    };
    let text = scrubber.scrub(&text);
    match &args.output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{text}"),
    }
    let code = match review.outcome {
        super::ReviewOutcome::Planned if review.has_changes() => 2,
        super::ReviewOutcome::Planned => 0,
        _ => 1,
    };
    Ok(ExitCode::from(code))
}
