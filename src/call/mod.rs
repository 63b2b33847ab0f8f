//! The call: its identity, its admission, and the sans-IO call core that
//! holds every session rule of one call.

pub mod admission;
pub mod core;
mod exchange;
pub mod id;
pub mod media;
pub mod session;
pub mod webrtc;

pub use id::CallId;
