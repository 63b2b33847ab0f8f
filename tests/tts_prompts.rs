mod common;

use std::fs;
use std::path::Path;
use std::time::Instant;

use common::signal::{goertzel, rms_dbfs, temp_dir};
use confgate::tts::prompts::{
    default_specs, early_media_loop, join_tone, leave_tone, load, load_wav, render, PromptError,
    PromptSpec, RenderOutcome, RATE,
};

fn outcomes(list: &[(String, RenderOutcome)]) -> Vec<RenderOutcome> {
    list.iter().map(|(_, o)| *o).collect()
}

fn check_generated(dir: &Path, name: &str) -> Vec<i16> {
    let path = dir.join(format!("{name}.wav"));
    let reader = hound::WavReader::open(&path).expect("open rendered wav");
    let spec = reader.spec();
    assert_eq!(spec.sample_rate, 8000, "{name}");
    assert_eq!(spec.channels, 1, "{name}");
    assert_eq!(spec.bits_per_sample, 16, "{name}");
    assert_eq!(spec.sample_format, hound::SampleFormat::Int, "{name}");
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("read samples");
    assert!(rms_dbfs(&samples) > -40.0, "{name} is too quiet");
    assert!(dir.join(format!(".{name}.tts")).exists(), "{name} sidecar");
    samples
}

#[test]
#[allow(clippy::disallowed_methods)] // reports how long rendering took
fn render_caches_and_rerenders_changes() {
    let dir = temp_dir("render").join("nested"); // render must create it
    let mut specs = default_specs();

    let start = Instant::now();
    let first = render(&dir, "en-us", 160, &specs).expect("first render");
    eprintln!("rendered {} prompts in {:?}", specs.len(), start.elapsed());
    assert!(outcomes(&first)
        .iter()
        .all(|o| *o == RenderOutcome::Rendered));
    for spec in &specs {
        let samples = check_generated(&dir, &spec.name);
        let secs = samples.len() as f64 / 8000.0;
        assert!((0.2..12.0).contains(&secs), "{}: {secs} s", spec.name);
        if spec.name == "welcome" {
            assert!((3.0..10.0).contains(&secs), "welcome: {secs} s");
        }
    }
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    let again = render(&dir, "en-us", 160, &specs).expect("second render");
    assert!(outcomes(&again)
        .iter()
        .all(|o| *o == RenderOutcome::UpToDate));

    let before = fs::read(dir.join("welcome.wav")).expect("read");
    specs[1].text = "that pin is wrong. please try again.".into();
    let third = render(&dir, "en-us", 160, &specs).expect("third render");
    for (name, outcome) in &third {
        let want = if name == "invalid_pin" {
            RenderOutcome::Rendered
        } else {
            RenderOutcome::UpToDate
        };
        assert_eq!(*outcome, want, "{name}");
    }
    assert_eq!(before, fs::read(dir.join("welcome.wav")).expect("read"));

    // A different voice changes every hash.
    let fourth = render(&dir, "en", 160, &specs[..2]).expect("voice change");
    assert!(outcomes(&fourth)
        .iter()
        .all(|o| *o == RenderOutcome::Rendered));

    // A generated file that went missing is rendered again.
    fs::remove_file(dir.join("goodbye.wav")).expect("remove");
    let fifth = render(&dir, "en-us", 160, &specs).expect("after removal");
    assert_eq!(fifth[2], ("goodbye".to_owned(), RenderOutcome::Rendered));

    let loaded = load(&dir, &specs).expect("load");
    assert_eq!(loaded.len(), specs.len());
    assert_eq!(loaded[0].name, "welcome");
    assert_eq!(
        loaded[0].samples.len(),
        check_generated(&dir, "welcome").len()
    );
    let _ = fs::remove_dir_all(dir.parent().unwrap_or(&dir));
}

