//! Adaptive jitter buffer (sans-IO) for one member's incoming audio.
//!
//! Frames are kept by RTP timestamp in a fixed ring of [`CAPACITY`] 20 ms
//! slots, so reordered packets fall into place, duplicates are dropped and a
//! packet older than the playout point is counted late and dropped. Playout
//! starts once `target` frames are buffered. The first talkspurt starts at
//! the minimum, one frame, so a clean line pays no delay it does not need;
//! after that the target follows the RFC 3550 interarrival jitter (20 ms to
//! 200 ms) and is re-chosen at each talkspurt. A frame missing while later
//! ones exist is a loss; a frame missing with nothing newer is an underrun:
//! playout waits for it, which adds the frame of delay the line turned out
//! to need. After [`IDLE_FRAMES`] underruns the talkspurt is over and the
//! next packet prebuffers again.
//!
//! Missing frames are concealed by repeating the last frame while fading it
//! out over [`FADE_FRAMES`], then silence: never a hole of zeros mid-word.
//! Nothing here allocates after construction.

use std::time::Instant;

use super::codec::ROOM_FRAME as FRAME;

/// Ring size in 20 ms frames (640 ms).
pub const CAPACITY: usize = 32;
/// Most frames of delay the buffer aims for (200 ms).
pub const MAX_TARGET: u32 = 10;
/// Concealment fades the last frame out over this many frames.
pub const FADE_FRAMES: u32 = 3;
/// Consecutive underruns that end a talkspurt.
pub const IDLE_FRAMES: u32 = 5;
/// Pops over which the delay is watched: when more than the target was
/// buffered at every one of them, one quiet frame is dropped (1 s).
pub const SHRINK_WINDOW: u32 = 50;
/// A frame below this mean square (about -36 dBFS) may be dropped to
/// shorten the delay: a pause, not a word.
const QUIET_ENERGY: i64 = 500 * 500;

/// RTP clock units in a G.711 frame, the default.
const NARROW_TS: u32 = 160;

/// What [`JitterBuffer::pop`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Popped {
    /// A received frame.
    Audio,
    /// A missing frame, filled from the last one, fading.
    Concealed,
    /// Nothing to play (before the first packet, between talkspurts, or
    /// after the fade).
    Silence,
}

/// Counters for a member's line quality.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    /// Frames missing at playout while later ones had arrived.
    pub lost: u64,
    /// Packets that arrived after their playout time.
    pub late: u64,
    pub duplicates: u64,
    /// Frames dropped to bring the delay back to the target.
    pub trimmed: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    ts: u32,
    valid: bool,
    at: Option<Instant>,
    pcm: [i16; FRAME],
}

/// One member's jitter buffer.
pub struct JitterBuffer {
    /// RTP clock units per frame.
    frame_ts: u32,
    slots: Box<[Slot; CAPACITY]>,
    /// Timestamp of the next frame to play; `None` while prebuffering.
    play_ts: Option<u32>,
    /// Timestamp of the oldest and newest frames buffered since the last start.
    oldest: Option<u32>,
    newest: u32,
    target: u32,
    /// RFC 3550 interarrival jitter estimate, in samples, ×16.
    jitter16: u32,
    last_transit: Option<i64>,
    epoch: Option<Instant>,
    last: [i16; FRAME],
    misses: u32,
    /// When the frame the last [`JitterBuffer::pop`] played arrived.
    arrived: Option<Instant>,
    /// The fewest frames that were ahead at a pop in this window, and the
    /// pops so far in it.
    least_ahead: i32,
    window: u32,
    /// The delay was more than the line needs: drop the next quiet frame.
    shrink: bool,
    stats: JitterStats,
}

impl Default for JitterBuffer {
    fn default() -> Self {
        Self::new()
    }
}

/// `a - b` on the RTP timestamp circle.
fn ts_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

impl JitterBuffer {
    pub fn new() -> Self {
        Self::with_frame_ts(NARROW_TS)
    }

