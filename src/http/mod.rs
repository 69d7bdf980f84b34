//! The agent's HTTP side: the endpoints (`server`), the status page (`status`) and the
//! protection and serving of connections (`web`: basic auth, TLS, the accept loop, the
//! connection cap). It reads the fleet and the metrics; nothing below it knows it exists.

pub mod server;
mod state;
pub mod status;
pub mod web;

pub use state::ServerState;
