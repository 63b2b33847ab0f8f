//! The prompt store: spoken prompts rendered once with espeak-ng and cached
//! as 8 kHz WAV files, user recordings that override them, and synthetic tones.

use std::fs;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::media::resample::resample;
use crate::tts::espeak::{self, TtsError};

mod tones;
pub use tones::{early_media_loop, join_tone, leave_tone, louder_tone, quieter_tone};

/// Sample rate of every prompt and tone.
pub const RATE: u32 = 8000;

/// Sidecar format tag; bump it to re-render every generated prompt.
// v2: a 16 kHz copy is rendered beside each 8 kHz prompt.
const STAMP_VERSION: &str = "v2";
/// The rate of the copy wideband calls hear.
pub const WIDE_RATE: u32 = 16_000;

/// One prompt: a name (file stem) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptSpec {
    pub name: String,
    pub text: String,
}

impl PromptSpec {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// The stock prompts. Texts are lowercase: espeak-ng spells out capitals.
pub fn default_specs() -> Vec<PromptSpec> {
    [
        ("welcome", "welcome to the conference service. please enter your conference pin, then press the pound key."),
        ("invalid_pin", "that pin is not valid. please try again."),
        ("goodbye", "goodbye."),
        ("joined", "you have joined the conference."),
        ("only_participant", "you are the only participant in this conference."),
        ("conference_full", "sorry, this conference is full. goodbye."),
        ("conference_locked", "sorry, this conference is locked. goodbye."),
        ("try_later", "too many attempts. please try again later. goodbye."),
    ]
    .into_iter()
    .map(|(name, text)| PromptSpec::new(name, text))
    .collect()
}

/// What [`render`] did with one prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderOutcome {
    /// Synthesized and written now.
    Rendered,
    /// The cached file matches the current voice and text.
    UpToDate,
    /// A WAV without sidecar: the user's recording, never overwritten.
    UserProvided,
}

/// A loaded prompt: 8 kHz mono i16 samples, and the same at 16 kHz.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub name: String,
    pub samples: Arc<[i16]>,
    pub wide: Arc<[i16]>,
}

/// Errors name the file or prompt involved.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: {source}", path.display())]
    Wav { path: PathBuf, source: hound::Error },
    #[error("{}: unsupported WAV format: {detail}", path.display())]
    Format { path: PathBuf, detail: String },
    #[error("prompt {name:?}: {source}")]
    Tts { name: String, source: TtsError },
    #[error("invalid prompt name {0:?} (use letters, digits, '_' and '-')")]
    BadName(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PromptError + '_ {
    move |source| PromptError::Io {
        path: path.to_owned(),
        source,
    }
}

fn wav_err(path: &Path) -> impl Fn(hound::Error) -> PromptError + '_ {
    move |source| PromptError::Wav {
        path: path.to_owned(),
        source,
    }
}

/// FNV-1a, 64 bit.
fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Sidecar contents identifying the voice, rate and text a WAV was rendered from.
fn stamp(voice: &str, words_per_minute: u32, text: &str) -> String {
    let rate = words_per_minute.to_string();
    let hash = fnv1a64(&[
        voice.as_bytes(),
        b"\0",
        rate.as_bytes(),
        b"\0",
        text.as_bytes(),
    ]);
    format!("{STAMP_VERSION} fnv1a64:{hash:016x}\n")
}

fn check_name(name: &str) -> Result<(), PromptError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(PromptError::BadName(name.to_owned()))
    }
}

fn wav_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wav"))
}

/// The 16 kHz copy of a rendered prompt.
fn wide_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.wide.wav"))
}

fn sidecar_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tts"))
}

/// Writes `bytes` to a temp file next to `path`, syncs it, and renames it over `path`.
/// The temp name is unique per write (process and a counter), so daemons
/// rendering into one directory at once never rename each other's files.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PromptError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let mut tmp = path.as_os_str().to_owned();
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    tmp.push(format!(".tmp{}-{n}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Encodes 8 kHz mono 16-bit PCM as a WAV file image.
fn encode_wav(path: &Path, samples: &[i16]) -> Result<Vec<u8>, PromptError> {
    encode_wav_at(path, samples, RATE)
}

fn encode_wav_at(path: &Path, samples: &[i16], rate: u32) -> Result<Vec<u8>, PromptError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut buf = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    let mut writer = hound::WavWriter::new(&mut buf, spec).map_err(wav_err(path))?;
    for &s in samples {
        writer.write_sample(s).map_err(wav_err(path))?;
    }
    writer.finalize().map_err(wav_err(path))?;
    Ok(buf.into_inner())
}

/// Render every spec whose text or voice changed since last time into
/// `dir/<name>.wav` (8 kHz, 16-bit mono) and record the voice+text hash in
/// the sidecar `dir/.<name>.tts`. A `<name>.wav` with no sidecar is the
/// user's recording and wins (to replace a generated prompt with a recording,
/// delete its sidecar). Creates `dir` if missing; writes atomically.
pub fn render(
    dir: &Path,
    voice: &str,
    words_per_minute: u32,
    specs: &[PromptSpec],
) -> Result<Vec<(String, RenderOutcome)>, PromptError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    specs
        .iter()
        .map(|spec| {
            Ok((
                spec.name.clone(),
                render_one(dir, voice, words_per_minute, spec)?,
            ))
        })
        .collect()
}