    /// A buffer for a codec whose 20 ms frames span `frame_ts` RTP clock
    /// units (160 at 8 kHz, 960 for Opus).
    pub fn with_frame_ts(frame_ts: u32) -> Self {
        JitterBuffer {
            frame_ts: frame_ts.max(1),
            slots: Box::new(
                [Slot {
                    ts: 0,
                    valid: false,
                    at: None,
                    pcm: [0; FRAME],
                }; CAPACITY],
            ),
            play_ts: None,
            oldest: None,
            newest: 0,
            target: 1,
            jitter16: 0,
            last_transit: None,
            epoch: None,
            last: [0; FRAME],
            misses: 0,
            arrived: None,
            least_ahead: i32::MAX,
            window: 0,
            shrink: false,
            stats: JitterStats::default(),
        }
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Interarrival jitter in milliseconds (RFC 3550 §6.4.1).
    pub fn jitter_ms(&self) -> f32 {
        self.jitter16 as f32 / 16.0 / (self.frame_ts as f32 / 20.0)
    }

    /// The current playout delay target in frames.
    pub fn target(&self) -> u32 {
        self.target
    }

    fn slot_of(&self, ts: u32) -> usize {
        (ts / self.frame_ts) as usize % CAPACITY
    }

    /// Store one 20 ms frame (decoded, [`FRAME`] samples) with its RTP
    /// timestamp, received at `now`.
    pub fn push(&mut self, ts: u32, pcm: &[i16; FRAME], now: Instant) {
        self.stats.received += 1;
        self.track_jitter(ts, now);
        if let Some(play) = self.play_ts {
            let ahead = ts_diff(ts, play);
            if ahead < 0 {
                self.stats.late += 1;
                return;
            }
            if ahead >= (CAPACITY as i32 - 1) * self.frame_ts as i32 {
                // A jump (new talkspurt after silence suppression, or a
                // restarted sender): start over from this packet.
                self.restart();
            }
        } else if let Some(oldest) = self.oldest {
            let span = ts_diff(ts, oldest);
            if span.unsigned_abs() >= (CAPACITY as u32 - 1) * self.frame_ts {
                self.restart();
            }
        }
        let slot = &mut self.slots[self.slot_of(ts)];
        if slot.valid && slot.ts == ts {
            self.stats.duplicates += 1;
            return;
        }
        *slot = Slot {
            ts,
            valid: true,
            at: Some(now),
            pcm: *pcm,
        };
        let fresh = self.oldest.is_none();
        if fresh || ts_diff(ts, self.newest) > 0 {
            self.newest = ts;
        }
        match self.oldest {
            Some(o) if ts_diff(ts, o) >= 0 => {}
            _ => self.oldest = Some(ts),
        }
    }

    /// Silence the frame of timestamp `ts`, if it is still waiting to play.
    pub fn quiet(&mut self, ts: u32) {
        let slot = &mut self.slots[self.slot_of(ts)];
        if slot.valid && slot.ts == ts {
            slot.pcm = [0; FRAME];
        }
    }

    fn restart(&mut self) {
        for s in self.slots.iter_mut() {
            s.valid = false;
        }
        self.play_ts = None;
        self.oldest = None;
        self.restart_watch();
    }

    fn restart_watch(&mut self) {
        self.least_ahead = i32::MAX;
        self.window = 0;
        self.shrink = false;
    }

    fn track_jitter(&mut self, ts: u32, now: Instant) {
        let epoch = *self.epoch.get_or_insert(now);
        // In RTP clock units: frame_ts per 20 ms.
        let arrival = (now.saturating_duration_since(epoch).as_micros() as i64)
            * i64::from(self.frame_ts)
            / 20_000;
        let transit = arrival - i64::from(ts);
        if let Some(prev) = self.last_transit {
            // Differences of wrapped timestamps: keep them small.
            let d = (transit - prev).rem_euclid(1 << 32);
            let d = if d >= 1 << 31 { (1 << 32) - d } else { d };
            let d = d.min(i64::from(self.frame_ts) * 50) as u32; // a second of jump is a restart, not jitter
                                                                 // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter16 = self.jitter16 + d - (self.jitter16 + 8) / 16;
        }
        self.last_transit = Some(transit);
    }

    /// When the frame the last [`pop`](Self::pop) returned as
    /// [`Popped::Audio`] was received.
    pub fn arrived(&self) -> Option<Instant> {
        self.arrived
    }

    /// The frame to play now, into `out`.
    pub fn pop(&mut self, out: &mut [i16; FRAME]) -> Popped {
        self.arrived = None;
        let play = match self.play_ts {
            Some(p) => p,
            None => {
                let Some(oldest) = self.oldest else {
                    return self.conceal(out);
                };
                let buffered = ts_diff(self.newest, oldest) / self.frame_ts as i32 + 1;
                if buffered < self.target as i32 {
                    return self.conceal(out);
                }
                self.play_ts = Some(oldest);
                oldest
            }
        };
        // More buffered than the target allows: drop the oldest frame.
        // Or, when more than the target was buffered for a whole window,
        // drop the next frame that is quiet.
        let ahead = ts_diff(self.newest, play) / self.frame_ts as i32 + 1;
        self.watch_delay(ahead);
        let play = if ahead > (self.target + 2) as i32 || self.quiet_to_drop(play) {
            self.shrink = false;
            let s = &mut self.slots[self.slot_of(play)];
            if s.valid && s.ts == play {
                s.valid = false;
            }
            self.stats.trimmed += 1;
            play.wrapping_add(self.frame_ts)
        } else {
            play
        };
        let slot = &mut self.slots[self.slot_of(play)];
        if slot.valid && slot.ts == play {
            slot.valid = false;
            *out = slot.pcm;
            self.last = slot.pcm;
            self.arrived = slot.at;
            self.misses = 0;
            self.play_ts = Some(play.wrapping_add(self.frame_ts));
            return Popped::Audio;
        }
        if ts_diff(self.newest, play) > 0 {
            // Later frames are here: this one is lost.
            self.stats.lost += 1;
            self.play_ts = Some(play.wrapping_add(self.frame_ts));
        } else if self.misses + 1 >= IDLE_FRAMES {
            // The talkspurt ended; prebuffer the next one, with a target
            // fitted to the jitter seen so far.
            self.play_ts = None;
            self.oldest = None;
            self.target = self.fitted_target();
            self.restart_watch();
        } else {
            // Underrun: wait for the late frame rather than skip it.
            self.play_ts = Some(play);
        }
        self.conceal(out)
    }

    /// Keep the fewest frames seen ahead over each window; when even that
    /// was more than the target, the delay can shrink.
    fn watch_delay(&mut self, ahead: i32) {
        self.least_ahead = self.least_ahead.min(ahead);
        self.window += 1;
        if self.window >= SHRINK_WINDOW {
            self.shrink |= self.least_ahead > self.target as i32;
            self.least_ahead = i32::MAX;
            self.window = 0;
        }
    }

    /// Whether the frame at `play` is to be dropped to shorten the delay:
    /// it is here, quiet, and the one after it is here too.
    fn quiet_to_drop(&self, play: u32) -> bool {
        if !self.shrink {
            return false;
        }
        let next = play.wrapping_add(self.frame_ts);
        let here = |ts: u32| {
            let s = &self.slots[self.slot_of(ts)];
            s.valid && s.ts == ts
        };
        if !here(play) || !here(next) {
            return false;
        }
        let s = &self.slots[self.slot_of(play)];
        let energy: i64 = s.pcm.iter().map(|&v| i64::from(v) * i64::from(v)).sum();
        energy / (FRAME as i64) < QUIET_ENERGY
    }

    /// Frames of delay for the measured jitter: about three times the
    /// jitter plus one frame, 1 to [`MAX_TARGET`].
    fn fitted_target(&self) -> u32 {
        let jitter = self.jitter16 / 16;
        (1 + (3 * jitter).div_ceil(self.frame_ts)).clamp(1, MAX_TARGET)
    }

    fn conceal(&mut self, out: &mut [i16; FRAME]) -> Popped {
        self.misses += 1;
        if self.misses > FADE_FRAMES {
            *out = [0; FRAME];
            return Popped::Silence;
        }
        // Ramp linearly from this frame's start gain to its end gain so the
        // fade has no steps.
        let from = (FADE_FRAMES + 1 - self.misses) as f32 / FADE_FRAMES as f32;
        let to = (FADE_FRAMES - self.misses) as f32 / FADE_FRAMES as f32;
        let mut any = false;
        for (i, (o, &s)) in out.iter_mut().zip(self.last.iter()).enumerate() {
            let g = from + (to - from) * (i as f32 / FRAME as f32);
            *o = (f32::from(s) * g) as i16;
            any |= *o != 0;
        }
        if self.misses == FADE_FRAMES {
            self.last = [0; FRAME];
        }
        if any {
            Popped::Concealed
        } else {
            Popped::Silence
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;
    use std::time::Duration;

    fn frame(v: i16) -> [i16; FRAME] {
        [v; FRAME]
    }

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Pop `n` frames, returning each frame's first sample and kind.
    fn pops(jb: &mut JitterBuffer, n: usize) -> Vec<(i16, Popped)> {
        let mut out = [0; FRAME];
        (0..n)
            .map(|_| {
                let k = jb.pop(&mut out);
                (out[0], k)
            })
            .collect()
    }

    /// Real time: at tick `k` the packets in `arrivals[k]` arrive (as
    /// timestamp index, value), then one frame is played. The values heard.
    fn stream(
        jb: &mut JitterBuffer,
        t0: Instant,
        base: u32,
        arrivals: &[&[(u32, i16)]],
    ) -> Vec<(i16, Popped)> {
        let mut heard = Vec::new();
        for (k, packets) in arrivals.iter().enumerate() {
            for &(i, v) in packets.iter() {
                jb.push(base.wrapping_add(i * 160), &frame(v), at(t0, k as u64 * 20));
            }
            heard.extend(pops(jb, 1));
        }
        heard
    }

    fn audio(heard: &[(i16, Popped)]) -> Vec<i16> {
        heard
            .iter()
            .filter(|(_, k)| *k == Popped::Audio)
            .map(|(v, _)| *v)
            .collect()
    }

    #[test]
    fn in_order_frames_play_in_order_after_the_prebuffer() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let base = 4_294_967_000u32; // wraps during the test
        let heard = stream(
            &mut jb,
            t0,
            base,
            &[
                &[(0, 1)],
                &[(1, 2)],
                &[(2, 3)],
                &[(3, 4)],
                &[(4, 5)],
                &[],
                &[],
            ],
        );
        assert_eq!(
            heard[0].1,
            Popped::Audio,
            "playout starts at the first frame"
        );
        assert_eq!(audio(&heard), [1, 2, 3, 4, 5]);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn reordered_and_duplicate_packets() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let heard = stream(
            &mut jb,
            t0,
            0,
            &[
                &[(0, 1), (1, 2)],
                &[(3, 4)],
                &[(2, 3), (2, 3)],
                &[(4, 5)],
                &[],
                &[],
            ],
        );
        assert_eq!(audio(&heard), [1, 2, 3, 4, 5]);
        assert_eq!(jb.stats().duplicates, 1);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_lost_frame_is_concealed_not_a_hole() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let heard = stream(
            &mut jb,
            t0,
            0,
            &[
                &[(0, 1000)],
                &[(1, 1000)],
                &[(3, 1000)],
                &[(4, 1000)],
                &[],
                &[],
            ],
        );
        let last_audio = heard
            .iter()
            .rposition(|(_, k)| *k == Popped::Audio)
            .unwrap();
        let concealed: Vec<_> = heard[..last_audio]
            .iter()
            .filter(|(_, k)| *k == Popped::Concealed)
            .collect();
        assert_eq!(concealed.len(), 1, "{heard:?}");
        assert!(
            concealed[0].0 > 500,
            "the missing frame repeats the last one"
        );
        assert_eq!(audio(&heard), [1000, 1000, 1000, 1000]);
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn concealment_fades_to_silence_without_steps() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(0, &frame(8000), t0);
        jb.push(160, &frame(8000), at(t0, 20));
        let mut out = [0; FRAME];
        let mut samples = Vec::new();
        for _ in 0..2 + FADE_FRAMES as usize + 2 {
            jb.pop(&mut out);
            samples.extend_from_slice(&out);
        }
        let biggest_step = samples
            .windows(2)
            .map(|w| (i32::from(w[0]) - i32::from(w[1])).abs())
            .max()
            .unwrap();
        assert!(biggest_step < 100, "fade steps by {biggest_step}");
        assert!(samples[samples.len() - FRAME..].iter().all(|&s| s == 0));
    }

    #[test]
    fn late_packets_are_dropped_and_counted() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let heard = stream(
            &mut jb,
            t0,
            0,
            &[
                &[(0, 1)],
                &[(1, 2)],
                &[(3, 4)],
                &[(4, 5)],
                &[],
                &[(2, 3)],
                &[],
            ],
        );
        assert_eq!(audio(&heard), [1, 2, 4, 5], "frame 2 came after its turn");
        assert_eq!((jb.stats().late, jb.stats().lost), (1, 1));
    }

    #[test]
    fn the_target_grows_with_jitter_and_stays_bounded() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        // Arrivals alternate 0 and 60 ms late: heavy jitter.
        for i in 0..200u64 {
            let late = if i % 2 == 0 { 0 } else { 60 };
            jb.push(i as u32 * 160, &frame(1), at(t0, i * 20 + late));
            let mut out = [0; FRAME];
            jb.pop(&mut out);
        }
        // End the talkspurt so the target is re-fitted.
        pops(&mut jb, IDLE_FRAMES as usize + 1);
        assert!(jb.jitter_ms() > 15.0, "jitter {}", jb.jitter_ms());
        assert!((3..=MAX_TARGET).contains(&jb.target()), "{}", jb.target());
    }

