//! Sans-IO in-band DTMF detector (ITU-T Q.23 frequencies, Q.24-style limits).
//!
//! The signal is cut into Hann-windowed blocks of [`BLOCK`] samples (8 ms);
//! the window keeps a strong tone from leaking into the other group's filters,
//! so twist is measured to a fraction of a dB. For every block eight Goertzel
//! filters measure the DTMF tones. A block is a *hit* for a digit when:
//! - the strongest low-group and high-group tones are both above the level floor;
//! - the twist (high minus low) lies within the accepted window;
//! - the two tones carry at least [`MIN_BLOCK_SHARE`] of the block's total
//!   energy.
//!
//! Consecutive hits belong to one press only if the blocks are *continuous*:
//! the same pair, both tone levels within [`MAX_STEP_DB`] of the previous
//! block, and a phase advance between the blocks that puts each tone within
//! [`FREQ_TOL`] of its nominal frequency (this is what separates ±1.5 % from
//! ±3.5 %; an 8 ms block keeps the phase unambiguous up to ±62.5 Hz).
//!
//! A key press is confirmed once the last [`CONFIRM_BLOCKS`] continuous hits
//! (32 ms), which 40 ms tones always give and 20 ms tones never can, pass
//! four checks over the whole window:
//! - the two tones carry at least [`MIN_TONE_SHARE`] of its energy;
//! - neither tone's level differs by more than [`MAX_DRIFT_DB`] between the
//!   window's first and second half (a key holds its level; a voice's
//!   harmonics swell and fade);
//! - over the window's 256 samples, Hann-windowed (31.25 Hz bins), probes
//!   on every bin from 94 Hz to 3.9 kHz, save those within two bins plus
//!   [`FREQ_TOL`] of either tone, all stay [`LONG_PROBE_MARGIN_DB`] below the
//!   weaker tone. A voice whose pitch puts two harmonics on a DTMF pair has
//!   more harmonics, between and around them, that an 8 ms block cannot
//!   resolve from the tones; white noise at 5 dB SNR stays below the margin;
//! - neither tone's phase advance per block changes across the window by
//!   more than [`MAX_GLIDE_RAD`] plus [`GLIDE_NOISE_SIGMAS`] times the spread
//!   that the noise measured by those probes gives it: a key's frequency
//!   holds, a glide's (a sung or swept note) moves.
//!
//! The block checks are loose enough for noisy tones and the window checks
//! strict enough for speech and music; the window checks run only on a run of
//! hits about to be confirmed, so their cost (about 30 000 multiply-adds) is
//! paid rarely. A digit is released after [`RELEASE_BLOCKS`] blocks without
//! it; the same digit is not reported again before it has been released.

use std::f32::consts::PI;

