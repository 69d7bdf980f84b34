//! The fleet: every configured org, when it runs and what one run (a probe) does. It owns the
//! running configuration and its reloads (`controller`), the orgs built from it (`agent`, `org`),
//! their schedule tasks (`schedule`, `supervisor`), the probe, and the client secrets in use
//! (`client_secret`, `secret_watch`). It uses `obf` for tokens and requests and writes into
//! `metrics`; it knows nothing about HTTP serving.

pub mod agent;
pub mod client_secret;
pub mod controller;
pub mod org;
pub mod probe;
pub mod report;
pub mod schedule;
pub mod secret_watch;
pub mod stop;
pub mod supervisor;
