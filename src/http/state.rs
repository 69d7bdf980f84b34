//! What the HTTP handlers read (the server's endpoints and the status page alike): its own
//! module so that both can use it and neither imports the other for it.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::fleet::controller::Controller;

/// What the handlers read.
#[derive(Clone)]
pub struct ServerState {
    pub controller: Arc<Controller>,
    /// A latch: set once the agent has scheduled its first round.
    pub ready: Arc<AtomicBool>,
}