/// Sample rate in Hz.
pub const SAMPLE_RATE: u32 = 8000;
/// Analysis block length in samples.
pub const BLOCK: usize = 64;
/// Consecutive hit blocks that count as a key's tone for concealment (16 ms).
pub const TONE_RUN: u32 = 2;
/// Consecutive hit blocks needed to confirm a key press.
pub const CONFIRM_BLOCKS: u32 = 4;
/// Consecutive non-hit blocks after which a pressed key counts as released.
pub const RELEASE_BLOCKS: u32 = 3;
/// Relative frequency deviation accepted per tone.
pub const FREQ_TOL: f32 = 0.025;
/// Minimum level per tone, dBm0.
pub const MIN_LEVEL_DBM0: f32 = -36.0;
/// Most negative accepted twist (high group weaker), dB.
pub const MAX_NORMAL_TWIST_DB: f32 = 8.0;
/// Most positive accepted twist (high group stronger), dB.
pub const MAX_REVERSE_TWIST_DB: f32 = 4.0;
/// Measurement allowance added to both twist limits, dB.
pub const TWIST_MARGIN_DB: f32 = 1.5;
const TWIST_MIN_DB: f32 = -(MAX_NORMAL_TWIST_DB + TWIST_MARGIN_DB);
const TWIST_MAX_DB: f32 = MAX_REVERSE_TWIST_DB + TWIST_MARGIN_DB;
/// Largest level change of either tone between consecutive blocks of one press, dB.
pub const MAX_STEP_DB: f32 = 5.0;
/// Largest level change of either tone between the first and the second
/// half of the confirming blocks, dB.
pub const MAX_DRIFT_DB: f32 = 1.5;
/// Minimum share of a block's energy that the two tones must carry.
pub const MIN_BLOCK_SHARE: f32 = 0.6;
/// Minimum share of the energy of a whole press (the confirming blocks
/// together) that the two tones must carry.
pub const MIN_TONE_SHARE: f32 = 0.65;
/// Samples analysed at once when a press is about to be confirmed: the
/// confirming blocks.
const LONG: usize = CONFIRM_BLOCKS as usize * BLOCK;
/// Spacing of the probes over the confirming blocks: one bin of [`LONG`], Hz.
const LONG_STEP_HZ: f32 = SAMPLE_RATE as f32 / LONG as f32;
const N_LONG_PROBES: usize = 124;
/// How far every probe over the confirming blocks must stay below the
/// weaker tone, dB: a voice's other harmonics, which the short blocks
/// cannot tell from the tones, show here.
pub const LONG_PROBE_MARGIN_DB: f32 = 12.0;
/// Largest change of either tone's phase advance per block across the
/// confirming blocks of a clean press, radians (a glide's frequency moves).
pub const MAX_GLIDE_RAD: f32 = 0.1;
/// Allowance per unit of the expected spread that noise gives it.
pub const GLIDE_NOISE_SIGMAS: f32 = 4.0;

const LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
const HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];
/// Power (mean square, full scale = 1.0) of a 0 dBm0 sine: peak at -3.14 dBFS.
const P_0DBM0: f32 = 0.485_288_5 / 2.0;
const SCALE: f32 = 1.0 / 32768.0;
/// Power of one tone at the level floor, [`MIN_LEVEL_DBM0`].
const P_MIN: f32 = P_0DBM0 * 0.000_251_188_64; // 10^(-36/10)

/// One confirmed key press.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub digit: char,
    /// Sample index (since creation or the last reset) where the tone started.
    pub at_sample: u64,
    /// Low-group tone level, dBm0.
    pub low_dbm0: f32,
    /// High-group tone level, dBm0.
    pub high_dbm0: f32,
    /// High minus low, dB.
    pub twist_db: f32,
}

#[derive(Clone, Copy)]
struct Tones {
    coef: [f32; 8],
    cos: [f32; 8],
    sin: [f32; 8],
    rot: [(f32, f32); 8],
    max_phase: [f32; 8],
    window: [f32; BLOCK],
    tone_norm: f32,
    energy_norm: f32,
    long_window: [f32; LONG],
    long_norm: f32,
    long_coef: [f32; N_LONG_PROBES],
    long_hz: [f32; N_LONG_PROBES],
}

impl Tones {
    fn new() -> Self {
        let mut t = Tones {
            coef: [0.0; 8],
            cos: [0.0; 8],
            sin: [0.0; 8],
            rot: [(0.0, 0.0); 8],
            max_phase: [0.0; 8],
            window: [0.0; BLOCK],
            tone_norm: 0.0,
            energy_norm: 0.0,
            long_window: [0.0; LONG],
            long_norm: 0.0,
            long_coef: [0.0; N_LONG_PROBES],
            long_hz: [0.0; N_LONG_PROBES],
        };
        let mut sum = 0.0f32;
        for (n, w) in t.long_window.iter_mut().enumerate() {
            let h = 0.5 - 0.5 * (2.0 * PI * (n as f32 + 0.5) / LONG as f32).cos();
            sum += h;
            *w = h * SCALE;
        }
        t.long_norm = 2.0 / (sum * sum);
        for (i, (c, hz)) in t.long_coef.iter_mut().zip(&mut t.long_hz).enumerate() {
            *hz = LONG_STEP_HZ * (i + 3) as f32;
            *c = 2.0 * (2.0 * PI * *hz / SAMPLE_RATE as f32).cos();
        }
        let (mut sum, mut sum_sq) = (0.0f32, 0.0f32);
        for (n, w) in t.window.iter_mut().enumerate() {
            let h = 0.5 - 0.5 * (2.0 * PI * (n as f32 + 0.5) / BLOCK as f32).cos();
            sum += h;
            sum_sq += h * h;
            *w = h * SCALE;
        }
        t.tone_norm = 2.0 / (sum * sum);
        t.energy_norm = 1.0 / sum_sq;
        for (k, &f) in LOW.iter().chain(HIGH.iter()).enumerate() {
            let w = 2.0 * PI * f / SAMPLE_RATE as f32;
            t.coef[k] = 2.0 * w.cos();
            t.cos[k] = w.cos();
            t.sin[k] = w.sin();
            let adv = (w as f64 * BLOCK as f64) % (2.0 * std::f64::consts::PI);
            t.rot[k] = (adv.cos() as f32, -adv.sin() as f32);
            t.max_phase[k] = 2.0 * PI * FREQ_TOL * f * BLOCK as f32 / SAMPLE_RATE as f32;
        }
        t
    }
}

