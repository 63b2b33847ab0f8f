//! Sending key presses as RFC 4733 telephone-events (sans-IO).
//!
//! The [`Keyer`] is asked once per 20 ms frame what to send in place of
//! audio. Each digit is a 100 ms event: one packet per frame, all with the
//! event's start timestamp, durations growing by 160, the marker on the
//! first; then the end packet three times (RFC 4733 §2.5.1.4), then 100 ms
//! of audio before the next digit. The media timestamp keeps running under
//! the events, so the audio after them carries on in RTP time.

use std::collections::VecDeque;

/// Samples per frame at 8 kHz.
#[cfg(test)]
const FRAME: u32 = 160;
/// Frames of one digit's tone (100 ms).
const TONE_FRAMES: u32 = 5;
/// End packets sent for each digit.
const END_PACKETS: u32 = 3;
/// Frames of audio between two digits (100 ms).
const GAP_FRAMES: u32 = 5;
/// Event volume, dBm0 below 0 (RFC 4733 §2.3.4): -10 dBm0.
const VOLUME: u8 = 10;
/// Digits waiting at most.
pub const MAX_QUEUED: usize = 64;

/// The RFC 4733 event code of a key.
pub fn event_code(key: char) -> Option<u8> {
    match key {
        '0'..='9' => Some(key as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (key as u8 - b'A')),
        'a'..='d' => Some(12 + (key as u8 - b'a')),
        _ => None,
    }
}

/// Why digits were not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyerError {
    #[error("{0:?} is not a DTMF key (0-9, *, #, A-D)")]
    NotAKey(char),
    #[error("more than {MAX_QUEUED} digits waiting")]
    TooMany,
}

/// One event packet to send in this frame's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// The 4-byte RFC 4733 payload.
    pub payload: [u8; 4],
    /// The event's start: the RTP timestamp of every packet of it.
    pub timestamp: u32,
    pub marker: bool,
}

#[derive(Debug, Clone, Copy)]
struct Tone {
    code: u8,
    start: u32,
    /// Frames sent of this digit so far (tone, then end packets).
    sent: u32,
}

/// Key presses waiting to go out, and the one going out.
#[derive(Debug, Default)]
pub struct Keyer {
    queue: VecDeque<u8>,
    tone: Option<Tone>,
    /// Frames of audio before the next digit may start.
    wait: u32,
}

impl Keyer {
    pub fn new() -> Keyer {
        Keyer::default()
    }

    /// Queue `digits`, after `lead_frames` of audio (a far end that just
    /// answered may not listen yet). All or none are taken.
    pub fn key(&mut self, digits: &str, lead_frames: u32) -> Result<(), KeyerError> {
        let codes = digits
            .chars()
            .map(|c| event_code(c).ok_or(KeyerError::NotAKey(c)))
            .collect::<Result<Vec<u8>, _>>()?;
        if self.queue.len() + codes.len() > MAX_QUEUED {
            return Err(KeyerError::TooMany);
        }
        if self.is_idle() {
            self.wait = self.wait.max(lead_frames);
        }
        self.queue.extend(codes);
        Ok(())
    }

    /// Nothing to send.
    pub fn is_idle(&self) -> bool {
        self.tone.is_none() && self.queue.is_empty()
    }