#[test]
fn user_recording_wins_and_is_converted() {
    let dir = temp_dir("user");
    let path = dir.join("goodbye.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec).expect("create");
    // 1.5 s: 1 kHz on the left, silence on the right.
    for n in 0..24000 {
        let v = (12000.0 * (2.0 * std::f64::consts::PI * 1000.0 * n as f64 / 16000.0).sin()) as i16;
        w.write_sample(v).expect("write");
        w.write_sample(0i16).expect("write");
    }
    w.finalize().expect("finalize");
    let original = fs::read(&path).expect("read");

    let specs = vec![
        PromptSpec::new("goodbye", "goodbye."),
        PromptSpec::new("joined", "you have joined the conference."),
    ];
    let out = render(&dir, "en-us", 160, &specs).expect("render");
    assert_eq!(out[0], ("goodbye".to_owned(), RenderOutcome::UserProvided));
    assert_eq!(out[1], ("joined".to_owned(), RenderOutcome::Rendered));
    assert_eq!(
        original,
        fs::read(&path).expect("read"),
        "user file touched"
    );
    assert!(!dir.join(".goodbye.tts").exists());
    let out = render(&dir, "en-us", 160, &specs).expect("render again");
    assert_eq!(out[0].1, RenderOutcome::UserProvided);

    let prompts = load(&dir, &specs).expect("load");
    let user = &prompts[0].samples;
    assert_eq!(user.len(), 12000, "1.5 s at 8 kHz");
    let mid = &user[1000..11000];
    // Mixed down: half the amplitude, still a 1 kHz tone.
    let level = 10.0 * (4.0 * goertzel(mid, 8000, 1000.0) / (6000.0f64 * 6000.0)).log10();
    assert!(level.abs() < 0.5, "level {level:.2} dB");
    assert!(goertzel(mid, 8000, 1000.0) > 1e4 * goertzel(mid, 8000, 2000.0));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn load_reads_other_formats() {
    let dir = temp_dir("formats");
    let cases: [(u16, hound::SampleFormat, u32, u16); 5] = [
        (8, hound::SampleFormat::Int, 8000, 1),
        (24, hound::SampleFormat::Int, 44100, 2),
        (32, hound::SampleFormat::Int, 22050, 1),
        (32, hound::SampleFormat::Float, 48000, 3),
        (16, hound::SampleFormat::Int, 11025, 1),
    ];
    for (i, (bits, format, rate, channels)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("f{i}.wav"));
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("create");
        let frames = rate as usize; // 1 s
        for n in 0..frames {
            let x = 0.5 * (2.0 * std::f64::consts::PI * 500.0 * n as f64 / f64::from(rate)).sin();
            for _ in 0..channels {
                match format {
                    hound::SampleFormat::Float => w.write_sample(x as f32),
                    hound::SampleFormat::Int => {
                        let full = f64::from((1u32 << (bits - 1)) - 1);
                        w.write_sample((x * full).round() as i32)
                    }
                }
                .expect("write");
            }
        }
        w.finalize().expect("finalize");
        let samples = load_wav(&path).expect("load");
        assert_eq!(samples.len(), RATE as usize, "case {i}");
        let mid = &samples[1000..7000];
        let level = 10.0 * (4.0 * goertzel(mid, 8000, 500.0) / (16384.0f64 * 16384.0)).log10();
        assert!(level.abs() < 0.5, "case {i}: level {level:.2} dB");
    }
    let missing = load(&dir, &[PromptSpec::new("nope", "x")]).unwrap_err();
    assert!(matches!(missing, PromptError::Wav { ref path, .. } if path.ends_with("nope.wav")));
    assert!(missing.to_string().contains("nope.wav"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn bad_names_and_voices_are_reported() {
    let dir = temp_dir("errors");
    let err = render(&dir, "en-us", 160, &[PromptSpec::new("../evil", "x")]).unwrap_err();
    assert!(matches!(err, PromptError::BadName(_)));
    let err = render(
        &dir,
        "no-such-voice",
        160,
        &[PromptSpec::new("hello", "hello")],
    )
    .unwrap_err();
    assert!(matches!(err, PromptError::Tts { ref name, .. } if name == "hello"));
    assert!(err.to_string().contains("hello"));
    assert!(!dir.join("hello.wav").exists());
    // The claimed-but-unrendered prompt is retried, not taken for a user file.
    let ok = render(&dir, "en-us", 160, &[PromptSpec::new("hello", "hello")]).expect("retry");
    assert_eq!(ok[0].1, RenderOutcome::Rendered);
    let _ = fs::remove_dir_all(&dir);
}

/// Largest sample-to-sample step of a sine with peak `amp` at `freq`.
fn sine_step(amp: f64, freq: f64) -> f64 {
    2.0 * amp * (std::f64::consts::PI * freq / 8000.0).sin()
}

fn max_step(x: &[i16]) -> f64 {
    x.windows(2)
        .map(|w| (f64::from(w[1]) - f64::from(w[0])).abs())
        .fold(0.0, f64::max)
}

#[test]
fn beeps_are_clean_and_shaped() {
    let amp = 32768.0 * 10f64.powf(-12.0 / 20.0);
    for (tone, rising) in [(join_tone(), true), (leave_tone(), false)] {
        assert_eq!(tone.len(), 2240, "120 + 40 + 120 ms");
        assert_eq!((tone[0], tone[tone.len() - 1]), (0, 0));
        assert!(max_step(&tone) <= sine_step(amp, 900.0) + 1.0, "click");
        assert!(tone[960..1280].iter().all(|&s| s == 0), "gap");
        let peak = tone
            .iter()
            .map(|s| f64::from(s.unsigned_abs()))
            .fold(0.0, f64::max);
        assert!((peak / amp - 1.0).abs() < 0.01, "level");
        let (a, b) = (&tone[..960], &tone[1280..]);
        let first_low = goertzel(a, 8000, 600.0) > goertzel(a, 8000, 900.0);
        let second_high = goertzel(b, 8000, 900.0) > goertzel(b, 8000, 600.0);
        assert_eq!(first_low && second_high, rising);
        assert_eq!(!first_low && !second_high, !rising);
    }
}

#[test]
fn early_media_loops_seamlessly() {
    let x = early_media_loop();
    assert_eq!(x.len(), 16000, "2 s");
    let peak = x
        .iter()
        .map(|s| f64::from(s.unsigned_abs()))
        .fold(0.0, f64::max);
    let want = 32768.0 * 10f64.powf(-18.0 / 20.0);
    assert!((peak / want - 1.0).abs() < 0.01, "peak {peak}");
    // Highest partial is the third harmonic of G5 (2352 Hz).
    let bound = sine_step(peak, 2400.0);
    assert!(max_step(&x) <= bound, "click inside the loop");
    let wrap = (f64::from(x[0]) - f64::from(x[x.len() - 1])).abs();
    assert!(wrap <= bound, "seam {wrap}");
    let mut twice = x.clone();
    twice.extend_from_slice(&x);
    assert!(max_step(&twice) <= bound);
    assert!(rms_dbfs(&x) > -35.0, "audible");
}

/// Share of `x`'s energy between `lo` and `hi` Hz, in dB (Goertzel bins
/// every 100 Hz).
fn band_db(x: &[i16], rate: u32, lo: f64, hi: f64) -> f64 {
    let (mut band, mut all) = (0.0, 0.0);
    let mut f = 100.0;
    while f < f64::from(rate) / 2.0 {
        let p = goertzel(x, rate, f);
        all += p;
        if (lo..hi).contains(&f) {
            band += p;
        }
        f += 100.0;
    }
    10.0 * (band / all).max(1e-12).log10()
}

#[test]
fn wideband_calls_get_a_16_khz_rendering_not_an_upsampled_one() {
    let dir = temp_dir("wide");
    let specs = [PromptSpec::new(
        "welcome",
        "Please enter your conference PIN, then press pound.",
    )];
    render(&dir, "en-us", 160, &specs).expect("render");
    let wide = dir.join("welcome.wide.wav");
    let spec = hound::WavReader::open(&wide).expect("a 16 kHz copy").spec();
    assert_eq!(spec.sample_rate, 16_000);
    let loaded = load(&dir, &specs).expect("load");
    let p = &loaded[0];
    // The same speech: twice the samples, within a frame.
    assert!((p.wide.len() as i64 - 2 * p.samples.len() as i64).abs() <= 320);
    // The fricatives of "press", "PIN", "conference" reach above 4 kHz.
    let high = band_db(&p.wide, 16_000, 4500.0, 7500.0);
    eprintln!("4.5–7.5 kHz holds {high:.1} dB of the wide prompt");
    assert!(
        high > -30.0,
        "4.5–7.5 kHz at {high:.1} dB: narrowband speech"
    );
    // A user's 8 kHz recording is converted, and has nothing up there.
    let user = temp_dir("wide-user");
    let spec8 = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(user.join("welcome.wav"), spec8).unwrap();
    for &s in p.samples.iter() {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let loaded = load(&user, &specs).expect("load");
    assert!(band_db(&loaded[0].wide, 16_000, 4500.0, 7500.0) < high - 20.0);
}
