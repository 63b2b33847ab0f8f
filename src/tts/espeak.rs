//! Speech synthesis through the espeak-ng C library.
//!
//! espeak-ng keeps all of its state in process-wide globals and is not
//! thread-safe, so every call into it goes through one process-wide lock.

use std::ffi::{c_int, c_short, c_void, CString};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Speaking rate used when the caller has no preference, in words per minute.
pub const DEFAULT_WPM: u32 = 160;

/// Slowest rate espeak-ng accepts (`espeakRATE_MINIMUM`).
const RATE_MIN: u32 = 80;
/// Fastest rate espeak-ng accepts (`espeakRATE_MAXIMUM`).
const RATE_MAX: u32 = 450;

mod ffi {
    use std::ffi::{c_char, c_int, c_short, c_uint, c_void};

    pub const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
    pub const INITIALIZE_DONT_EXIT: c_int = 0x8000;
    pub const POS_CHARACTER: c_int = 1;
    pub const CHARS_UTF8: c_uint = 1;
    pub const RATE: c_int = 1;
    pub const EE_OK: c_int = 0;

    /// `t_espeak_callback`; the event list is never inspected, so it stays opaque.
    pub type SynthCallback =
        unsafe extern "C" fn(wav: *mut c_short, numsamples: c_int, events: *mut c_void) -> c_int;

    #[link(name = "espeak-ng")]
    extern "C" {
        pub fn espeak_Initialize(
            output: c_int,
            buflength: c_int,
            path: *const c_char,
            options: c_int,
        ) -> c_int;
        pub fn espeak_SetSynthCallback(callback: Option<SynthCallback>);
        pub fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
        pub fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
        pub fn espeak_Synth(
            text: *const c_void,
            size: usize,
            position: c_uint,
            position_type: c_int,
            end_position: c_uint,
            flags: c_uint,
            unique_identifier: *mut c_uint,
            user_data: *mut c_void,
        ) -> c_int;
        pub fn espeak_Synchronize() -> c_int;
    }
}

/// Why synthesis failed.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// espeak-ng could not be initialized (missing data directory, ...).
    #[error("espeak-ng failed to initialize")]
    Init,
    /// The voice name is unknown to espeak-ng (or not a valid C string).
    #[error("unknown espeak-ng voice {0:?}")]
    UnknownVoice(String),
    /// The text contains a NUL byte.
    #[error("text contains a NUL byte")]
    InvalidText,
    /// Setting a synthesis parameter failed with this espeak-ng error code.
    #[error("espeak-ng rejected a parameter (code {0})")]
    Parameter(i32),
    /// `espeak_Synth` failed with this espeak-ng error code.
    #[error("espeak-ng synthesis failed (code {0})")]
    Synth(i32),
    /// Synthesis produced no audio at all.
    #[error("synthesis produced no audio")]
    Empty,
}

/// Mono 16-bit PCM produced by the synthesizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    pub samples: Vec<i16>,
    pub rate: u32,
}

/// State owned by the engine lock.
struct Engine {
    /// Samples collected by the callback during the current `espeak_Synth`.
    buf: Vec<i16>,
    /// Voice currently selected in espeak-ng.
    voice: Option<String>,
}

static ENGINE: Mutex<Engine> = Mutex::new(Engine {
    buf: Vec::new(),
    voice: None,
});

/// Result of `espeak_Initialize`: the output sample rate, or `None` on failure.
/// Only ever initialized while `ENGINE` is held.
static SAMPLE_RATE: OnceLock<Option<u32>> = OnceLock::new();

/// Points at `Engine::buf` while a synthesis is running, null otherwise.
static SINK: AtomicPtr<Vec<i16>> = AtomicPtr::new(ptr::null_mut());

unsafe extern "C" fn collect(wav: *mut c_short, numsamples: c_int, _events: *mut c_void) -> c_int {
    let sink = SINK.load(Ordering::Acquire);
    let Ok(len) = usize::try_from(numsamples) else {
        return 0;
    };
    if sink.is_null() || wav.is_null() || len == 0 {
        return 0;
    }
    // SAFETY: `SINK` is non-null only inside `synthesize` while the engine lock
    // is held and nothing else touches the buffer; espeak-ng in synchronous mode
    // calls this callback from within `espeak_Synth` on that same thread. `wav`
    // points at `numsamples` samples that stay valid for this call.
    unsafe {
        let samples = std::slice::from_raw_parts(wav, len);
        (*sink).extend_from_slice(samples);
    }
    0
}

