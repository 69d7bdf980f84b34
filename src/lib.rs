//! obf-exporter: watches Open Badge Factory API credentials and exposes Prometheus metrics.
//!
//! The modules read top-down, as the data flows: `config` (the file, validated) → `fleet` (the
//! orgs, their schedules and probes) → `obf` (tokens and the OBF HTTP client) → `metrics` →
//! `http` (the endpoints). `app` builds and runs the agent from them; `commands` holds each
//! subcommand; `clock`, `random` and `logging` are small utilities any part may use. No two
//! modules import each other, directly or round a loop (`scripts/check-module-cycles`, run by
//! `scripts/test`); the parts and what each must not know: `docs/architecture.md`.

pub mod app;
pub mod commands;
pub mod config;
pub mod fleet;
pub mod http;
pub mod metrics;
pub mod obf;

pub mod clock;
pub mod logging;
pub mod random;
