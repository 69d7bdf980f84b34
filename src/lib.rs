//! obf-exporter: watches Open Badge Factory API credentials and exposes Prometheus metrics.
//!
//! The modules read top-down, as the data flows: `config` (the file, validated) → `fleet` (the
//! orgs, their schedules and probes) → `obf` (tokens and the OBF HTTP client) → `metrics` →
//! `http` (the endpoints). `app` builds and runs the agent from them; `commands` holds each
//! subcommand. Imports point down that list (no module imports one above it, and there are no
//! cycles: `scripts/check-module-cycles`); see `docs/architecture.md`.

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
