mod common;

use common::signal::{goertzel, peak, sine};
use confgate::media::resample::resample;

const PAIRS: [(u32, u32); 4] = [(22050, 8000), (16000, 8000), (44100, 8000), (48000, 8000)];

#[test]
fn length_is_rounded_exactly() {
    let extra = [(8000, 16000), (8000, 22050), (44100, 48000), (22050, 7999)];
    for (from, to) in PAIRS.into_iter().chain(extra) {
        for len in [1usize, 7, 100, 1023, 1024, 1025, 4410, 22050, 100_003] {
            let x = vec![1000i16; len];
            let y = resample(&x, from, to);
            let want = (len as f64 * f64::from(to) / f64::from(from)).round() as usize;
            assert!(
                y.len() == want,
                "{from}->{to} len {len}: got {} want {want}",
                y.len()
            );
        }
    }
}

#[test]
fn impulse_stays_aligned() {
    let extra = [(8000, 22050), (8000, 16000), (22050, 7999)];
    for (from, to) in PAIRS.into_iter().chain(extra) {
        for pos in [3000usize, 5000, 7777] {
            let mut x = vec![0i16; 12000];
            x[pos] = 30000;
            let y = resample(&x, from, to);
            let (i, _) = y
                .iter()
                .enumerate()
                .max_by_key(|(_, v)| v.unsigned_abs())
                .expect("non-empty");
            // Parabolic interpolation around the peak for a sub-sample estimate.
            let (a, b, c) = (f64::from(y[i - 1]), f64::from(y[i]), f64::from(y[i + 1]));
            let found = i as f64 + 0.5 * (a - c) / (a - 2.0 * b + c);
            let want = pos as f64 * f64::from(to) / f64::from(from);
            assert!(
                (found - want).abs() <= 0.5,
                "{from}->{to} impulse at {pos}: peak {found:.2}, want {want:.2}"
            );
        }
    }
}

#[test]
fn sine_keeps_frequency_and_level() {
    for (from, _) in PAIRS {
        let amp = 16000.0;
        let x = sine(from, 1000.0, amp, from as usize); // 1 s
        let y = resample(&x, from, 8000);
        let mid = &y[800..7200];
        let p1 = goertzel(mid, 8000, 1000.0);
        for f in [2000.0, 3000.0, 500.0] {
            assert!(p1 > 1e4 * goertzel(mid, 8000, f), "{from}: leak at {f} Hz");
        }
        // Goertzel power of a sine with amplitude A over N samples is A^2 / 4.
        let level = 10.0 * (4.0 * p1 / (amp * amp)).log10();
        assert!(level.abs() < 1.0, "{from}: level {level:.2} dB");
    }
}

#[test]
fn near_nyquist_tone_is_attenuated() {
    let amp = 16000.0;
    let x = sine(22050, 3900.0, amp, 22050);
    let y = resample(&x, 22050, 8000);
    let p = goertzel(&y[800..7200], 8000, 3900.0);
    let gain = 10.0 * (4.0 * p / (amp * amp)).log10();
    assert!(gain < -20.0, "3.9 kHz gain {gain:.1} dB");
    // Something above the new Nyquist must not alias back in either.
    let x = sine(22050, 4600.0, amp, 22050);
    let y = resample(&x, 22050, 8000);
    let p = goertzel(&y[800..7200], 8000, 3400.0);
    let gain = 10.0 * (4.0 * p / (amp * amp)).log10();
    assert!(gain < -40.0, "4.6 kHz alias gain {gain:.1} dB");
}

#[test]
fn full_scale_input_saturates_without_panic() {
    for (from, to) in PAIRS.into_iter().chain([(8000, 22050)]) {
        let square: Vec<i16> = (0..20000)
            .map(|n| if (n / 7) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        let y = resample(&square, from, to);
        assert!(!y.is_empty());
        let x = sine(from, 1000.0, 32767.0, 20000);
        let y = resample(&x, from, to);
        assert!(peak(&y) >= 32000, "{from}->{to}");
    }
}
