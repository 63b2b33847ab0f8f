//! Deadline-based media clock.
//!
//! Every deadline is computed from the fixed start instant as
//! `start + n * period`, never by adding periods to a running value, so
//! wake-up jitter and rounding never accumulate into drift. The caller
//! owns the timer: it sleeps until [`Pacer::next_deadline`], then calls
//! [`Pacer::poll`] with the current time.

use std::time::{Duration, Instant};

/// Default cap on frames released by one [`Pacer::poll`].
pub const DEFAULT_MAX_BURST: u32 = 3;

/// What is due at a wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Due {
    /// Frames to produce now.
    pub frames: u32,
    /// Frames dropped because the caller fell more than `max_burst` periods
    /// behind. The sender should still advance its RTP timestamp over them
    /// (e.g. `RtpSender::skip(skipped * samples_per_frame)`).
    pub skipped: u64,
}

/// Fixed-period frame clock on a grid anchored at `start`.
#[derive(Debug, Clone)]
pub struct Pacer {
    start: Instant,
    period: Duration,
    ticks: u64,
    max_burst: u32,
}

impl Pacer {
    /// A pacer whose first frame falls due at `start + period`.
    ///
    /// # Panics
    /// If `period` is zero (a configuration error, not peer input).
    pub fn new(start: Instant, period: Duration) -> Self {
        assert!(!period.is_zero(), "pacer period must be non-zero");
        Self {
            start,
            period,
            ticks: 0,
            max_burst: DEFAULT_MAX_BURST,
        }
    }

    /// Cap frames per poll at `max_burst` (at least 1).
    pub fn with_max_burst(mut self, max_burst: u32) -> Self {
        self.max_burst = max_burst.max(1);
        self
    }

    /// Frames accounted for so far, sent or skipped.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// The frame period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// When the next frame is due: `start + (ticks + 1) * period`.
    pub fn next_deadline(&self) -> Instant {
        self.start + self.offset(self.ticks.saturating_add(1))
    }

    /// How long to sleep from `now` until the next deadline (zero if due).
    pub fn time_until_next(&self, now: Instant) -> Duration {
        self.next_deadline().saturating_duration_since(now)
    }

    /// Called when woken at `now`: how many frames are due (0 if early).
    /// If more than `max_burst` are due (the process stalled), the oldest
    /// are skipped so that at most `max_burst` go out at once; the grid is
    /// unchanged, so pacing resumes on the original deadlines.
    pub fn poll(&mut self, now: Instant) -> Due {
        let elapsed = now.saturating_duration_since(self.start);
        let due_total = elapsed.as_nanos() / self.period.as_nanos();
        let due_total = u64::try_from(due_total).unwrap_or(u64::MAX);
        let behind = due_total.saturating_sub(self.ticks);
        let frames = behind.min(u64::from(self.max_burst));
        let skipped = behind - frames;
        self.ticks += behind;
        Due {
            // `frames <= max_burst`, a u32.
            frames: frames as u32,
            skipped,
        }
    }

    /// `n * period` without overflow for any realistic `n`.
    fn offset(&self, n: u64) -> Duration {
        let nanos = self.period.as_nanos().saturating_mul(u128::from(n));
        let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        Duration::new(secs, (nanos % 1_000_000_000) as u32)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    const P: Duration = Duration::from_millis(20);

    #[test]
    fn ten_minutes_with_jitter_never_drifts() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, P);
        let mut rng = StdRng::seed_from_u64(20);
        let (mut total, mut max_once, mut now) = (0u64, 0u32, start);
        for _ in 0..30_000 {
            let jitter = Duration::from_micros(rng.random_range(0..=15_000));
            now = pacer.next_deadline() + jitter;
            let due = pacer.poll(now);
            assert_eq!(due.skipped, 0);
            assert!(due.frames >= 1, "woken at or after a deadline");
            total += u64::from(due.frames);
            max_once = max_once.max(due.frames);
        }
        let elapsed = now - start;
        assert_eq!(total, 30_000);
        assert_eq!(u128::from(total), elapsed.as_nanos() / P.as_nanos());
        assert!(max_once <= 2, "no burst: {max_once}");
        assert_eq!(pacer.next_deadline(), start + P * 30_001);
    }

    #[test]
    fn sleepy_timer_jitter_is_absorbed() {
        // Wake-ups that overshoot by up to 1.5 periods still add up exactly.
        let start = Instant::now();
        let mut pacer = Pacer::new(start, P);
        let mut rng = StdRng::seed_from_u64(7);
        let mut total = 0u64;
        let mut now = start;
        for _ in 0..10_000 {
            now = pacer.next_deadline() + Duration::from_micros(rng.random_range(0..30_000));
            let due = pacer.poll(now);
            assert!(due.frames <= 2 && due.skipped == 0);
            total += u64::from(due.frames);
        }
        assert_eq!(u128::from(total), (now - start).as_nanos() / P.as_nanos());
    }

    #[test]
    fn stall_skips_then_resumes_on_grid() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, P).with_max_burst(3);
        for k in 1..=10u32 {
            assert_eq!(pacer.poll(start + P * k).frames, 1);
        }
        // Stalled: woken a full second after the deadline of frame 11.
        let late = pacer.next_deadline() + Duration::from_secs(1);
        let due = pacer.poll(late);
        assert_eq!(due.frames, 3);
        assert_eq!(due.skipped, 51 - 3);
        assert_eq!(pacer.ticks(), 61);
        assert_eq!(pacer.next_deadline(), start + P * 62, "same grid");
        assert_eq!(pacer.time_until_next(late), P);
        assert_eq!(
            pacer.poll(start + P * 62 + Duration::from_millis(1)).frames,
            1
        );
    }

    #[test]
    fn early_wakeups_return_zero() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start, P);
        assert_eq!(pacer.poll(start), Due::default());
        assert_eq!(pacer.poll(start + Duration::from_millis(19)).frames, 0);
        assert_eq!(pacer.poll(start + P).frames, 1, "exactly on the deadline");
        assert_eq!(pacer.poll(start + P).frames, 0, "same instant again");
        assert_eq!(
            pacer.poll(start + P * 2 - Duration::from_nanos(1)).frames,
            0
        );
        // A clock reading before `start` is treated as early, not a panic.
        if let Some(before) = start.checked_sub(Duration::from_secs(1)) {
            assert_eq!(pacer.poll(before), Due::default());
        }
        assert_eq!(pacer.ticks(), 1);
    }
}