    #[test]
    fn excess_delay_is_trimmed() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        // A burst of 12 frames at once (a stalled network catching up).
        let burst: Vec<(u32, i16)> = (0..12).map(|i| (i, i as i16)).collect();
        let heard = stream(&mut jb, t0, 0, &[&burst, &[], &[], &[], &[], &[]]);
        // One frame dropped per tick while more than target + 2 are ahead.
        assert_eq!(jb.stats().trimmed, 5, "{heard:?}");
        assert_eq!(audio(&heard), [1, 3, 5, 7, 9, 10]);
    }

    /// Frames arrive one per tick but the first two came together, so one
    /// frame more than needed stays buffered; `v` is every frame's value.
    fn one_frame_too_many(v: i16, ticks: u32) -> JitterBuffer {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        jb.push(0, &frame(v), t0);
        let mut out = [0; FRAME];
        for k in 1..ticks {
            jb.push(k * 160, &frame(v), at(t0, u64::from(k) * 20));
            jb.pop(&mut out);
        }
        jb
    }

    #[test]
    fn a_needless_frame_of_delay_goes_in_a_pause_not_in_a_word() {
        // Quiet frames: after a window the extra frame is dropped.
        let jb = one_frame_too_many(100, SHRINK_WINDOW + 10);
        assert_eq!(jb.stats().trimmed, 1);
        // After a pop the next frame to play is not here yet: nothing waits.
        assert_eq!(
            ts_diff(jb.newest, jb.play_ts.unwrap()),
            -160,
            "no frame waits"
        );
        // Speech: nothing is dropped however long it lasts.
        let jb = one_frame_too_many(8000, 5 * SHRINK_WINDOW);
        assert_eq!(jb.stats().trimmed, 0);
        assert_eq!(
            ts_diff(jb.newest, jb.play_ts.unwrap()),
            0,
            "one frame waits"
        );
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_timestamp_jump_restarts_playout() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new();
        let first = stream(&mut jb, t0, 0, &[&[(0, 1)], &[(1, 2)], &[], &[]]);
        assert_eq!(audio(&first), [1, 2]);
        let later = stream(
            &mut jb,
            t0,
            1_000_000 * 160,
            &[&[(0, 7)], &[(1, 8)], &[], &[]],
        );
        assert_eq!(audio(&later), [7, 8]);
    }
}
