//! obf-exporter: watches Open Badge Factory API credentials and exposes Prometheus metrics.
//!
//! Data flows one way: config → schedule → probe → (token cache, OBF client) → metrics → server.

pub mod agent;
pub mod client_secret;
pub mod clock;
pub mod commands;
pub mod config;
pub mod controller;
pub mod credential;
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod obf_client;
pub mod probe;
pub mod random;
pub mod reason;
pub mod schedule;
pub mod secret_watch;
pub mod server;
pub mod shard;
pub mod status;
pub mod supervisor;
pub mod token;
pub mod web;
