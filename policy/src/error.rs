//! Why a policy could not say anything: it does not compile, its input is not a Rego value, or
//! its `deny` rule failed or is not a set of messages; each with the place and the fix.

use std::fmt;

/// The name the module is compiled under; positions read `rule.rego:LINE:COLUMN`, the file
/// standing for the policy's `rule` attribute.
pub(crate) const MODULE_FILE: &str = "rule.rego";

/// A place in the module, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// The line, from 1.
    pub line: u32,
    /// The column, from 1.
    pub column: u32,
}

/// Why a policy could not be compiled or evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// The module does not compile: a syntax error (with its position), a missing `package`,
    /// or a module over the engine's size limits (no position). Fix the module.
    Compile {
        /// Where the parser stopped, when it says.
        position: Option<Position>,
        /// The parser's message, e.g. `expecting expression`.
        message: String,
    },
    /// The input cannot be handed to the engine. Fix the input.
    Input {
        /// What the engine said.
        message: String,
    },
    /// The module compiled but `deny` failed for this input: an unknown function, an unsafe
    /// variable, a builtin's error such as a division by zero, conflicting values. Fix the
    /// module (or the input it trips over).
    Eval {
        /// Where the evaluation failed, when the engine says.
        position: Option<Position>,
        /// The engine's message, e.g. `could not find function foo`.
        message: String,
    },
    /// The module has no `deny` rule (a misspelt `dney`, or the messages in another rule).
    NoDeny {
        /// The module's package, e.g. `data.novacron.sizing`.
        package: String,
    },
    /// `deny` evaluated to something other than a set of messages (`deny := 5`). Write it as
    /// `deny contains msg if { ... }`.
    DenyNotASet {
        /// The value `deny` had, as JSON.
        found: String,
    },
}

impl PolicyError {
    /// The line the error is on, when it has one.
    pub fn line(&self) -> Option<u32> {
        match self {
            PolicyError::Compile { position, .. } | PolicyError::Eval { position, .. } => position.map(|p| p.line),
            PolicyError::Input { .. } | PolicyError::NoDeny { .. } | PolicyError::DenyNotASet { .. } => None,
        }
    }

    /// A compile error from the engine's text.
    pub(crate) fn compile(engine_text: &str) -> PolicyError {
        let (position, message) = parse_engine_text(engine_text);
        PolicyError::Compile { position, message }
    }

    /// An evaluation error from the engine's text.
    pub(crate) fn eval(engine_text: &str) -> PolicyError {
        let (position, message) = parse_engine_text(engine_text);
        PolicyError::Eval { position, message }
    }
}

/// `rule.rego:4:15: message`, or the message alone.
struct Located<'a>(Option<Position>, &'a str);

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(Position { line, column }) => write!(f, "{MODULE_FILE}:{line}:{column}: {}", self.1),
            None => f.write_str(self.1),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Compile { position, message } => write!(f, "the Rego module does not compile: {}", Located(*position, message)),
            PolicyError::Input { message } => write!(f, "the input cannot be given to the Rego module: {message}"),
            PolicyError::Eval { position, message } => write!(f, "`deny` could not be evaluated: {}", Located(*position, message)),
            PolicyError::NoDeny { package } => write!(f, "the Rego module has no `deny` rule in package {package}; write deny contains msg if {{ ... }}"),
            PolicyError::DenyNotASet { found } => write!(f, "`deny` must be a set of messages (deny contains msg if {{ ... }}), not {found}"),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Reads regorus's error text, which looks like
///
/// ```text
///
/// --> rule.rego:5:1
///   |
/// 5 | }
///   | ^
/// error: expecting expression
/// ```
///
/// into the first position it names and its first `error:` message. Text in another shape is
/// kept whole, as the message.
fn parse_engine_text(text: &str) -> (Option<Position>, String) {
    let position = text.lines().find_map(|l| l.trim_start().strip_prefix("--> ")).and_then(|place| {
        let mut parts = place.rsplitn(3, ':');
        let column = parts.next()?.trim().parse().ok()?;
        let line = parts.next()?.trim().parse().ok()?;
        Some(Position { line, column })
    });
    let message = text.lines().find_map(|l| l.strip_prefix("error: ")).map(str::trim).filter(|m| !m.is_empty());
    match (position, message) {
        (Some(position), Some(message)) => (Some(position), message.to_string()),
        _ => (None, text.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_text_gives_the_first_position_and_message() {
        let text = "\n--> rule.rego:5:1\n  |\n5 | }\n  | ^\nerror: expecting expression";
        assert_eq!(parse_engine_text(text), (Some(Position { line: 5, column: 1 }), "expecting expression".to_string()));
        let two = "\n--> rule.rego:4:3\n  |\n4 |   x := 1\n  |   ^\nerror: var `x` used before definition below.\n--> rule.rego:5:3\n  |\n5 |   x := 2\n  |   ^\ndefinition: ";
        assert_eq!(parse_engine_text(two), (Some(Position { line: 4, column: 3 }), "var `x` used before definition below.".to_string()));
        assert_eq!(parse_engine_text("  policy too large  "), (None, "policy too large".to_string()));
        assert_eq!(parse_engine_text("--> rule.rego:x:1\nerror: odd"), (None, "--> rule.rego:x:1\nerror: odd".to_string()), "no position, nothing dropped");
    }

    #[test]
    fn display_says_what_failed_and_where() {
        let at = Some(Position { line: 4, column: 15 });
        let compile = PolicyError::Compile { position: at, message: "expecting expression".into() };
        assert_eq!(compile.to_string(), "the Rego module does not compile: rule.rego:4:15: expecting expression");
        assert_eq!(compile.line(), Some(4));
        let eval = PolicyError::Eval { position: None, message: "divide by zero".into() };
        assert_eq!(eval.to_string(), "`deny` could not be evaluated: divide by zero");
        assert_eq!(eval.line(), None);
        let not_a_set = PolicyError::DenyNotASet { found: "5".into() };
        assert_eq!(not_a_set.to_string(), "`deny` must be a set of messages (deny contains msg if { ... }), not 5");
    }
}