fn render_one(
    dir: &Path,
    voice: &str,
    words_per_minute: u32,
    spec: &PromptSpec,
) -> Result<RenderOutcome, PromptError> {
    check_name(&spec.name)?;
    let wav = wav_path(dir, &spec.name);
    let sidecar = sidecar_path(dir, &spec.name);
    let want = stamp(voice, words_per_minute, &spec.text);

    let have_wav = wav.try_exists().map_err(io_err(&wav))?;
    let stored = match fs::read(&sidecar) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&sidecar)(e)),
    };
    match (have_wav, &stored) {
        (true, None) => return Ok(RenderOutcome::UserProvided),
        (true, Some(s)) if s.as_slice() == want.as_bytes() => return Ok(RenderOutcome::UpToDate),
        // Claim the file before writing it, so an interrupted render is
        // redone instead of being mistaken for a user recording.
        (false, None) => write_atomic(&sidecar, b"pending\n")?,
        _ => {}
    }

    let speech = espeak::synthesize(&spec.text, voice, words_per_minute).map_err(|source| {
        PromptError::Tts {
            name: spec.name.clone(),
            source,
        }
    })?;
    let samples = resample(&speech.samples, speech.rate, RATE);
    let wide = wide_path(dir, &spec.name);
    let wide_samples = resample(&speech.samples, speech.rate, WIDE_RATE);
    write_atomic(&wide, &encode_wav_at(&wide, &wide_samples, WIDE_RATE)?)?;
    write_atomic(&wav, &encode_wav(&wav, &samples)?)?;
    write_atomic(&sidecar, want.as_bytes())?;
    tracing::info!(prompt = %spec.name, voice, samples = samples.len(), "rendered prompt");
    Ok(RenderOutcome::Rendered)
}

/// Load `dir/<name>.wav` for each spec, converted to 8 kHz mono i16.
pub fn load(dir: &Path, specs: &[PromptSpec]) -> Result<Vec<Prompt>, PromptError> {
    specs
        .iter()
        .map(|spec| {
            check_name(&spec.name)?;
            let path = wav_path(dir, &spec.name);
            let samples = load_wav(&path)?;
            // A rendered prompt has its 16 kHz copy; a user's recording is
            // converted from its own rate.
            let rendered = sidecar_path(dir, &spec.name).exists();
            let wide_file = wide_path(dir, &spec.name);
            let wide = match rendered && wide_file.exists() {
                true => load_wav_at(&wide_file, WIDE_RATE)?,
                false => load_wav_at(&path, WIDE_RATE)?,
            };
            Ok(Prompt {
                name: spec.name.clone(),
                samples: samples.into(),
                wide: wide.into(),
            })
        })
        .collect()
}

/// Read any WAV hound understands (8/16/24/32-bit int, 32-bit float, any
/// rate and channel count) as 8 kHz mono i16; channels are averaged.
pub fn load_wav(path: &Path) -> Result<Vec<i16>, PromptError> {
    load_wav_at(path, RATE)
}

/// [`load_wav`], converted to `rate`.
pub fn load_wav_at(path: &Path, rate: u32) -> Result<Vec<i16>, PromptError> {
    let mut reader = hound::WavReader::open(path).map_err(wav_err(path))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    let format_err = |detail: String| PromptError::Format {
        path: path.to_owned(),
        detail,
    };
    if channels == 0 || spec.sample_rate == 0 {
        return Err(format_err(format!(
            "{channels} channels at {} Hz",
            spec.sample_rate
        )));
    }
    let mono = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            mix_down(reader.samples::<i32>(), channels, path, |v| {
                f64::from(v) * scale
            })?
        }
        (hound::SampleFormat::Float, 32) => {
            mix_down(reader.samples::<f32>(), channels, path, f64::from)?
        }
        (format, bits) => return Err(format_err(format!("{bits}-bit {format:?}"))),
    };
    if mono.is_empty() {
        tracing::warn!(path = %path.display(), "prompt file has no audio");
    }
    Ok(resample(&mono, spec.sample_rate, rate))
}

/// Averages interleaved frames of `channels` samples into mono i16.
fn mix_down<S>(
    samples: impl Iterator<Item = hound::Result<S>>,
    channels: usize,
    path: &Path,
    to_unit: impl Fn(S) -> f64,
) -> Result<Vec<i16>, PromptError> {
    let mut out = Vec::new();
    let (mut acc, mut n) = (0.0, 0);
    for s in samples {
        acc += to_unit(s.map_err(wav_err(path))?);
        n += 1;
        if n == channels {
            out.push(quantize(acc / channels as f64));
            (acc, n) = (0.0, 0);
        }
    }
    Ok(out)
}

/// Full-scale-normalized value to i16, saturating.
fn quantize(v: f64) -> i16 {
    // Clamped to the i16 range first, so the cast cannot wrap.
    (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_reference_values() {
        assert_eq!(fnv1a64(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(&[b"foo", b"bar"]), fnv1a64(&[b"foobar"]));
        assert_ne!(stamp("en", 160, "a"), stamp("en-us", 160, "a"));
        assert_ne!(stamp("en", 160, "xa"), stamp("enx", 160, "a"));
        assert_ne!(stamp("en", 160, "a"), stamp("en", 180, "a"));
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("welcome").is_ok());
        assert!(check_name("only_participant-2").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(matches!(check_name(bad), Err(PromptError::BadName(_))));
        }
    }

    #[test]
    fn default_texts_avoid_capitals() {
        for spec in default_specs() {
            assert_eq!(spec.text, spec.text.to_lowercase(), "{}", spec.name);
            assert!(check_name(&spec.name).is_ok());
        }
    }
}
