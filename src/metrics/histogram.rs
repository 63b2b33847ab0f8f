//! A histogram the media threads fill without a lock: fixed upper bounds,
//! plain counts, copied out with the rest of a thread's figures.

use std::time::Duration;

/// Most buckets a histogram has, `+Inf` included.
const MAX_BUCKETS: usize = 16;

/// Counts of observations per bucket (not cumulative), their sum and number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending; values above the last go to `+Inf`.
    bounds: &'static [f64],
    counts: [u64; MAX_BUCKETS],
    sum: f64,
    count: u64,
}

/// Mixer tick durations, seconds: 50 µs to 20 ms (a tick's whole budget) and beyond.
pub const TICK_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
];

/// Interarrival jitter, seconds: 1 ms to 200 ms.
pub const JITTER_SECONDS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2];

impl Histogram {
    /// An empty histogram over `bounds` (at most 15, ascending).
    pub const fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() < MAX_BUCKETS, "too many buckets");
        Histogram {
            bounds,
            counts: [0; MAX_BUCKETS],
            sum: 0.0,
            count: 0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += value;
        self.count += 1;
    }

    pub fn observe_duration(&mut self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// Add the observations of `other`, which must have the same bounds.
    pub fn add(&mut self, other: &Histogram) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// `(upper bound, count)` per bucket, `+Inf` last, not cumulative.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 2.5, 9.0] {
            h.observe(v);
        }
        let buckets: Vec<_> = h.buckets().collect();
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 1), (f64::INFINITY, 2)]);
        assert_eq!(h.count(), 5);
        assert!((h.sum() - 14.5).abs() < 1e-9);
        let mut total = Histogram::new(&[1.0, 2.0]);
        total.add(&h);
        total.add(&h);
        assert_eq!(total.count(), 10);
        assert_eq!(total.buckets().nth(2), Some((f64::INFINITY, 4)));
    }
}
