//! Evaluation of the desired state: the `novacron_*` resources of a Terraform configuration, as API objects.

mod attrs;
mod data;
mod eval;
mod expr;
pub mod funcs;
pub mod locate;
pub mod parse;
pub mod resolve;
mod template;
pub mod types;
mod value;
mod variables;

pub use data::{DataSources, data_source_kinds};
pub use eval::{Evaluation, evaluate};
pub use expr::EvalError;
pub use resolve::{Evaluated, evaluate_expression};

/// Why the desired state could not be evaluated. Attribute values that cannot be evaluated
/// are not errors: they become unknown, with a warning.
#[derive(Debug, thiserror::Error)]
pub enum HclError {
    /// A file does not parse.
    #[error("{file}:{line}:{column}: syntax error: {message}")]
    Syntax {
        /// Path of the file in the repository.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A file parses but a declaration is unusable.
    #[error("{file}: {message}")]
    Invalid {
        /// Path of the file in the repository.
        file: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// `--path` names no directory of the revision.
    #[error("--path {path:?}: no such directory in the repository; give the directory holding the .tf files")]
    NoSuchPath {
        /// The path given.
        path: String,
    },
    /// Two desired resources would manage the same object.
    #[error("{first} and {second} are both {kind} named {name:?}: names are unique per kind, so rename one")]
    DuplicateName {
        /// The Terraform type.
        kind: String,
        /// The shared name.
        name: String,
        /// The first address.
        first: String,
        /// The second address.
        second: String,
    },
    /// A resource sets an attribute and its Terraform write-only twin, two ways of giving one value.
    #[error(
        "{file}: {address} sets both {attribute} and {twin}, which conflict: {twin} is the write-only form of {attribute} (kept out of Terraform's plan and state); set only one of them"
    )]
    ConflictingTwin {
        /// The file of the resource block.
        file: String,
        /// The resource instance.
        address: String,
        /// The API attribute (`user_data`).
        attribute: String,
        /// Its twin (`user_data_wo`).
        twin: String,
    },
    /// Declarations depend on each other in a circle.
    #[error("{module}: dependency cycle through {through}")]
    Cycle {
        /// The module (`root` or its address).
        module: String,
        /// The declarations on the cycle.
        through: String,
    },
    /// A `--var` flag is not `NAME=VALUE` (the flag itself is not shown: it may be a secret).
    #[error("a --var flag has no '=': expected NAME=VALUE")]
    BadVar,
    /// A variable's value is not of its declared type (the value is not shown: it may be a secret).
    #[error("{file}: invalid value for {variable} (from {origin}): {problem}; give a value of type {expected}")]
    VariableType {
        /// The file declaring the variable.
        file: String,
        /// `var.x`, or `module.m["k"].var.x` inside a module.
        variable: String,
        /// Where the value came from: `terraform.tfvars`, `a --var flag`, `the call of module.m`.
        origin: String,
        /// The declared type, e.g. `map(object({size = number}))`.
        expected: String,
        /// Where and why the conversion failed.
        problem: String,
    },
    /// A `validation` block of a variable rejects its value.
    #[error("{file}: invalid value for {variable}: {message}")]
    Validation {
        /// The file declaring the variable.
        file: String,
        /// `var.x` or `module.m.var.x`.
        variable: String,
        /// The block's `error_message`.
        message: String,
    },
    /// A `nullable = false` variable without a default was given null.
    #[error("{file}: {variable} must not be null (nullable = false, from {origin}); give it a value or a default")]
    NullVariable {
        /// The file declaring the variable.
        file: String,
        /// `var.x` or `module.m.var.x`.
        variable: String,
        /// Where the null came from.
        origin: String,
    },
}
