//! Sample-rate conversion of mono 16-bit PCM.

use rubato::{
    Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction,
};

/// Input frames handed to the resampler per call.
const CHUNK: usize = 1024;
/// Length of the windowed-sinc anti-aliasing filter, in input samples.
const SINC_LEN: usize = 256;
/// Filter cutoff relative to the lower Nyquist frequency: 0.88 of 4 kHz is
/// about 3.5 kHz, which keeps the telephone band and suppresses aliasing.
const CUTOFF: f32 = 0.88;
/// Largest exact polyphase table; ratios needing more use cubic interpolation.
const MAX_PHASES: usize = 512;
/// Sinc oversampling for the cubic fallback.
const CUBIC_PHASES: usize = 256;
/// Upper bound on zero-filled calls used to flush the filter tail.
const MAX_FLUSHES: usize = 8;

/// Resample mono 16-bit PCM from `from_rate` to `to_rate` (e.g. 22050 → 8000).
///
/// The result has `round(len * to / from)` samples and is time-aligned with
/// the input to within half an output sample: the filter's delay is trimmed
/// and its tail flushed. Equal rates return a copy; a zero rate returns an
/// empty vector.
pub fn resample(samples: &[i16], from_rate: u32, to_rate: u32) -> Vec<i16> {
    if from_rate == to_rate {
        return samples.to_vec();
    }
    if from_rate == 0 || to_rate == 0 || samples.is_empty() {
        return Vec::new();
    }
    let (from, to) = (u64::from(from_rate), u64::from(to_rate));
    let out_len = (samples.len() as u64 * to + from / 2) / from;
    let Ok(out_len) = usize::try_from(out_len) else {
        return Vec::new();
    };
    match sinc(samples, from, to, out_len) {
        Ok(out) => out,
        Err(e) => {
            tracing::error!(from_rate, to_rate, error = %e, "resampler failed, using linear");
            linear(samples, from, to, out_len)
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn to_i16(v: f32) -> i16 {
    // The clamp keeps the value in range, so the cast cannot wrap.
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// Band-limited resampling with rubato's windowed-sinc resampler.
fn sinc(samples: &[i16], from: u64, to: u64, out_len: usize) -> Result<Vec<i16>, String> {
    let phases = usize::try_from(to / gcd(from, to)).unwrap_or(usize::MAX);
    let (interpolation, oversampling) = if phases <= MAX_PHASES {
        (SincInterpolationType::Nearest, phases)
    } else {
        (SincInterpolationType::Cubic, CUBIC_PHASES)
    };
    let params = SincInterpolationParameters {
        sinc_len: SINC_LEN,
        f_cutoff: CUTOFF,
        oversampling_factor: oversampling,
        interpolation,
        window: WindowFunction::BlackmanHarris2,
    };
    let ratio = to as f64 / from as f64;
    let mut rs =
        SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1).map_err(|e| e.to_string())?;

    // Output n of rubato's sinc resampler is centred on input time
    // (n + 1) * step - 1 + 1 / phases. Prepending `lead` zeros and dropping
    // `skip` outputs moves that onto n * step.
    let step = from as f64 / to as f64;
    let offset = step - 1.0 + 1.0 / oversampling as f64;
    let lead = offset.max(0.0).ceil();
    let skip = ((lead - offset) / step).round() as usize;
    let needed = skip + out_len;

    let mut input: Vec<f32> = Vec::with_capacity(samples.len() + lead as usize);
    input.resize(lead as usize, 0.0);
    input.extend(samples.iter().map(|&s| f32::from(s) / 32768.0));

    let mut out: Vec<f32> = Vec::with_capacity(needed + CHUNK);
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in chunks.by_ref() {
        let res = rs.process(&[chunk], None).map_err(|e| e.to_string())?;
        out.extend_from_slice(&res[0]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let res = rs
            .process_partial(Some(&[rest]), None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&res[0]);
    }
    // Flush the filter tail with silence. Each call yields about CHUNK * ratio
    // frames and the tail is under SINC_LEN input frames, so a few suffice.
    let mut flushes = 0;
    while out.len() < needed && flushes < MAX_FLUSHES {
        let res = rs
            .process_partial(None::<&[&[f32]]>, None)
            .map_err(|e| e.to_string())?;
        out.extend_from_slice(&res[0]);
        flushes += 1;
    }
    if out.len() < needed {
        tracing::warn!(have = out.len(), needed, "resampler tail short, padding");
        out.resize(needed, 0.0);
    }
    Ok(out[skip..needed].iter().map(|&v| to_i16(v)).collect())
}

/// Plain linear interpolation, used only if rubato refuses the parameters.
fn linear(samples: &[i16], from: u64, to: u64, out_len: usize) -> Vec<i16> {
    let last = samples.len() - 1;
    (0..out_len)
        .map(|n| {
            let pos = n as f64 * from as f64 / to as f64;
            let i = (pos.floor() as usize).min(last);
            let frac = (pos - i as f64) as f32;
            let a = f32::from(samples[i]);
            let b = f32::from(samples[(i + 1).min(last)]);
            to_i16((a + (b - a) * frac) / 32768.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcd_works() {
        assert_eq!(gcd(22050, 8000), 50);
        assert_eq!(gcd(8000, 8000), 8000);
    }

    #[test]
    fn linear_fallback_keeps_length_and_level() {
        let x: Vec<i16> = (0..441).map(|i| (i * 10) as i16).collect();
        let y = linear(&x, 22050, 8000, 160);
        assert_eq!(y.len(), 160);
        assert_eq!(y[0], 0);
        assert!((i32::from(y[80]) - 2205).abs() <= 1);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(resample(&[], 22050, 8000).is_empty());
        assert!(resample(&[1, 2, 3], 0, 8000).is_empty());
        assert_eq!(resample(&[1, 2, 3], 8000, 8000), vec![1, 2, 3]);
        assert_eq!(resample(&[1000], 16000, 8000).len(), 1);
        assert_eq!(resample(&[1000], 8000, 16000).len(), 2);
    }
}
