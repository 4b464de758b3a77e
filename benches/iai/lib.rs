//! Nothing: this package holds the `instructions` bench (`benches/instructions.rs`).