/// Powers measured in one block (mean square, full scale = 1.0).
#[derive(Clone, Copy, Default)]
struct BlockPower {
    low: f32,
    high: f32,
    total: f32,
    /// Phase advance of each tone since the previous block, beyond the
    /// nominal frequency's, radians.
    advance: [f32; 2],
}

/// Sans-IO DTMF detector; time is counted in samples.
pub struct InbandDetector {
    tones: Tones,
    /// The block so far, windowed; the filters run once it is full.
    block: [f32; BLOCK],
    s1: [f32; 8],
    s2: [f32; 8],
    energy: f32,
    filled: usize,
    block_start: u64,
    /// The last [`CONFIRM_BLOCKS`] blocks, unwindowed, block `n` at
    /// `(n % CONFIRM_BLOCKS) * BLOCK`.
    history: [i16; LONG],
    prev_pair: Option<(usize, usize)>,
    prev_z: [(f32, f32); 2],
    prev_lv: (f32, f32),
    run_pair: Option<(usize, usize)>,
    run_len: u32,
    run_start: u64,
    run_best: BlockPower,
    /// The powers of the last [`CONFIRM_BLOCKS`] blocks, kept like `history`.
    recent: [BlockPower; CONFIRM_BLOCKS as usize],
    pressed: Option<(usize, usize)>,
    misses: u32,
    /// Blocks that held a key's tone pair, so far.
    hits: u64,
}

impl Default for InbandDetector {
    fn default() -> Self {
        Self::new()
    }
}

fn to_dbm0(p: f32) -> f32 {
    10.0 * (p.max(1e-20) / P_0DBM0).log10()
}

fn argmax4(p: &[f32]) -> usize {
    let mut best = 0;
    for i in 1..4 {
        if p[i] > p[best] {
            best = i;
        }
    }
    best
}

impl InbandDetector {
    /// A detector for 8 kHz input.
    pub fn new() -> Self {
        InbandDetector {
            tones: Tones::new(),
            block: [0.0; BLOCK],
            s1: [0.0; 8],
            s2: [0.0; 8],
            energy: 0.0,
            filled: 0,
            block_start: 0,
            history: [0; LONG],
            prev_pair: None,
            prev_z: [(0.0, 0.0); 2],
            prev_lv: (0.0, 0.0),
            run_pair: None,
            run_len: 0,
            run_start: 0,
            run_best: BlockPower::default(),
            recent: [BlockPower::default(); CONFIRM_BLOCKS as usize],
            pressed: None,
            misses: 0,
            hits: 0,
        }
    }

    /// Blocks so far that continued a run of [`TONE_RUN`] or more holding
    /// one key's two tones (confirmed or not): what a call conceals from
    /// the room, so nobody hears the beeps.
    pub fn hit_blocks(&self) -> u64 {
        self.hits
    }

    /// Forget all state, including the sample counter.
    pub fn reset(&mut self) {
        *self = InbandDetector {
            tones: self.tones,
            ..InbandDetector::new()
        };
    }