/// Initializes espeak-ng on first use; returns its sample rate.
fn sample_rate(_engine: &mut Engine) -> Result<u32, TtsError> {
    let rate = SAMPLE_RATE.get_or_init(|| {
        // SAFETY: called once, with the engine lock held (witnessed by the
        // `&mut Engine` argument), before any other espeak-ng call. A null path
        // selects the default data directory; DONT_EXIT makes a missing data
        // directory an error instead of terminating the process.
        let rate = unsafe {
            ffi::espeak_Initialize(
                ffi::AUDIO_OUTPUT_SYNCHRONOUS,
                500,
                ptr::null(),
                ffi::INITIALIZE_DONT_EXIT,
            )
        };
        if rate <= 0 {
            tracing::error!(rate, "espeak_Initialize failed");
            return None;
        }
        // SAFETY: engine lock held; `collect` matches `t_espeak_callback`.
        unsafe { ffi::espeak_SetSynthCallback(Some(collect)) };
        u32::try_from(rate).ok()
    });
    rate.ok_or(TtsError::Init)
}

/// Synthesize `text` with espeak-ng voice `voice` (e.g. "en-us", "en", "de")
/// at `words_per_minute` (clamped to 80..=450; [`DEFAULT_WPM`] is a good
/// default). Blocking: callers run it off the media path.
pub fn synthesize(text: &str, voice: &str, words_per_minute: u32) -> Result<Speech, TtsError> {
    if text.trim().is_empty() {
        return Err(TtsError::Empty);
    }
    let c_text = CString::new(text).map_err(|_| TtsError::InvalidText)?;
    let c_voice = CString::new(voice).map_err(|_| TtsError::UnknownVoice(voice.to_owned()))?;
    let wpm = c_int::try_from(words_per_minute.clamp(RATE_MIN, RATE_MAX)).unwrap_or(160);

    let mut engine = ENGINE.lock().unwrap_or_else(PoisonError::into_inner);
    let rate = sample_rate(&mut engine)?;

    if engine.voice.as_deref() != Some(voice) {
        engine.voice = None;
        // SAFETY: engine lock held; `c_voice` is a valid NUL-terminated string.
        let rc = unsafe { ffi::espeak_SetVoiceByName(c_voice.as_ptr()) };
        if rc != ffi::EE_OK {
            return Err(TtsError::UnknownVoice(voice.to_owned()));
        }
        engine.voice = Some(voice.to_owned());
    }
    // SAFETY: engine lock held; plain integer arguments.
    let rc = unsafe { ffi::espeak_SetParameter(ffi::RATE, wpm, 0) };
    if rc != ffi::EE_OK {
        return Err(TtsError::Parameter(rc));
    }

    engine.buf.clear();
    SINK.store(&mut engine.buf, Ordering::Release);
    // SAFETY: engine lock held; `c_text` is NUL-terminated UTF-8 of the given
    // size and outlives the call, which in synchronous mode returns only once
    // synthesis (and every callback) has finished. Null identifier and user
    // data pointers are allowed.
    let rc = unsafe {
        let rc = ffi::espeak_Synth(
            c_text.as_ptr().cast::<c_void>(),
            c_text.as_bytes_with_nul().len(),
            0,
            ffi::POS_CHARACTER,
            0,
            ffi::CHARS_UTF8,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        ffi::espeak_Synchronize();
        rc
    };
    SINK.store(ptr::null_mut(), Ordering::Release);

    let mut samples = std::mem::take(&mut engine.buf);
    drop(engine);
    if rc != ffi::EE_OK {
        return Err(TtsError::Synth(rc));
    }
    trim_silence(&mut samples, rate);
    if samples.is_empty() {
        return Err(TtsError::Empty);
    }
    Ok(Speech { samples, rate })
}

/// Samples quieter than this (about -54 dBFS) count as silence when trimming.
const SILENCE: u16 = 64;
/// Audio kept beyond the first and last audible sample, in milliseconds.
const MARGIN_MS: u32 = 5;

/// Cuts leading and trailing silence down to a short margin. espeak-ng's
/// clause pauses vary with state left behind by earlier utterances; trimming
/// makes the length depend on the text only.
fn trim_silence(samples: &mut Vec<i16>, rate: u32) {
    let margin = usize::try_from(rate * MARGIN_MS / 1000).unwrap_or(0);
    let loud = |s: &i16| s.unsigned_abs() >= SILENCE;
    let Some(first) = samples.iter().position(loud) else {
        samples.clear();
        return;
    };
    let last = samples.iter().rposition(loud).unwrap_or(first);
    let end = (last + 1 + margin).min(samples.len());
    samples.truncate(end);
    samples.drain(..first.saturating_sub(margin));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_english() {
        let speech = synthesize("hello world", "en-us", DEFAULT_WPM).expect("synthesis");
        assert_eq!(speech.rate, 22050);
        let secs = speech.samples.len() as f64 / f64::from(speech.rate);
        assert!((0.4..3.0).contains(&secs), "{secs} s");
        assert!(speech.samples.iter().any(|&s| s.unsigned_abs() > 1000));
    }

    #[test]
    fn unknown_voice_is_reported() {
        let err = synthesize("hello", "no-such-voice-xyz", DEFAULT_WPM).unwrap_err();
        assert!(matches!(err, TtsError::UnknownVoice(v) if v == "no-such-voice-xyz"));
        // The engine must still work afterwards.
        assert!(synthesize("hello", "en", DEFAULT_WPM).is_ok());
    }

    #[test]
    fn rejects_nul_and_empty_text() {
        assert!(matches!(
            synthesize("a\0b", "en", DEFAULT_WPM),
            Err(TtsError::InvalidText)
        ));
        assert!(matches!(
            synthesize("", "en", DEFAULT_WPM),
            Err(TtsError::Empty)
        ));
    }

    #[test]
    fn trims_to_margin() {
        // 22050 Hz: the 5 ms margin is 110 samples.
        let mut x = vec![0i16; 1000];
        x.extend([500, -500, 500]);
        x.extend(vec![10i16; 1000]);
        trim_silence(&mut x, 22050);
        assert_eq!(x.len(), 110 + 3 + 110);
        assert_eq!(&x[110..113], &[500, -500, 500]);
        let mut quiet = vec![3i16; 500];
        trim_silence(&mut quiet, 22050);
        assert!(quiet.is_empty());
    }

    #[test]
    fn faster_rate_is_shorter() {
        let slow = synthesize("one two three four five six", "en", 120).expect("slow");
        let fast = synthesize("one two three four five six", "en", 300).expect("fast");
        assert!(fast.samples.len() * 3 < slow.samples.len() * 2);
    }

    fn rms_db(x: &[i16]) -> f64 {
        let e: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
        10.0 * (e / x.len() as f64).log10()
    }

    /// espeak-ng 1.51 keeps pitch-flutter, noise and pause state across
    /// utterances, so repeated syntheses are equivalent but not bit-identical
    /// (pauses shift by tens of ms). Concurrent calls must match serial ones
    /// in length (within 2 %) and level (within 1 dB). Each job uses its own
    /// voice and rate, so a voice or rate set by another thread, or samples
    /// collected into the wrong buffer, would break that.
    #[test]
    fn concurrent_matches_serial() {
        let jobs: [(&'static str, &'static str, u32); 4] = [
            ("you have joined the conference.", "en-us", 120),
            ("goodbye. see you soon.", "en", 260),
            ("that pin is not valid. please try again.", "en-us", 180),
            ("sorry, this conference is full. goodbye.", "de", 150),
        ];
        let serial: Vec<Speech> = jobs
            .iter()
            .map(|&(t, v, r)| synthesize(t, v, r).expect("serial"))
            .collect();
        for _ in 0..5 {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(t, v, r)| std::thread::spawn(move || synthesize(t, v, r)))
                .collect();
            for (h, expected) in handles.into_iter().zip(&serial) {
                let got = h.join().expect("thread panicked").expect("concurrent");
                assert_eq!(got.rate, expected.rate);
                let (a, b) = (got.samples.len(), expected.samples.len());
                assert!(a.abs_diff(b) * 50 <= b, "length {a} vs serial {b}");
                let level = rms_db(&got.samples) - rms_db(&expected.samples);
                assert!(level.abs() < 1.0, "level differs by {level:.2} dB");
            }
        }
    }
}
