//! Talking to Open Badge Factory: the HTTP client (`client`), the per-credential token cache and
//! its rules (`token`), what is known about a credential (`credential`) and the closed set of
//! failure reasons (`reason`). It knows nothing about orgs, schedules, metrics or HTTP serving.

pub mod client;
pub mod credential;
pub mod reason;
pub mod token;
