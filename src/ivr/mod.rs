//! Call flows as state machines fed inputs and the time.

pub mod dial_policy;
pub mod directory;
pub mod inbound;
pub mod keypad;
pub mod outbound;
pub mod pin;
pub mod throttle;
