//! Evaluation of the desired state: the `novacron_*` resources of a Terraform configuration, as API objects.

mod attrs;
mod eval;
mod expr;
pub mod funcs;
pub mod parse;
pub mod resolve;
mod template;
mod value;

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
}
