//! The subcommands other than `run` (which is [`crate::app::run`]): one module each. They use
//! the library's parts as any caller would; nothing in the library calls back into them.

pub mod check;
pub mod demo;
pub mod healthcheck;
pub mod probe;
pub mod sim;
