//! DTMF: one digit stream per call, whatever carried the key press
//! (RFC 4733 events, SIP INFO, or tones in the audio). Sans-IO.

pub mod inband;
pub mod info;
pub mod keyer;
pub mod rfc4733;

use std::time::{Duration, Instant};

/// Which receivers listen (`dtmf.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfMode {
    /// All three at once; a press heard two ways is reported once.
    Auto,
    Rfc4733,
    Info,
    Inband,
}

/// What carried a digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Rfc4733,
    Info,
    Inband,
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    pub digit: char,
    pub source: Source,
    pub at: Instant,
}

/// Per-call counters, logged at hang-up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DigitCounters {
    pub rfc4733: u32,
    pub info: u32,
    pub inband: u32,
    /// The same press reported again by another source, dropped.
    pub duplicates: u32,
    /// In-band hits ignored because the call signals digits out of band.
    pub inband_suppressed: u32,
}

/// How far apart two reports of one press from different sources can be:
/// an RFC 4733 event is reported at its end, the tone detector 40 ms after
/// its start, so a long press puts them a press-length apart.
const SAME_PRESS: Duration = Duration::from_millis(600);

/// Merges the receivers' reports into one stream.
#[derive(Debug)]
pub struct DigitStream {
    mode: DtmfMode,
    last: Option<Digit>,
    /// Set once the peer sent an RFC 4733 event or an INFO digit: from then
    /// on the audio path only repeats what the signalling said.
    out_of_band_seen: bool,
    counters: DigitCounters,
}

impl DigitStream {
    pub fn new(mode: DtmfMode) -> Self {
        DigitStream {
            mode,
            last: None,
            out_of_band_seen: false,
            counters: DigitCounters::default(),
        }
    }

    /// Offer a digit from a receiver; `Some` when it is a new press.
    pub fn offer(&mut self, digit: char, source: Source, at: Instant) -> Option<Digit> {
        let wanted = match self.mode {
            DtmfMode::Auto => true,
            DtmfMode::Rfc4733 => source == Source::Rfc4733,
            DtmfMode::Info => source == Source::Info,
            DtmfMode::Inband => source == Source::Inband,
        };
        if !wanted {
            return None;
        }
        if source == Source::Inband && self.out_of_band_seen {
            self.counters.inband_suppressed += 1;
            return None;
        }
        if let Some(last) = self.last {
            let close = at.saturating_duration_since(last.at) < SAME_PRESS
                && last.at.saturating_duration_since(at) < SAME_PRESS;
            if last.digit == digit && last.source != source && close {
                self.counters.duplicates += 1;
                return None;
            }
        }
        match source {
            Source::Rfc4733 => self.counters.rfc4733 += 1,
            Source::Info => self.counters.info += 1,
            Source::Inband => self.counters.inband += 1,
        }
        if source != Source::Inband {
            self.out_of_band_seen = true;
        }
        let d = Digit { digit, source, at };
        self.last = Some(d);
        Some(d)
    }

    pub fn counters(&self) -> DigitCounters {
        self.counters
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    fn ms(t: Instant, n: u64) -> Instant {
        t + Duration::from_millis(n)
    }

    #[test]
    fn a_press_heard_as_tone_and_event_is_reported_once() {
        let t = Instant::now();
        let mut s = DigitStream::new(DtmfMode::Auto);
        assert!(s.offer('5', Source::Inband, ms(t, 40)).is_some());
        assert!(s.offer('5', Source::Rfc4733, ms(t, 200)).is_none());
        let c = s.counters();
        assert_eq!((c.inband, c.rfc4733, c.duplicates), (1, 0, 1));
    }

    #[test]
    fn once_events_flow_tones_are_suppressed_but_repeated_digits_count() {
        let t = Instant::now();
        let mut s = DigitStream::new(DtmfMode::Auto);
        let got: Vec<char> = [
            ('1', Source::Rfc4733, 100),
            ('1', Source::Inband, 140),
            ('1', Source::Rfc4733, 400),
            ('2', Source::Rfc4733, 700),
            ('2', Source::Rfc4733, 1000),
        ]
        .into_iter()
        .filter_map(|(d, src, at)| s.offer(d, src, ms(t, at)))
        .map(|d| d.digit)
        .collect();
        assert_eq!(got.iter().collect::<String>(), "1122");
        assert_eq!(s.counters().inband_suppressed, 1);
    }

    #[test]
    fn a_single_mode_ignores_the_other_sources() {
        let t = Instant::now();
        let mut s = DigitStream::new(DtmfMode::Inband);
        assert!(s.offer('7', Source::Rfc4733, t).is_none());
        assert!(s.offer('7', Source::Info, t).is_none());
        assert_eq!(
            s.offer('7', Source::Inband, t).map(|d| d.source),
            Some(Source::Inband)
        );
    }

    #[test]
    fn info_digits_merge_like_events() {
        let t = Instant::now();
        let mut s = DigitStream::new(DtmfMode::Auto);
        assert!(s.offer('#', Source::Info, t).is_some());
        assert!(s.offer('#', Source::Rfc4733, ms(t, 50)).is_none());
        assert!(
            s.offer('#', Source::Info, ms(t, 900)).is_some(),
            "a later press"
        );
    }
}
