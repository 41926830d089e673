//! Rollouts through real Terraform: a working copy of a revision, saved plans, their grade, and applying them.
//!
//! [`prepare`] writes the revision's files with a backend override and a CLI config (provider
//! from a filesystem mirror), [`WorkingCopy::init`] and [`WorkingCopy::plan`] make a saved plan
//! and its [`PlanModel`], [`grade_plan`] grades it by the schema's severities, and
//! [`WorkingCopy::apply_saved`] applies exactly that plan. The API key reaches terraform only
//! through its environment, never its arguments, files or saved plans.

mod error;
mod grade;
mod plan;
mod terraform;
mod workdir;

#[cfg(test)]
mod live_platform_tests;
#[cfg(test)]
mod live_tests;

pub use error::{Diagnostic, RolloutError};
pub use grade::{
    CREATE_SEVERITY, DESTRUCTIVE_SEVERITY, GradedChange, POLICY_CREATE_SEVERITY, PlanGrade, UNDESCRIBED_SEVERITY, grade_change, grade_plan, schema_attribute,
};
pub use plan::{Action, AttributeChange, ChangeValue, PlanJsonError, PlanModel, ResourceChange};
pub use terraform::{InitOutcome, PidSink, SavedPlan, StopOutcome, stop_recorded};
pub use workdir::{
    BACKEND_OVERRIDE_FILE, BACKEND_USERNAME, Backend, PROVIDER_BINARY, PROVIDER_VERSION, TERRAFORM_ENV, TerraformSettings, WorkingCopy, backend_override,
    default_provider, prepare,
};
