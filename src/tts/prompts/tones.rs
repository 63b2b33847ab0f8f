//! Synthetic cue tones and the early-media loop, generated at 8 kHz.

use std::f64::consts::PI;

use super::{quantize, RATE};

fn ms(millis: usize) -> usize {
    RATE as usize * millis / 1000
}

fn dbfs(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// A sine beep of `len` samples with raised-cosine ramps of `ramp` samples;
/// the first and last samples are exactly zero.
fn beep(freq: f64, len: usize, ramp: usize, amp: f64) -> impl Iterator<Item = f64> {
    (0..len).map(move |n| {
        let edge = n.min(len - 1 - n);
        let env = if edge < ramp {
            0.5 - 0.5 * (PI * edge as f64 / ramp as f64).cos()
        } else {
            1.0
        };
        amp * env * (2.0 * PI * freq * n as f64 / f64::from(RATE)).sin()
    })
}

/// Two 120 ms beeps 40 ms apart at -12 dBFS with 5 ms ramps.
fn two_beeps(first: f64, second: f64) -> Vec<i16> {
    let (len, gap, ramp, amp) = (ms(120), ms(40), ms(5), dbfs(-12.0));
    beep(first, len, ramp, amp)
        .chain(std::iter::repeat_n(0.0, gap))
        .chain(beep(second, len, ramp, amp))
        .map(quantize)
        .collect()
}

/// Participant joined: two rising beeps (600 Hz, then 900 Hz), 280 ms.
pub fn join_tone() -> Vec<i16> {
    two_beeps(600.0, 900.0)
}

/// Participant left: two falling beeps (900 Hz, then 600 Hz), 280 ms.
pub fn leave_tone() -> Vec<i16> {
    two_beeps(900.0, 600.0)
}

/// One 120 ms beep at -12 dBFS with 5 ms ramps.
fn one_beep(freq: f64) -> Vec<i16> {
    beep(freq, ms(120), ms(5), dbfs(-12.0))
        .map(quantize)
        .collect()
}

/// A volume step up, heard by the presser: one high beep (1000 Hz).
pub fn louder_tone() -> Vec<i16> {
    one_beep(1000.0)
}

/// A volume step down: one low beep (500 Hz).
pub fn quieter_tone() -> Vec<i16> {
    one_beep(500.0)
}

/// Early-media ringback: a soft C-major arpeggio (C5 E5 G5 E5, one note per
/// 500 ms, bell-like decay) as a 2 s loop peaking at -18 dBFS. Note tails wrap
/// around, so the loop repeats without a seam.
pub fn early_media_loop() -> Vec<i16> {
    let total = ms(2000);
    let slot = total / 4;
    let (note_len, attack, release) = (ms(1200), ms(15), ms(100));
    let mut mix = vec![0.0f64; total];
    for (i, freq) in [523.25, 659.26, 783.99, 659.26].into_iter().enumerate() {
        for n in 0..note_len {
            let t = n as f64 / f64::from(RATE);
            let mut env = (-t / 0.35).exp();
            if n < attack {
                env *= 0.5 - 0.5 * (PI * n as f64 / attack as f64).cos();
            }
            let left = note_len - 1 - n;
            if left < release {
                env *= 0.5 - 0.5 * (PI * left as f64 / release as f64).cos();
            }
            let w = 2.0 * PI * freq * t;
            let tone = w.sin() + 0.25 * (2.0 * w).sin() + 0.06 * (3.0 * w).sin();
            mix[(i * slot + n) % total] += env * tone;
        }
    }
    let peak = mix.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gain = if peak > 0.0 { dbfs(-18.0) / peak } else { 0.0 };
    mix.into_iter().map(|v| quantize(v * gain)).collect()
}
