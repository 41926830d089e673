//! Benchmark placeholder until the drift benchmark lands.
fn main() {}