    /// Feed samples of any chunk size; each key press is pushed to `out`
    /// once, when it is confirmed.
    pub fn feed(&mut self, samples: &[i16], out: &mut Vec<Detection>) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = rest.len().min(BLOCK - self.filled);
            let (chunk, tail) = rest.split_at(take);
            rest = tail;
            let at = self.history_at() + self.filled;
            self.history[at..at + take].copy_from_slice(chunk);
            let win = &self.tones.window[self.filled..self.filled + take];
            let dst = &mut self.block[self.filled..self.filled + take];
            let mut energy = self.energy;
            for ((d, &x), &w) in dst.iter_mut().zip(chunk).zip(win) {
                let v = x as f32 * w;
                energy += v * v;
                *d = v;
            }
            self.energy = energy;
            self.filled += take;
            if self.filled == BLOCK {
                self.end_block(out);
            }
        }
    }

    /// Where the current block starts in `history`.
    fn history_at(&self) -> usize {
        (self.block_start / BLOCK as u64 % CONFIRM_BLOCKS as u64) as usize * BLOCK
    }

    /// Over the last [`LONG`] samples (the current block last), probes at
    /// least two bins plus the frequency tolerance away from both tones:
    /// `None` if one comes within [`LONG_PROBE_MARGIN_DB`] of `floor`, else
    /// the noise power per window bin that they show.
    fn long_probes_clear(&self, fl: f32, fh: f32, floor: f32) -> Option<f32> {
        let t = &self.tones;
        let limit = floor * 10f32.powf(-LONG_PROBE_MARGIN_DB / 10.0) / t.long_norm;
        let (gl, gh) = (
            2.0 * LONG_STEP_HZ + FREQ_TOL * fl,
            2.0 * LONG_STEP_HZ + FREQ_TOL * fh,
        );
        // Oldest block first; all probes at once, which the compiler
        // vectorises.
        let (newer, older) = self.history.split_at((self.history_at() + BLOCK) % LONG);
        let mut s1 = [0.0f32; N_LONG_PROBES];
        let mut s2 = [0.0f32; N_LONG_PROBES];
        for (&x, &w) in older.iter().chain(newer).zip(&t.long_window) {
            let v = x as f32 * w;
            for ((a, b), &c) in s1.iter_mut().zip(&mut s2).zip(&t.long_coef) {
                let s0 = v + c * *a - *b;
                *b = *a;
                *a = s0;
            }
        }
        let mut far = [0.0f32; N_LONG_PROBES];
        let mut n = 0;
        for (((&a, &b), &c), &hz) in s1.iter().zip(&s2).zip(&t.long_coef).zip(&t.long_hz) {
            if (hz - fl).abs() >= gl && (hz - fh).abs() >= gh {
                let p = a * a + b * b - c * a * b;
                if p > limit {
                    return None;
                }
                far[n] = p;
                n += 1;
            }
        }
        // The lower quartile, which the odd harmonic or alias below the
        // margin leaves alone, is -ln(3/4) of the mean for noise.
        let (_, quartile, _) = far[..n].select_nth_unstable_by(n / 4, f32::total_cmp);
        Some(*quartile * t.long_norm / 0.287_682)
    }

    /// Run the eight filters over the full block.
    fn filter_block(&mut self) {
        let coef = self.tones.coef;
        let mut s1 = [0.0f32; 8];
        let mut s2 = [0.0f32; 8];
        for &v in &self.block {
            for k in 0..8 {
                let s0 = v + coef[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s0;
            }
        }
        self.s1 = s1;
        self.s2 = s2;
    }

    fn end_block(&mut self, out: &mut Vec<Detection>) {
        let mean_sq = self.energy * self.tones.energy_norm;
        // A windowed tone's measured power is at most 3 times the block's
        // mean square (Cauchy-Schwarz over the Hann window), so a block this
        // quiet cannot hold a tone above the floor: it is a miss, and the
        // filters need not run. Silence and background noise stop here.
        if 3.0 * mean_sq < 0.9 * P_MIN {
            self.prev_pair = None;
            self.track(None, false, BlockPower::default(), out);
            self.next_block();
            return;
        }
        self.filter_block();
        let t = &self.tones;
        let norm = t.tone_norm;
        let mut p = [0.0f32; 8];
        let mut z = [(0.0f32, 0.0f32); 8];
        for k in 0..8 {
            let (a, b) = (self.s1[k], self.s2[k]);
            z[k] = (a - t.cos[k] * b, t.sin[k] * b);
            p[k] = (z[k].0 * z[k].0 + z[k].1 * z[k].1) * norm;
        }
        let lo = argmax4(&p[..4]);
        let hi = argmax4(&p[4..]);
        let (pl, ph) = (p[lo], p[4 + hi]);
        let (dl, dh) = (to_dbm0(pl), to_dbm0(ph));
        let twist = dh - dl;
        let pair = (lo, hi);
        let strong = dl >= MIN_LEVEL_DBM0 && dh >= MIN_LEVEL_DBM0;
        let hit = strong
            && (TWIST_MIN_DB..=TWIST_MAX_DB).contains(&twist)
            && pl + ph >= MIN_BLOCK_SHARE * mean_sq;
        let cur_z = [z[lo], z[4 + hi]];
        let mut cont = self.prev_pair == Some(pair)
            && (dl - self.prev_lv.0).abs() <= MAX_STEP_DB
            && (dh - self.prev_lv.1).abs() <= MAX_STEP_DB;
        let mut advance = [0.0f32; 2];
        if cont {
            for (i, k) in [lo, 4 + hi].into_iter().enumerate() {
                // Phase advance over one block, relative to the nominal tone.
                let (a, b) = cur_z[i];
                let (c, d) = self.prev_z[i];
                let (re, im) = (a * c + b * d, b * c - a * d);
                let (rc, rs) = t.rot[k];
                let ang = (im * rc + re * rs).atan2(re * rc - im * rs);
                cont &= ang.abs() <= t.max_phase[k];
                advance[i] = ang;
            }
        }
        self.prev_pair = if strong { Some(pair) } else { None };
        self.prev_z = cur_z;
        self.prev_lv = (dl, dh);
        let blk = BlockPower {
            low: pl,
            high: ph,
            total: mean_sq,
            advance,
        };
        self.track(if hit { Some(pair) } else { None }, cont, blk, out);
        self.next_block();
    }

    fn next_block(&mut self) {
        self.block_start += BLOCK as u64;
        self.energy = 0.0;
        self.filled = 0;
    }

    fn track(
        &mut self,
        hit: Option<(usize, usize)>,
        cont: bool,
        blk: BlockPower,
        out: &mut Vec<Detection>,
    ) {
        if let Some(p) = self.pressed {
            if hit == Some(p) {
                self.misses = 0;
            } else {
                self.misses += 1;
                if self.misses >= RELEASE_BLOCKS {
                    self.pressed = None;
                }
            }
        }
        let Some(pair) = hit else {
            self.run_pair = None;
            self.run_len = 0;
            return;
        };
        if !(cont && self.run_pair == Some(pair)) {
            self.run_pair = Some(pair);
            self.run_len = 0;
            self.run_start = self.block_start;
            self.run_best = blk;
        }
        self.run_len += 1;
        if self.run_len >= TONE_RUN {
            self.hits += 1;
        }
        if blk.low + blk.high > self.run_best.low + self.run_best.high {
            self.run_best = blk;
        }
        self.recent[self.history_at() / BLOCK] = blk;
        if self.run_len >= CONFIRM_BLOCKS && self.pressed != Some(pair) && self.run_is_clean(pair) {
            self.pressed = Some(pair);
            self.misses = 0;
            let (l, h) = (to_dbm0(self.run_best.low), to_dbm0(self.run_best.high));
            out.push(Detection {
                digit: KEYS[pair.0][pair.1],
                at_sample: self.run_start,
                low_dbm0: l,
                high_dbm0: h,
                twist_db: h - l,
            });
        }
    }

    /// The last [`CONFIRM_BLOCKS`] blocks of a run together: the tones
    /// carry [`MIN_TONE_SHARE`] of the energy, and no probe away from them
    /// comes within [`LONG_PROBE_MARGIN_DB`] of the weaker tone.
    fn run_is_clean(&self, (lo, hi): (usize, usize)) -> bool {
        // Oldest block first.
        let cur = self.history_at() / BLOCK;
        let n = CONFIRM_BLOCKS as usize;
        let (mut first, mut second) = (BlockPower::default(), BlockPower::default());
        for i in 0..n {
            let b = self.recent[(cur + 1 + i) % n];
            let half = if i < n / 2 { &mut first } else { &mut second };
            half.low += b.low;
            half.high += b.high;
            half.total += b.total;
        }
        let drift = 10f32.powf(MAX_DRIFT_DB / 10.0);
        let steady = |a: f32, b: f32| a <= b * drift && b <= a * drift;
        let (low, high) = (first.low + second.low, first.high + second.high);
        let clean = low + high >= MIN_TONE_SHARE * (first.total + second.total)
            && steady(first.low, second.low)
            && steady(first.high, second.high);
        if !clean {
            return false;
        }
        let Some(noise) = self.long_probes_clear(LOW[lo], HIGH[hi], low.min(high) / n as f32)
        else {
            return false;
        };
        // Noise per short-block bin (four times a window bin's) against
        // each tone gives the spread of the change of phase advance.
        let a = self.recent[(cur + 2) % n].advance;
        let b = self.recent[cur].advance;
        let bin = 4.0 * noise;
        [(0, low), (1, high)].into_iter().all(|(i, p)| {
            let tol = MAX_GLIDE_RAD + GLIDE_NOISE_SIGMAS * (2.0 * bin * n as f32 / p).sqrt();
            (b[i] - a[i]).abs() <= tol
        })
    }
}

