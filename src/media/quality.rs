//! Call quality as a listener would score it: the ITU-T G.107 E-model,
//! reduced to what a media server can measure (codec, packet loss, jitter,
//! round-trip time), and an alarm for a line that stays bad.
//!
//! The transmission rating is
//!
//! ```text
//! R = R0 − Is − Id − Ie,eff + A        with R0 − Is = 93.2 and A = 0
//! ```
//!
//! (G.107's default values for everything a server cannot see: loudness,
//! noise, sidetone, echo). The delay impairment uses the usual reduction of
//! G.107's Id for a one-way mouth-to-ear delay `d` in ms (Cole & Rosenbluth,
//! 2001):
//!
//! ```text
//! Id = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)
//! ```
//!
//! with `d` = RTT/2 + 2·jitter + 40 ms (one 20 ms frame of packetisation and
//! a 20 ms jitter buffer). The effective equipment impairment of G.107 §7.4
//! for random loss (BurstR = 1) is
//!
//! ```text
//! Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl + Bpl)
//! ```
//!
//! with G.113 Appendix I's values for G.711 with packet loss concealment,
//! which the mixer does: Ie = 0, Bpl = 25.1. The score is G.107 Annex B's
//! mapping of R to an estimated MOS:
//!
//! ```text
//! MOS = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)     for 0 < R < 100
//! ```

use std::time::{Duration, Instant};

/// R0 − Is with G.107's default values.
const R_BASE: f64 = 93.2;
/// G.711 with packet loss concealment (G.113 Appendix I).
const IE_G711: f64 = 0.0;
const BPL_G711_PLC: f64 = 25.1;
/// Packetisation plus the jitter buffer's minimum, ms.
const FIXED_DELAY_MS: f64 = 40.0;

/// What the E-model is fed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Share of packets lost, 0.0–1.0.
    pub loss: f64,
    /// Interarrival jitter, ms.
    pub jitter_ms: f64,
    /// Round-trip time, ms (0 when unknown).
    pub rtt_ms: f64,
}

/// The one-way mouth-to-ear delay the model assumes, ms.
pub fn one_way_delay_ms(c: &Conditions) -> f64 {
    c.rtt_ms.max(0.0) / 2.0 + 2.0 * c.jitter_ms.max(0.0) + FIXED_DELAY_MS
}

/// G.107's transmission rating R for G.711 with `loss` (0.0–1.0) and a
/// one-way delay of `d` ms.
pub fn r_factor(loss: f64, d: f64) -> f64 {
    let ppl = (loss * 100.0).clamp(0.0, 100.0);
    let ie_eff = IE_G711 + (95.0 - IE_G711) * ppl / (ppl + BPL_G711_PLC);
    let id = 0.024 * d + if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    (R_BASE - id - ie_eff).clamp(0.0, 100.0)
}

/// G.107 Annex B: R to an estimated mean opinion score, 1.0–4.5.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        // The polynomial dips just under 1 for R below about 6.5.
        (1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)).max(1.0)
    }
}

/// The estimated MOS of a G.711 call under `c`.
pub fn mos(c: &Conditions) -> f64 {
    mos_from_r(r_factor(c.loss, one_way_delay_ms(c)))
}

/// A change the alarm reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Below the threshold for the hold time.
    Degraded,
    /// At or above the threshold again.
    Recovered,
}

/// Raises when the score stays below `threshold` for `hold`, and clears on
/// the first score at or above it.
#[derive(Debug, Clone)]
pub struct QualityAlarm {
    threshold: f64,
    hold: Duration,
    below_since: Option<Instant>,
    raised: bool,
}

impl QualityAlarm {
    pub fn new(threshold: f64, hold: Duration) -> Self {
        QualityAlarm {
            threshold,
            hold,
            below_since: None,
            raised: false,
        }
    }

    /// A new score at `now`; the change it makes, if any.
    pub fn update(&mut self, mos: f64, now: Instant) -> Option<Change> {
        if mos >= self.threshold {
            self.below_since = None;
            return std::mem::take(&mut self.raised).then_some(Change::Recovered);
        }
        let since = *self.below_since.get_or_insert(now);
        if !self.raised && now.saturating_duration_since(since) >= self.hold {
            self.raised = true;
            return Some(Change::Degraded);
        }
        None
    }

    pub fn raised(&self) -> bool {
        self.raised
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    fn clean(loss: f64) -> Conditions {
        Conditions {
            loss,
            jitter_ms: 0.0,
            rtt_ms: 0.0,
        }
    }

    #[test]
    fn g711_without_loss_or_delay_is_the_standards_default() {
        // G.107 with every default: R = 93.2, MOS ≈ 4.41.
        let r = r_factor(0.0, 0.0);
        assert!((r - 93.2).abs() < 1e-9, "{r}");
        let m = mos_from_r(r);
        assert!((m - 4.41).abs() < 0.01, "{m}");
        // With our fixed 40 ms of delay: R ≈ 92.2, still ≈ 4.4.
        let m = mos(&clean(0.0));
        assert!((m - 4.39).abs() < 0.02, "{m}");
    }

    #[test]
    fn five_percent_random_loss_costs_about_half_a_point() {
        // Ie,eff = 95·5 / (5 + 25.1) = 15.78; R = 93.2 − 0.96 − 15.78 = 76.46.
        let r = r_factor(0.05, 40.0);
        assert!((r - 76.46).abs() < 0.01, "{r}");
        let m = mos_from_r(r);
        assert!((m - 3.88).abs() < 0.01, "{m}");
        // 10 % loss is below the 3.5 alarm threshold.
        assert!(mos(&clean(0.10)) < 3.5);
    }

    #[test]
    fn delay_beyond_177_ms_costs_more() {
        let near = r_factor(0.0, 150.0);
        let far = r_factor(0.0, 300.0);
        assert!((near - (93.2 - 3.6)).abs() < 1e-9);
        assert!((far - (93.2 - 7.2 - 0.11 * 122.7)).abs() < 1e-9);
        // RTT 400 ms, jitter 30 ms: d = 200 + 60 + 40 = 300.
        let c = Conditions {
            loss: 0.0,
            jitter_ms: 30.0,
            rtt_ms: 400.0,
        };
        assert_eq!(one_way_delay_ms(&c), 300.0);
    }

    #[test]
    fn the_score_stays_in_range() {
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        assert!(mos(&clean(1.0)) >= 1.0);
        assert_eq!(r_factor(2.0, 1e6), 0.0);
    }

    #[test]
    fn the_alarm_raises_after_the_hold_and_clears_on_recovery() {
        let t = Instant::now();
        let s = Duration::from_secs(1);
        let mut a = QualityAlarm::new(3.5, 10 * s);
        assert_eq!(a.update(4.2, t), None);
        assert_eq!(a.update(3.2, t + s), None);
        assert_eq!(a.update(3.1, t + 10 * s), None, "9 s below");
        assert_eq!(a.update(3.0, t + 11 * s), Some(Change::Degraded));
        assert_eq!(a.update(3.0, t + 16 * s), None, "raised once");
        assert!(a.raised());
        assert_eq!(a.update(4.0, t + 20 * s), Some(Change::Recovered));
        assert_eq!(a.update(4.0, t + 21 * s), None);
        // A short dip does not raise it.
        assert_eq!(a.update(3.0, t + 22 * s), None);
        assert_eq!(a.update(4.0, t + 25 * s), None);
        assert_eq!(a.update(3.0, t + 26 * s), None);
        assert_eq!(a.update(3.0, t + 35 * s), None, "9 s below since the dip");
    }
}
