//! Signal helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

/// Power of `x` at `freq` Hz (Goertzel), normalized by length.
pub fn goertzel(x: &[i16], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
}

/// RMS level in dBFS.
/// Whether `samples` (8 kHz) carry `freq` 20 dB over the floor at 2.3 kHz.
pub fn hears(samples: &[i16], freq: f64) -> bool {
    let db = |x: f64| 10.0 * x.max(1e-9).log10();
    let (tone, floor) = (
        db(goertzel(samples, 8000, freq)),
        db(goertzel(samples, 8000, 2300.0)),
    );
    eprintln!("{freq} Hz at {tone:.1} dB over {floor:.1} dB");
    tone - floor > 20.0
}

pub fn rms_dbfs(x: &[i16]) -> f64 {
    let e: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    20.0 * ((e / x.len() as f64).sqrt() / 32768.0).log10()
}

/// Peak amplitude of `x[range]`.
pub fn peak(x: &[i16]) -> i32 {
    x.iter().map(|&v| i32::from(v).abs()).max().unwrap_or(0)
}

/// A sine of `amp` (linear, full scale 32767) at `freq`, `len` samples long.
pub fn sine(rate: u32, freq: f64, amp: f64, len: usize) -> Vec<i16> {
    (0..len)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            (amp * (2.0 * std::f64::consts::PI * freq * t).sin()).round() as i16
        })
        .collect()
}

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "confgate-tts-{tag}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Writes 8 kHz 16-bit mono samples as a WAV.
pub fn write_wav(path: &std::path::Path, samples: &[i16]) {
    write_wav_at(path, samples, 8000)
}

/// Writes 16-bit mono samples at `rate` as a WAV.
pub fn write_wav_at(path: &std::path::Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for &s in samples {
        w.write_sample(s).expect("write wav");
    }
    w.finalize().expect("finish wav");
}

/// Share of `x`'s energy between `lo` and `hi` Hz, in dB (Goertzel bins
/// every 100 Hz up to 8 kHz).
pub fn band_db(x: &[i16], rate: u32, lo: f64, hi: f64) -> f64 {
    let (mut band, mut all) = (0.0, 0.0);
    let mut f = 100.0;
    while f < 8000.0_f64.min(f64::from(rate) / 2.0) {
        let p = goertzel(x, rate, f);
        all += p;
        if (lo..hi).contains(&f) {
            band += p;
        }
        f += 100.0;
    }
    10.0 * (band / all).max(1e-12).log10()
}

/// Reads a 16-bit mono WAV and checks that it is 8 kHz.
pub fn read_wav(path: &std::path::Path) -> Vec<i16> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.sample_rate, 8000, "{}", path.display());
    assert_eq!(spec.channels, 1, "{}", path.display());
    assert_eq!(spec.bits_per_sample, 16, "{}", path.display());
    r.samples::<i16>().map(|s| s.unwrap()).collect()
}

/// The project's shared test material (`shared/` beside the checkout).
pub fn shared(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

/// RMS of each 20 ms frame.
pub fn envelope(samples: &[i16]) -> Vec<f64> {
    samples
        .chunks(160)
        .map(|f| (f.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
        .collect()
}

/// Best normalised correlation of `needle` inside `hay`, and its lag in frames.
pub fn best_match(hay: &[f64], needle: &[f64]) -> (f64, usize) {
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nn = norm(needle);
    (0..=hay.len().saturating_sub(needle.len()))
        .map(|lag| {
            let w = &hay[lag..lag + needle.len()];
            let dot: f64 = w.iter().zip(needle).map(|(a, b)| a * b).sum();
            (dot / (norm(w) * nn).max(1e-9), lag)
        })
        .fold((0.0, 0), |best, x| if x.0 > best.0 { x } else { best })
}

pub fn voiced_frames(env: &[f64]) -> usize {
    env.iter().filter(|&&r| r > 300.0).count()
}
