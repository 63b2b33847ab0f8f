//! 2:1 sample-rate conversion between 8 and 16 kHz, one 20 ms frame at a
//! time, for the wideband room: narrowband members are upsampled into it
//! and its mix is downsampled for them.
//!
//! Written here rather than taken from rubato (which converts the prompts
//! once, offline): this runs per frame on the media threads, must keep its
//! history between frames without allocating, and a half-band FIR does it
//! with half its taps zero. The filter is a 47-tap Kaiser-windowed sinc
//! (β = 6): flat to 3.4 kHz, more than 60 dB down above 4.6 kHz.

use std::sync::LazyLock;

/// Non-zero taps on each side of the centre.
const SIDE: usize = 12;
/// The polyphase branch of even taps: `2 * SIDE` of them.
const EVEN: usize = 2 * SIDE;
/// Filter length, `4 * SIDE - 1`; the centre tap is `EVEN - 1`.
const LEN: usize = 4 * SIDE - 1;

/// The even taps `h[0], h[2], …, h[LEN - 1]`; the centre tap is 0.5.
static TAPS: LazyLock<[f32; EVEN]> = LazyLock::new(|| {
    let centre = (LEN / 2) as f64;
    let beta = 6.0;
    let i0 = |x: f64| {
        // Modified Bessel function of the first kind, order 0 (series).
        let (mut sum, mut term) = (1.0, 1.0);
        for k in 1..30 {
            term *= (x / 2.0) / f64::from(k);
            sum += term * term;
        }
        sum
    };
    let mut taps = [0f64; EVEN];
    for (k, t) in taps.iter_mut().enumerate() {
        let n = (2 * k) as f64 - centre;
        let sinc = (std::f64::consts::PI * n / 2.0).sin() / (std::f64::consts::PI * n);
        let r = n / centre;
        *t = sinc * i0(beta * (1.0 - r * r).max(0.0).sqrt()) / i0(beta);
    }
    // The even taps sum to one half, so both phases pass DC at unity.
    let sum: f64 = taps.iter().sum();
    let mut out = [0f32; EVEN];
    for (o, t) in out.iter_mut().zip(taps) {
        *o = (t * 0.5 / sum) as f32;
    }
    out
});

fn saturate(v: f32) -> i16 {
    v.round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16
}

/// The longest frame converted at once (20 ms at 16 kHz).
pub const MAX_FRAME: usize = 320;

/// 8 → 16 kHz.
#[derive(Clone)]
pub struct Upsampler {
    /// The last `EVEN - 1` input samples.
    history: [f32; EVEN - 1],
}

impl Default for Upsampler {
    fn default() -> Self {
        Upsampler {
            history: [0.0; EVEN - 1],
        }
    }
}

impl Upsampler {
    /// Upsample `input` into `out`, which takes twice as many samples.
    /// Extra input beyond [`MAX_FRAME`] / 2 or `out.len() / 2` is ignored.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        let taps = &*TAPS;
        let n = input.len().min(out.len() / 2).min(MAX_FRAME / 2);
        let mut work = [0f32; EVEN - 1 + MAX_FRAME / 2];
        work[..EVEN - 1].copy_from_slice(&self.history);
        for (w, &s) in work[EVEN - 1..].iter_mut().zip(&input[..n]) {
            *w = f32::from(s);
        }
        for i in 0..n {
            // work[i + EVEN - 1] is x[i]; the even branch reaches back EVEN - 1.
            let window = &work[i..i + EVEN];
            let mut acc = 0f32;
            for (t, x) in taps.iter().zip(window.iter().rev()) {
                acc += t * x;
            }
            out[2 * i] = saturate(2.0 * acc);
            // The centre tap (0.5, times the gain of 2) lands on odd outputs.
            out[2 * i + 1] = saturate(work[i + EVEN - 1 - (SIDE - 1)]);
        }
        self.history.copy_from_slice(&work[n..n + EVEN - 1]);
    }
}

/// 16 → 8 kHz.
#[derive(Clone)]
pub struct Downsampler {
    /// The last `LEN - 1` input samples.
    history: [f32; LEN - 1],
}

impl Default for Downsampler {
    fn default() -> Self {
        Downsampler {
            history: [0.0; LEN - 1],
        }
    }
}

