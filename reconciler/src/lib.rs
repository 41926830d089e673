//! novacron-reconcile: detects drift between the HCL in a Git repository and the live NovaCron platform.

pub mod diff;
pub mod drift;
pub mod hcl;
pub mod ignore;
pub mod report;
pub mod source;
