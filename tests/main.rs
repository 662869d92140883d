//! The integration tests of elt: one crate (one binary to build and link), one module per
//! area, and one fixture layer, `fixture`. One area: `cargo test --test main sync::`.
//!
//! `faults` (real faults against real servers) and `load` (many runners under pgbench) are
//! `#[ignore]`d in `cargo test`; `make test-faults` runs them through `scripts/faults.sh`
//! (`cargo test --test main -- --ignored faults::`, then `load::`) and prints the fault table.

mod fixture;

mod cli;
mod deployments;
mod edits;
mod failures;
mod fast_paths;
mod faults;
mod first_load;
mod fuzz_props;
mod ha_fixtures;
mod keys;
mod load;
mod new_job;
mod ops;
mod pagila;
mod repair_guards;
mod security;
mod signals;
mod state;
mod sync;
mod types;
mod validate;
mod verify;
