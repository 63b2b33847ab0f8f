//! Handing freed memory back to the system.
//!
//! A burst of calls raises the heap to a high-water mark — mostly the SIP
//! stack's finished transactions, kept 64·T1 (32 s) to answer
//! retransmissions: at 500 calls/s some 16,000 of them. When they go, glibc's
//! malloc keeps the freed pages in its arenas, and a fragmented arena
//! cannot shrink from the top, so the daemon's RSS stays near the peak and
//! creeps as each burst leaves the free space in other places, although
//! nothing is live (the churn benchmark: live heap flat at 1.4 MB, RSS 72 MB
//! and growing). `malloc_trim` returns every free page of every arena.
//!
//! It runs on the blocking pool when the daemon has gone quiet (no call,
//! no transaction left) after being busy, and once a minute while it stays
//! busy. Elsewhere than glibc this does nothing.

#![allow(clippy::disallowed_methods)] // an edge: times the trims

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sip::ua::UserAgent;

use super::context::CallContext;

/// How often the daemon looks whether it has gone quiet.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// The longest time between trims while calls keep coming.
const BUSY_EVERY: Duration = Duration::from_secs(60);

/// Trim now and then until the daemon stops.
pub(super) async fn give_back(ctx: Arc<CallContext>, ua: Arc<UserAgent>) {
    // What starting up freed (prompt rendering, config parsing) goes first.
    let mut dirty = true;
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECK_EVERY) => {}
            _ = ctx.shutdown.cancelled() => return,
        }
        let stack = ua.stack_counts();
        let quiet =
            ctx.tasks.is_empty() && stack.transactions == 0 && stack.finished_transactions == 0;
        let due = if quiet {
            std::mem::take(&mut dirty)
        } else {
            dirty = true;
            last.elapsed() >= BUSY_EVERY
        };
        if due {
            last = Instant::now();
            tokio::task::spawn_blocking(trim).await.ok();
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> std::ffi::c_int;
    }
    let started = Instant::now();
    // SAFETY: glibc's malloc_trim takes any pad, touches only free chunks
    // under the arenas' own locks, and is safe to call from any thread.
    let released = unsafe { malloc_trim(0) };
    tracing::debug!(
        released = released != 0,
        ms = started.elapsed().as_secs_f32() * 1000.0,
        "free heap pages returned"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
