use confgate::dtmf::inband::{detect_all, Detection, InbandDetector};

const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
const DIGITS: &str = "123A456B789C*0#D";

/// Peak of a 0 dBm0 sine in dBFS (-3.14 dB).
const ZERO_DBM0_PEAK_DBFS: f64 = -314.0 / 100.0;

fn amp(dbm0: f64) -> f64 {
    32768.0 * 10f64.powf((ZERO_DBM0_PEAK_DBFS + dbm0) / 20.0)
}

fn freqs(d: char) -> (f64, f64) {
    let i = DIGITS.find(d).unwrap();
    (LOW[i / 4], HIGH[i % 4])
}

/// Appends `n` samples of a tone pair (levels in dBm0, `None` = silence).
fn push(buf: &mut Vec<i16>, n: usize, pair: Option<(f64, f64, f64, f64)>, phase: f64) {
    let start = buf.len();
    for i in 0..n {
        let v = match pair {
            Some((fl, dl, fh, dh)) => {
                let t = (start + i) as f64 / 8000.0;
                amp(dl) * (2.0 * std::f64::consts::PI * fl * t + phase).sin()
                    + amp(dh) * (2.0 * std::f64::consts::PI * fh * t + 2.0 * phase).sin()
            }
            None => 0.0,
        };
        buf.push(v.round().clamp(-32768.0, 32767.0) as i16);
    }
}

/// One digit: `lead` samples of silence, `ms` of tone, 100 ms of silence.
fn digit(d: char, ms: f64, dev: f64, lo_db: f64, hi_db: f64, lead: usize) -> Vec<i16> {
    let (fl, fh) = freqs(d);
    let mut b = Vec::new();
    push(&mut b, lead, None, 0.0);
    let n = (ms * 8.0).round() as usize;
    let p = Some((fl * (1.0 + dev), lo_db, fh * (1.0 + dev), hi_db));
    push(&mut b, n, p, lead as f64 * 0.37);
    push(&mut b, 800, None, 0.0);
    b
}

fn sequence(on_ms: usize, off_ms: usize, lead: usize) -> Vec<i16> {
    let mut b = Vec::new();
    push(&mut b, lead, None, 0.0);
    for d in DIGITS.chars() {
        let (fl, fh) = freqs(d);
        push(&mut b, on_ms * 8, Some((fl, -10.0, fh, -10.0)), 0.0);
        push(&mut b, off_ms * 8, None, 0.0);
    }
    b
}

#[test]
fn frequency_tolerance() {
    for d in DIGITS.chars() {
        for lead in (0..64).step_by(9) {
            for dev in [-0.015, 0.0, 0.015] {
                let s = digit(d, 60.0, dev, -10.0, -10.0, lead);
                assert_eq!(detect_all(&s), d.to_string(), "{d} dev {dev} lead {lead}");
            }
            for dev in [-0.035, 0.035, -0.05, 0.05] {
                let s = digit(d, 100.0, dev, -10.0, -10.0, lead);
                assert_eq!(detect_all(&s), "", "{d} dev {dev} lead {lead}");
            }
        }
    }
}

#[test]
fn twist_limits_inclusive() {
    for d in DIGITS.chars() {
        for lead in (0..64).step_by(7) {
            for (lo, hi) in [
                (-10.0, -6.0),
                (-10.0, -18.0),
                (-26.0, -30.0),
                (-22.0, -30.0),
            ] {
                let s = digit(d, 40.0, 0.0, lo, hi, lead);
                assert_eq!(detect_all(&s), d.to_string(), "{d} {lo}/{hi} lead {lead}");
            }
            for (lo, hi) in [(-14.0, -6.0), (-6.0, -18.0)] {
                let s = digit(d, 100.0, 0.0, lo, hi, lead);
                assert_eq!(detect_all(&s), "", "{d} {lo}/{hi} lead {lead}");
            }
        }
    }
}

