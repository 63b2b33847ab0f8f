//! Extended RTP sequence numbers (RFC 3550 A.1).

/// Largest forward jump still taken as in-order (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward distance still taken as reordering (RFC 3550 A.1).
const MAX_MISORDER: u16 = 100;
const SEQ_MOD: u64 = 1 << 16;

/// Extends 16-bit sequence numbers to 64 bits across wraparound, in the
/// manner of RFC 3550 A.1.
///
/// Extended numbers start at `65536 + first_seq`, so that a packet
/// reordered from before an early wrap still maps below the first one.
/// A jump of more than `MAX_DROPOUT` is believed only once a second
/// packet continues it (the sender restarted); the stream then moves to a
/// fresh cycle so extended numbers keep increasing. Until then, the jumped
/// packet gets its forward interpretation without changing state.
#[derive(Debug, Clone, Default)]
pub struct SeqTracker {
    /// Highest seq seen, plus the cycle count (a multiple of 65536).
    state: Option<(u16, u64)>,
    /// Sequence number that would confirm a large jump.
    bad_seq: Option<u16>,
}

impl SeqTracker {
    /// A tracker that has not seen any packet yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest extended sequence number seen so far.
    pub fn max_extended(&self) -> Option<u64> {
        self.state.map(|(max, cycles)| cycles + u64::from(max))
    }

    /// Record `seq` and return its extended sequence number.
    pub fn update(&mut self, seq: u16) -> u64 {
        let Some((max_seq, cycles)) = self.state else {
            self.state = Some((seq, SEQ_MOD));
            return SEQ_MOD + u64::from(seq);
        };
        let udelta = seq.wrapping_sub(max_seq);
        if udelta < MAX_DROPOUT {
            let cycles = if seq < max_seq {
                cycles + SEQ_MOD
            } else {
                cycles
            };
            self.state = Some((seq, cycles));
            self.bad_seq = None;
            cycles + u64::from(seq)
        } else if udelta <= u16::MAX - MAX_MISORDER {
            if self.bad_seq == Some(seq) {
                let cycles = cycles + SEQ_MOD;
                self.state = Some((seq, cycles));
                self.bad_seq = None;
                cycles + u64::from(seq)
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                let wrap = if seq < max_seq { SEQ_MOD } else { 0 };
                cycles + wrap + u64::from(seq)
            }
        } else {
            // Duplicate or reordered packet from behind `max_seq`.
            let back = if seq > max_seq { SEQ_MOD } else { 0 };
            cycles - back + u64::from(seq)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_tracker_reorder_and_restart() {
        let mut tr = SeqTracker::new();
        let base = tr.update(65530);
        assert_eq!(tr.update(65534), base + 4);
        assert_eq!(tr.update(65533), base + 3, "reordered");
        assert_eq!(tr.update(2), base + 8, "wrapped");
        assert_eq!(tr.update(65535), base + 5, "late, from before the wrap");
        assert_eq!(tr.max_extended(), Some(base + 8));
        // A lone far jump does not move the stream; a confirmed one does.
        assert_eq!(tr.update(30000), base + 6 + 30000);
        assert_eq!(tr.update(3), base + 9);
        tr.update(40000);
        let restarted = tr.update(40001);
        assert!(restarted > base + 9);
        assert_eq!(tr.update(40002), restarted + 1);
        // Reordering right after the first packet across a wrap: no underflow.
        let mut tr = SeqTracker::new();
        let first = tr.update(0);
        assert_eq!(tr.update(65535), first - 1);
    }
}
