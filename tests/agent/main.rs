//! Integration tests: the real agent (in-process or the built binary) against the simulator, on
//! 127.0.0.1 with ephemeral ports. Times are scaled down where the property stays the same.

mod auth_bruteforce;
mod cli;
mod credential_ops;
mod credential_state;
mod credentials;
mod exposition;
mod first_hour;
mod hardening_files;
mod hardening_http;
mod lean_series;
mod operations;
mod prometheus;
mod protected;
mod reasons;
mod secret_rotation;
mod secrets;
mod status_page;
mod support;
mod tokens;
