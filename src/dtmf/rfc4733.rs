//! Sans-IO receiver for RFC 4733 telephone-events (DTMF named events 0-15).
//!
//! The receiver never reads a clock: every entry point takes `now`, and the
//! caller is expected to call [`EventReceiver::on_timeout`] no later than
//! [`EventReceiver::next_deadline`].
//!
//! A key press is identified by `(SSRC, RTP timestamp, event code)`. The
//! marker bit and sequence numbers are deliberately not used for identity,
//! since real senders set the marker on every packet, repeat the first packet
//! with distinct sequence numbers, repeat the end packet with one sequence
//! number, or interleave event and audio sequence numbers.

use std::time::{Duration, Instant};

/// How long an unended event may go without any packet before it is reported
/// with `ended == false`.
///
/// Senders refresh an ongoing event every packetization interval (10-50 ms in
/// practice, 20 ms in most captures), so 300 ms is six or more missed updates
/// plus jitter: far beyond normal loss, yet short enough that a digit whose
/// end packets were all lost is still acted upon promptly.
pub const END_TIMEOUT: Duration = Duration::from_millis(300);

/// How many already reported presses are remembered to suppress repeated or
/// late retransmitted packets of them.
const REMEMBERED: usize = 16;

/// One key press reported by the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Press {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// RTP timestamp of the event (the start of the press).
    pub timestamp: u32,
    /// Duration in timestamp units, as last reported by the sender.
    pub duration: u16,
    /// `false` when reported by timeout or displacement without an end packet.
    pub ended: bool,
}

/// Maps an RFC 4733 DTMF event code (0-15) to its digit.
pub fn event_digit(code: u8) -> Option<char> {
    match code {
        0..=9 => Some(char::from(b'0' + code)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + (code - 12))),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    ssrc: u32,
    timestamp: u32,
    code: u8,
}

#[derive(Debug, Clone, Copy)]
struct Open {
    key: Key,
    digit: char,
    duration: u16,
    last_seen: Instant,
}

/// Receiver state for one RTP session's telephone-events.
#[derive(Debug)]
pub struct EventReceiver {
    payload_type: u8,
    open: Option<Open>,
    reported: [Option<Key>; REMEMBERED],
    next_slot: usize,
}

impl EventReceiver {
    /// Creates a receiver for the negotiated telephone-event payload type.
    pub fn new(payload_type: u8) -> Self {
        Self {
            payload_type,
            open: None,
            reported: [None; REMEMBERED],
            next_slot: 0,
        }
    }

    /// The payload type this receiver listens to.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Feeds one RTP packet's fields. Packets of other payload types, short
    /// payloads and non-DTMF events are ignored.
    #[allow(clippy::too_many_arguments)]
    pub fn on_packet(
        &mut self,
        pt: u8,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
        now: Instant,
        out: &mut Vec<Press>,
    ) {
        // Sequence number and marker carry no reliable information across
        // real senders; identity is (ssrc, timestamp, event).
        let _ = (seq, marker);
        if pt != self.payload_type {
            return;
        }
        let [code, flags, dur_hi, dur_lo, ..] = *payload else {
            return;
        };
        let Some(digit) = event_digit(code) else {
            return;
        };
        let end = flags & 0x80 != 0;
        let duration = u16::from_be_bytes([dur_hi, dur_lo]);
        let complete = Press {
            digit,
            timestamp,
            duration,
            ended: true,
        };
        let key = Key {
            ssrc,
            timestamp,
            code,
        };

        if self.was_reported(key) {
            return;
        }

        if let Some(open) = self.open.as_mut() {
            if open.key == key {
                open.duration = open.duration.max(duration);
                open.last_seen = now;
                if end {
                    let press = Press {
                        digit,
                        timestamp,
                        duration,
                        ended: true,
                    };
                    self.open = None;
                    self.report(key, press, out);
                }
                return;
            }
            if open.key.ssrc == ssrc && is_older(timestamp, open.key.timestamp) {
                // A stray packet of an earlier press that was never seen:
                // its end is still a complete press, anything else is stale.
                if end {
                    self.report(key, complete, out);
                }
                return;
            }
            self.flush_open(out);
        }

        if end {
            self.report(key, complete, out);
        } else {
            self.open = Some(Open {
                key,
                digit,
                duration,
                last_seen: now,
            });
        }
    }

    /// Reports the open press if no packet for it arrived for [`END_TIMEOUT`].
    pub fn on_timeout(&mut self, now: Instant, out: &mut Vec<Press>) {
        if let Some(deadline) = self.next_deadline() {
            if now >= deadline {
                self.flush_open(out);
            }
        }
    }

    /// When [`EventReceiver::on_timeout`] should be called next, if at all.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.map(|open| {
            open.last_seen
                .checked_add(END_TIMEOUT)
                .unwrap_or(open.last_seen)
        })
    }

    fn flush_open(&mut self, out: &mut Vec<Press>) {
        if let Some(open) = self.open.take() {
            let press = Press {
                digit: open.digit,
                timestamp: open.key.timestamp,
                duration: open.duration,
                ended: false,
            };
            self.report(open.key, press, out);
        }
    }

    fn report(&mut self, key: Key, press: Press, out: &mut Vec<Press>) {
        self.reported[self.next_slot] = Some(key);
        self.next_slot = (self.next_slot + 1) % REMEMBERED;
        out.push(press);
    }

    fn was_reported(&self, key: Key) -> bool {
        self.reported.contains(&Some(key))
    }
}

/// RTP timestamp comparison modulo 2^32: is `a` before `b`?
fn is_older(a: u32, b: u32) -> bool {
    a != b && b.wrapping_sub(a) < 0x8000_0000
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
#[path = "rfc4733_tests.rs"]
mod tests;
