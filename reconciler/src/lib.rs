//! novacron-reconcile: detects drift between the HCL in a Git repository and the live NovaCron platform.

pub mod cli;
pub mod clock;
pub mod command;
pub mod diff;
pub mod drift;
pub mod git;
pub mod hcl;
pub mod ignore;
pub mod live;
pub mod progress;
pub mod remediation;
pub mod render;
pub mod report;
pub mod review;
pub mod rollout;
pub mod serve;
pub mod source;
pub mod state;
pub mod sync;
pub mod tfstate;
pub mod threeway;
pub mod write_only;