    /// This frame, whose audio would carry RTP timestamp `media_ts` and
    /// last `frame_ts` units of the codec's clock: an event packet to send
    /// instead, or `None` for audio.
    pub fn next_frame(&mut self, media_ts: u32, frame_ts: u32) -> Option<EventPacket> {
        if self.tone.is_none() {
            if self.wait > 0 {
                self.wait -= 1;
                return None;
            }
            let code = self.queue.pop_front()?;
            self.tone = Some(Tone {
                code,
                start: media_ts,
                sent: 0,
            });
        }
        let tone = self.tone.as_mut()?;
        tone.sent += 1;
        let end = tone.sent > TONE_FRAMES;
        let duration = frame_ts * tone.sent.min(TONE_FRAMES);
        let packet = EventPacket {
            payload: [
                tone.code,
                (u8::from(end) << 7) | VOLUME,
                (duration >> 8) as u8,
                duration as u8,
            ],
            timestamp: tone.start,
            marker: tone.sent == 1,
        };
        if tone.sent == TONE_FRAMES + END_PACKETS {
            self.tone = None;
            self.wait = GAP_FRAMES;
        }
        Some(packet)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What goes out over `frames` frames from media timestamp 1000.
    fn run(k: &mut Keyer, frames: u32) -> Vec<Option<EventPacket>> {
        (0..frames)
            .map(|i| k.next_frame(1000 + i * FRAME, FRAME))
            .collect()
    }

    #[test]
    fn a_digit_is_five_growing_packets_then_three_ends_then_a_gap() {
        let mut k = Keyer::new();
        k.key("5#", 0).unwrap();
        let out = run(&mut k, 22);
        let first: Vec<EventPacket> = out[..8].iter().map(|p| p.unwrap()).collect();
        assert!(first
            .iter()
            .all(|p| p.timestamp == 1000 && p.payload[0] == 5));
        assert_eq!(
            first.iter().map(|p| p.marker).collect::<Vec<_>>(),
            [true, false, false, false, false, false, false, false]
        );
        let durations: Vec<u16> = first
            .iter()
            .map(|p| u16::from_be_bytes([p.payload[2], p.payload[3]]))
            .collect();
        assert_eq!(durations, [160, 320, 480, 640, 800, 800, 800, 800]);
        let ends: Vec<bool> = first.iter().map(|p| p.payload[1] & 0x80 != 0).collect();
        assert_eq!(ends, [false, false, false, false, false, true, true, true]);
        assert!(first.iter().all(|p| p.payload[1] & 0x3F == VOLUME));
        // 100 ms of audio, then `#` starts at its own timestamp.
        assert!(out[8..13].iter().all(Option::is_none));
        let hash = out[13].unwrap();
        assert_eq!(
            (hash.payload[0], hash.timestamp, hash.marker),
            (11, 1000 + 13 * FRAME, true)
        );
        assert!(out[21].is_none() && !k.is_idle() || k.is_idle());
    }

    #[test]
    fn the_lead_in_delays_the_first_digit_and_bad_keys_take_nothing() {
        let mut k = Keyer::new();
        assert_eq!(k.key("12x", 0), Err(KeyerError::NotAKey('x')));
        assert!(k.is_idle());
        k.key("1", 10).unwrap();
        let out = run(&mut k, 11);
        assert!(out[..10].iter().all(Option::is_none));
        assert_eq!(out[10].map(|p| p.payload[0]), Some(1));
        assert_eq!(
            k.key(&"1".repeat(MAX_QUEUED + 1), 0),
            Err(KeyerError::TooMany)
        );
    }

    #[test]
    fn what_it_sends_is_read_back_as_the_same_digits() {
        use crate::dtmf::rfc4733::EventReceiver;
        use std::time::{Duration, Instant};
        let mut k = Keyer::new();
        k.key("*6#0", 0).unwrap();
        let mut rx = EventReceiver::new(101);
        let mut presses = Vec::new();
        #[allow(clippy::disallowed_methods)] // the test's virtual clock starts here
        let t0 = Instant::now();
        for (i, p) in run(&mut k, 60).into_iter().enumerate() {
            if let Some(p) = p {
                let at = t0 + Duration::from_millis(20 * i as u64);
                rx.on_packet(
                    101,
                    7,
                    i as u16,
                    p.timestamp,
                    p.marker,
                    &p.payload,
                    at,
                    &mut presses,
                );
            }
        }
        let keys: String = presses.iter().map(|p| p.digit).collect();
        assert_eq!(keys, "*6#0");
    }
}
