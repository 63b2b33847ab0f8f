//! Call flows as state machines fed inputs and the time.

pub mod directory;
pub mod inbound;
pub mod pin;
pub mod throttle;
