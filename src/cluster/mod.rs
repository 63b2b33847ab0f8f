//! The cluster: several confgate nodes share a room directory in Redis
//! (see docs/cluster.md). The node where a room's first member arrives
//! claims the room; the others see it as held there.
//!
//! `claims` is the sans-IO core (which rooms this node holds, when each
//! claim is refreshed, whether the directory is up); `directory` is its
//! edge to Redis.

pub mod claims;
pub mod directory;
pub mod ticket;

pub use directory::{Counters, Directory, Owner, Unreachable, DEADLINE, PREFIX};
