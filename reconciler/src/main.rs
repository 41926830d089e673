//! The novacron-reconcile command (placeholder until the CLI lands).
fn main() {}
