//! Call churn: many short calls through an in-process daemon, and the
//! memory it keeps with no call active.
//!
//! `cargo bench --bench call_churn` runs 100,000 calls at 500 calls/s
//! (`CONFGATE_CHURN=100000`, `CONFGATE_CHURN_RATE=500`,
//! `CONFGATE_CHURN_HOLD_MS=500` to change them) from hand-written phones
//! (see `phones.rs`: INVITE, 180, 200, ACK, 0.5 s, BYE, with some calls
//! keying a PIN by INFO, some CANCELed and some refused), with
//! `sip.early_media=false`. After every 10,000 it waits until the daemon
//! holds nothing for any call — its own maps, rsipstack's dialogs and
//! transactions, whose last responses are kept for 64·T1 = 32 s — and for
//! the daemon to hand glibc's free pages back (see `daemon/memory.rs`), and
//! prints the live heap as a counting global allocator in this binary sees
//! it (bytes and allocations), the RSS, and then the growth per 10,000
//! calls after the first 20,000 (the warm-up: pools, caches and maps
//! growing to their working size).
//!
//! The heap counted is the whole process: the daemon and the phones (whose
//! call table is emptied after each round).
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

mod phones;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use confgate::config::Config;
use confgate::daemon::{Daemon, Held};
use confgate::events::Event;

/// System malloc, counting what is live.
struct Counting;

static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);
static LIVE_BLOCKS: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
            LIVE_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as given.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as given.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Resident set size, from /proc/self/statm.
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Wait (up to `bound`) until the daemon holds nothing for any call.
fn quiesce(daemon: &Daemon, bound: Duration) -> (Held, Duration) {
    let start = Instant::now();
    loop {
        let held = daemon.held();
        if held == Held::default() || start.elapsed() >= bound {
            return (held, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Sample {
    calls: u64,
    bytes: i64,
    blocks: i64,
    rss: u64,
}

fn main() {
    let total: u64 = env("CONFGATE_CHURN", 100_000);
    let rate: f64 = env("CONFGATE_CHURN_RATE", 500.0);
    let hold = Duration::from_millis(env("CONFGATE_CHURN_HOLD_MS", 500));
    let step: u64 = 10_000.min(total.max(1));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("daemon")
        .enable_all()
        .build()
        .expect("runtime");
    let prompts = std::env::temp_dir().join("confgate-churn-prompts");
    let overrides: Vec<String> = [
        "sip.listen=127.0.0.1:0".to_owned(),
        "sip.early_media=false".to_owned(),
        "sip.allow=[\"127.0.0.1\"]".to_owned(),
        "rooms.trusted=[\"127.0.0.1\"]".to_owned(),
        "rtp.port_range=20000-29999".to_owned(),
        format!("prompts.dir={}", prompts.display()),
        "control.socket=".to_owned(),
    ]
    .into();
    let settings = Config::load(None, &overrides).expect("settings");
    let daemon = rt.block_on(Daemon::start(settings)).expect("daemon");

    // Count the joins the daemon reports, as a check that calls reach rooms.
    let joined = Arc::new(AtomicU64::new(0));
    let mut events = daemon.subscribe();
    let seen = joined.clone();
    rt.spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match events.recv().await {
                Ok(Event::MemberJoined { .. }) => {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    });

    println!(
        "call churn: {total} calls at {rate} calls/s, {} ms each, early media off, daemon on 2 threads",
        hold.as_millis()
    );
    println!(
        "{:>8} {:>12} {:>12} {:>10} {:>8} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7}",
        "calls",
        "live bytes",
        "live allocs",
        "RSS KiB",
        "round s",
        "joined",
        "487",
        "late",
        "488",
        "403",
        "other",
        "quiet s"
    );
    let mut phones = phones::Phones::new(daemon.sip_addr(), hold);
    let mut samples = Vec::new();
    let mut done = 0;
    while done < total {
        let n = step.min(total - done);
        let joined_before = joined.load(Ordering::Relaxed);
        let t = Instant::now();
        let out = phones.round(n, rate);
        let round_secs = t.elapsed().as_secs_f64();
        done += n;
        let (held, quiet) = quiesce(&daemon, Duration::from_secs(90));
        // The daemon hands free heap pages back once it has gone quiet; it
        // looks every 5 s.
        std::thread::sleep(Duration::from_secs(6));
        let sample = Sample {
            calls: done,
            bytes: LIVE_BYTES.load(Ordering::Relaxed),
            blocks: LIVE_BLOCKS.load(Ordering::Relaxed),
            rss: rss_bytes(),
        };
        println!(
            "{:>8} {:>12} {:>12} {:>10} {:>8.1} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7.1}",
            sample.calls,
            sample.bytes,
            sample.blocks,
            sample.rss / 1024,
            round_secs,
            joined.load(Ordering::Relaxed) - joined_before,
            out.cancelled,
            out.cancel_too_late,
            out.refused_488,
            out.refused_403,
            out.refused_other + out.failed,
            quiet.as_secs_f64(),
        );
        if out.total() != n {
            println!("         ({} calls unaccounted for)", n - out.total());
        }
        if held != Held::default() {
            println!("         still held after 90 s: {held:?}");
        }
        samples.push(sample);
    }

    // Growth after the warm-up (the first 20,000 calls).
    let warm = samples.iter().position(|s| s.calls >= 2 * step);
    match (warm.map(|i| &samples[i]), samples.last()) {
        (Some(a), Some(b)) if b.calls > a.calls => {
            let per = (b.calls - a.calls) as f64 / step as f64;
            let bytes = (b.bytes - a.bytes) as f64 / per;
            let blocks = (b.blocks - a.blocks) as f64 / per;
            let rss = (b.rss as f64 - a.rss as f64) / per;
            println!(
                "growth per {step} calls after {}: live heap {:+.0} bytes ({:+.1} allocations), RSS {:+.0} KiB",
                a.calls,
                bytes,
                blocks,
                rss / 1024.0
            );
        }
        _ => println!("(too few calls to measure growth after the warm-up)"),
    }
    rt.block_on(daemon.shutdown());
    rt.shutdown_timeout(Duration::from_secs(1));
}
