//! The control socket: other programs place outbound calls into rooms,
//! hang up, mute, kick, list rooms and follow events, as JSON lines over a
//! Unix socket and, optionally, TCP with a token.
//!
//! The server speaks to the daemon only through [`Switchboard`], so the
//! protocol is tested on its own and the daemon stays free of JSON.

pub mod cli;
pub mod client;
mod connection;
pub mod lines;
pub mod peers;
pub mod protocol;
pub mod server;
pub mod switchboard;

pub use client::{ClientError, ControlClient, Endpoint};
pub use peers::{Peer, Peers};
pub use server::{serve, ControlCounters, ControlError, ControlServer};
pub use switchboard::{CommandError, DialRequest, Draining, Reloaded, Status, Switchboard, Target};