impl Downsampler {
    /// Downsample `input` (an even number of samples) into `out`, which
    /// takes half as many.
    pub fn process(&mut self, input: &[i16], out: &mut [i16]) {
        let taps = &*TAPS;
        let n = (input.len() / 2).min(out.len()).min(MAX_FRAME / 2);
        let mut work = [0f32; LEN - 1 + MAX_FRAME];
        work[..LEN - 1].copy_from_slice(&self.history);
        for (w, &s) in work[LEN - 1..].iter_mut().zip(&input[..2 * n]) {
            *w = f32::from(s);
        }
        for (i, o) in out[..n].iter_mut().enumerate() {
            // Output i is centred on x[2i - 23] (its newest input is x[2i],
            // at work[2i + LEN - 1]): a round trip is a whole-sample delay.
            let end = 2 * i + LEN;
            let window = &work[end - LEN..end];
            let mut acc = 0.5 * window[LEN / 2];
            for (k, t) in taps.iter().enumerate() {
                acc += t * window[LEN - 1 - 2 * k];
            }
            *o = saturate(acc);
        }
        self.history.copy_from_slice(&work[2 * n..2 * n + LEN - 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f64, f: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * f * i as f64 / rate).sin()) as i16)
            .collect()
    }

    fn level(x: &[i16], rate: f64, f: f64) -> f64 {
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in x.iter().enumerate() {
            let p = 2.0 * std::f64::consts::PI * f * i as f64 / rate;
            re += f64::from(s) * p.cos();
            im += f64::from(s) * p.sin();
        }
        2.0 * (re * re + im * im).sqrt() / x.len() as f64
    }

    fn up(x: &[i16]) -> Vec<i16> {
        let mut u = Upsampler::default();
        let mut out = vec![0; x.len() * 2];
        for (i, o) in x.chunks(160).zip(out.chunks_mut(320)) {
            u.process(i, o);
        }
        out
    }

    fn down(x: &[i16]) -> Vec<i16> {
        let mut d = Downsampler::default();
        let mut out = vec![0; x.len() / 2];
        for (i, o) in x.chunks(320).zip(out.chunks_mut(160)) {
            d.process(i, o);
        }
        out
    }

    #[test]
    fn upsampling_keeps_the_tone_and_adds_no_image() {
        for f in [300.0, 1000.0, 3000.0, 3400.0] {
            let out = up(&sine(8000.0, f, 10000.0, 8000));
            let tail = &out[1600..];
            let kept = level(tail, 16000.0, f);
            assert!(
                (kept - 10000.0).abs() < 10000.0 * 0.06,
                "{f} Hz kept at {kept}"
            );
            // The image of f mirrored about 4 kHz.
            let image = level(tail, 16000.0, 8000.0 - f);
            assert!(image < 10000.0 * 0.01, "{f} Hz image at {image}");
        }
    }

    #[test]
    fn downsampling_keeps_the_band_and_rejects_what_would_alias() {
        let out = down(&sine(16000.0, 1000.0, 10000.0, 16000));
        let kept = level(&out[800..], 8000.0, 1000.0);
        assert!((kept - 10000.0).abs() < 300.0, "1 kHz kept at {kept}");
        // 6 kHz would fold onto 2 kHz.
        let out = down(&sine(16000.0, 6000.0, 10000.0, 16000));
        let folded = level(&out[800..], 8000.0, 2000.0);
        assert!(folded < 10.0, "6 kHz folds to 2 kHz at {folded}");
    }

    #[test]
    fn a_round_trip_is_a_delay() {
        let x = sine(8000.0, 700.0, 8000.0, 4000);
        let back = down(&up(&x));
        // Find the delay, then compare.
        let best = (0..40)
            .min_by_key(|&d| {
                x[..3000]
                    .iter()
                    .zip(&back[d..])
                    .map(|(&a, &b)| (i64::from(a) - i64::from(b)).pow(2))
                    .sum::<i64>()
            })
            .unwrap_or(0);
        let err: f64 = x[500..3000]
            .iter()
            .zip(&back[500 + best..])
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs())
            .fold(0.0, f64::max);
        assert!(
            err < 300.0,
            "round trip differs by {err} after a {best}-sample delay"
        );
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let x = vec![i16::MAX; 160];
        let out = up(&[x.clone(), x].concat());
        assert!(out[400..].iter().all(|&s| s > 30000));
    }
}