/// All digits found in `samples`, in order.
pub fn detect_all(samples: &[i16]) -> String {
    let mut det = InbandDetector::new();
    let mut out = Vec::new();
    det.feed(samples, &mut out);
    out.iter().map(|d| d.digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quiet-block shortcut relies on no tone measuring more than three
    /// times the block's mean square; check it on tones, pairs, clicks and
    /// noise at every level.
    #[test]
    fn no_tone_measures_more_than_three_times_the_block_energy() {
        let mut x: u32 = 1;
        let mut noise = || {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            ((x >> 16) as i16) as f32
        };
        let mut worst = 0.0f32;
        for case in 0..400 {
            let mut d = InbandDetector::new();
            let amp = 10f32.powf((case % 40) as f32 / 10.0);
            let f1 = LOW[case % 4] * (1.0 + 0.01 * (case % 7) as f32);
            let f2 = HIGH[(case / 4) % 4];
            let samples: Vec<i16> = (0..BLOCK)
                .map(|n| {
                    let t = n as f32 / SAMPLE_RATE as f32;
                    let v = match case % 4 {
                        0 => amp * (2.0 * PI * f1 * t).sin(),
                        1 => amp * ((2.0 * PI * f1 * t).sin() + (2.0 * PI * f2 * t).sin()),
                        2 if n == BLOCK / 2 => amp * 300.0,
                        2 => 0.0,
                        _ => amp * noise() / 3000.0,
                    };
                    v.clamp(-32768.0, 32767.0) as i16
                })
                .collect();
            let mut block_energy = 0.0;
            for (n, &s) in samples.iter().enumerate() {
                let v = s as f32 * d.tones.window[n];
                d.block[n] = v;
                block_energy += v * v;
            }
            d.filter_block();
            let mean_sq = block_energy * d.tones.energy_norm;
            for k in 0..8 {
                let (a, b) = (d.s1[k], d.s2[k]);
                let re = a - d.tones.cos[k] * b;
                let im = d.tones.sin[k] * b;
                let p = (re * re + im * im) * d.tones.tone_norm;
                if mean_sq > 0.0 {
                    worst = worst.max(p / mean_sq);
                }
            }
        }
        assert!(
            worst <= 3.0,
            "a tone measured {worst} times the block energy"
        );
        assert!(worst > 1.0, "the cases reach the bound's region: {worst}");
    }

    #[test]
    fn tones_just_above_the_floor_are_found_and_just_below_are_not() {
        let tone = |dbm0: f32| -> Vec<i16> {
            // Peak amplitude of one tone at `dbm0`.
            let amp = (2.0 * P_0DBM0 * 10f32.powf(dbm0 / 10.0)).sqrt() * 32768.0;
            let mut v: Vec<i16> = (0..800)
                .map(|n| {
                    let t = n as f32 / SAMPLE_RATE as f32;
                    (amp * ((2.0 * PI * 852.0 * t).sin() + (2.0 * PI * 1477.0 * t).sin())) as i16
                })
                .collect();
            v.extend(std::iter::repeat_n(0, 400));
            v
        };
        assert_eq!(detect_all(&tone(-34.0)), "9");
        assert_eq!(detect_all(&tone(-39.0)), "");
    }

    /// A pair of tones at -10 dBm0 each, `ms` long, after 250 ms of
    /// silence, scaled by `gain(t)` and with `extra(t)` (in units of one
    /// tone's amplitude) added; `t` in seconds.
    fn pair(
        low: f32,
        high: f32,
        ms: usize,
        extra: impl Fn(f32) -> f32,
        gain: impl Fn(f32) -> f32,
    ) -> Vec<i16> {
        let amp = (2.0 * P_0DBM0 * 10f32.powf(-10.0 / 10.0)).sqrt() * 32768.0;
        let n = ms * 8;
        let mut v = vec![0i16; 2000];
        v.extend((0..n).map(|i| {
            let t = i as f32 / SAMPLE_RATE as f32;
            let x = (2.0 * PI * low * t).sin() + (2.0 * PI * high * t).sin();
            (amp * (gain(t) * x + extra(t))) as i16
        }));
        v.extend(std::iter::repeat_n(0, 2400));
        v
    }

    #[test]
    fn a_harmonic_between_the_tones_is_not_a_digit() {
        // 852 Hz and 1209 Hz are the 5th and 7th harmonics of a 170.6 Hz
        // voice, whose 6th harmonic (1024 Hz) lies between them: at 11 dB
        // below the tones it leaves them 96 % of the energy, so only the
        // probes tell.
        let sixth = |t: f32| 0.28 * (2.0 * PI * 1024.0 * t).sin();
        let clean = pair(852.0, 1209.0, 200, |_| 0.0, |_| 1.0);
        let voiced = pair(852.0, 1209.0, 200, sixth, |_| 1.0);
        assert_eq!(detect_all(&clean), "7");
        assert_eq!(detect_all(&voiced), "");
        // The same harmonic 17 dB down is background, not a voice.
        let faint = pair(852.0, 1209.0, 200, |t| 0.5 * sixth(t), |_| 1.0);
        assert_eq!(detect_all(&faint), "7");
    }

    #[test]
    fn a_pair_that_swells_is_not_a_digit() {
        // 1.2 dB per 8 ms block, from 18 dB down to full level: each step is
        // small, but the window's halves differ by 2.4 dB.
        let swell = |t: f32| 10f32.powf((-18.0 + 1.2 * t / 0.008) / 20.0);
        assert_eq!(detect_all(&pair(770.0, 1336.0, 120, |_| 0.0, swell)), "");
        // Half as fast stays within the limit.
        let slow = |t: f32| 10f32.powf((-9.0 + 0.6 * t / 0.008) / 20.0);
        assert_eq!(detect_all(&pair(770.0, 1336.0, 120, |_| 0.0, slow)), "5");
    }

    #[test]
    fn a_gliding_pair_is_not_a_digit() {
        // The high tone sweeps from -2 % to +2 % in 120 ms, 0.27 % per
        // block: always within the tolerance, never steady.
        let (fl, fh, len) = (770.0f32, 1336.0f32, 0.12f32);
        let amp = (2.0 * P_0DBM0 * 10f32.powf(-10.0 / 10.0)).sqrt() * 32768.0;
        let tone = |glide: f32| -> Vec<i16> {
            let mut v = vec![0i16; 2000];
            v.extend((0..(len * 8000.0) as usize).map(|i| {
                let t = i as f32 / SAMPLE_RATE as f32;
                let ph = fh * ((1.0 - glide) * t + glide * t * t / len);
                (amp * ((2.0 * PI * fl * t).sin() + (2.0 * PI * ph).sin())) as i16
            }));
            v.extend(std::iter::repeat_n(0, 2400));
            v
        };
        assert_eq!(detect_all(&tone(0.02)), "");
        assert_eq!(detect_all(&tone(0.0)), "5");
    }
}