#[test]
fn duration_limits() {
    for d in DIGITS.chars() {
        for lead in 0..64 {
            assert_eq!(
                detect_all(&digit(d, 40.0, 0.0, -10.0, -10.0, lead)),
                d.to_string()
            );
            assert_eq!(detect_all(&digit(d, 20.0, 0.0, -10.0, -10.0, lead)), "");
            assert_eq!(detect_all(&digit(d, 24.0, 0.0, -10.0, -10.0, lead)), "");
        }
    }
}

#[test]
fn level_floor() {
    for d in DIGITS.chars() {
        let s = digit(d, 40.0, 0.015, -30.0, -30.0, 5);
        assert_eq!(detect_all(&s), d.to_string());
        let s = digit(d, 100.0, 0.0, -45.0, -45.0, 5);
        assert_eq!(detect_all(&s), "");
    }
}

#[test]
fn sequences_40_on_40_off() {
    for lead in (0..64).step_by(5) {
        assert_eq!(detect_all(&sequence(40, 40, lead)), DIGITS, "lead {lead}");
        assert_eq!(detect_all(&sequence(100, 100, lead)), DIGITS, "lead {lead}");
    }
}

#[test]
fn flicker_does_not_double() {
    let (fl, fh) = freqs('5');
    let p = Some((fl, -10.0, fh, -10.0));
    for gap_ms in [2usize, 5, 8, 10, 12] {
        for lead in (0..64).step_by(11) {
            let mut b = Vec::new();
            push(&mut b, lead, None, 0.0);
            push(&mut b, 800, p, 0.0);
            push(&mut b, gap_ms * 8, None, 0.0);
            push(&mut b, 800, p, 0.3);
            push(&mut b, 800, None, 0.0);
            assert_eq!(detect_all(&b), "5", "gap {gap_ms} ms lead {lead}");
        }
    }
    let mut b = Vec::new();
    push(&mut b, 800, p, 0.0);
    push(&mut b, 320, None, 0.0);
    push(&mut b, 800, p, 0.0);
    push(&mut b, 800, None, 0.0);
    assert_eq!(detect_all(&b), "55");
}

fn run_chunked(s: &[i16], chunk: usize) -> Vec<Detection> {
    let mut det = InbandDetector::new();
    let mut out = Vec::new();
    for c in s.chunks(chunk) {
        det.feed(c, &mut out);
    }
    out
}

#[test]
fn chunking_is_invisible() {
    let s = sequence(40, 40, 17);
    let whole = run_chunked(&s, s.len());
    assert_eq!(whole.len(), 16);
    for chunk in [1, 3, 7, 63, 64, 65, 160, 1000] {
        assert_eq!(run_chunked(&s, chunk), whole, "chunk {chunk}");
    }
    // Irregular chunk sizes.
    let mut det = InbandDetector::new();
    let mut out = Vec::new();
    let (mut pos, mut k) = (0, 1usize);
    while pos < s.len() {
        let end = (pos + k).min(s.len());
        det.feed(&s[pos..end], &mut out);
        pos = end;
        k = (k * 7 + 3) % 97;
    }
    assert_eq!(out, whole);
}

#[test]
fn reports_start_and_levels() {
    let (fl, fh) = freqs('8');
    let mut b = Vec::new();
    push(&mut b, 4000, None, 0.0);
    push(&mut b, 800, Some((fl, -12.0, fh, -15.0)), 0.0);
    push(&mut b, 800, None, 0.0);
    let out = run_chunked(&b, 160);
    assert_eq!(out.len(), 1);
    let d = out[0];
    assert_eq!(d.digit, '8');
    assert!(
        d.at_sample >= 4000 - 64 && d.at_sample <= 4000 + 64,
        "{d:?}"
    );
    assert!((d.low_dbm0 + 12.0).abs() < 0.5, "{d:?}");
    assert!((d.high_dbm0 + 15.0).abs() < 0.5, "{d:?}");
    assert!((d.twist_db + 3.0).abs() < 0.5, "{d:?}");
}

#[test]
fn reset_restarts_counting() {
    let s = digit('#', 60.0, 0.0, -10.0, -10.0, 0);
    let mut det = InbandDetector::new();
    let mut out = Vec::new();
    det.feed(&s[..200], &mut out);
    det.reset();
    det.feed(&s, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].digit, '#');
    assert!(out[0].at_sample < 64);
}
