//! The prompts a running daemon plays, rendered and loaded once at start
//! (synthesis never runs on the media path).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::conference::Announcements;
use crate::config::Settings;
use crate::media::resample::resample;
use crate::tts::espeak;
use crate::tts::prompts::{self, PromptError, PromptSpec, RATE, WIDE_RATE};

/// Prompt audio by name, 8 kHz mono, shared by every call.
#[derive(Debug, Default)]
pub struct PromptBook {
    clips: HashMap<String, Arc<[i16]>>,
    /// The same at 16 kHz, for wideband calls.
    wide: HashMap<String, Arc<[i16]>>,
    early_media: Arc<[i16]>,
    early_media_wide: Arc<[i16]>,
    hold_music: Arc<[i16]>,
}

/// A WAV of this name in the prompts directory is the music on hold; without
/// one, rooms waiting for a moderator hear the early-media loop.
pub const HOLD_MUSIC: &str = "hold_music.wav";

impl PromptBook {
    /// Render what changed (blocking: call it off the async runtime), then load.
    pub fn prepare(settings: &Settings) -> Result<PromptBook, PromptError> {
        let specs = specs(settings);
        prompts::render(
            &settings.prompts_dir,
            &settings.voice,
            settings.words_per_minute,
            &specs,
        )?;
        Self::load(&settings.prompts_dir, &specs)
    }

    fn load(dir: &Path, specs: &[PromptSpec]) -> Result<PromptBook, PromptError> {
        let loaded = prompts::load(dir, specs)?;
        let mut wide: HashMap<String, Arc<[i16]>> = loaded
            .iter()
            .map(|p| (p.name.clone(), p.wide.clone()))
            .collect();
        let clips: HashMap<String, Arc<[i16]>> = loaded
            .into_iter()
            .map(|p| (p.name, p.samples))
            .chain([
                ("join_tone".to_owned(), prompts::join_tone().into()),
                ("leave_tone".to_owned(), prompts::leave_tone().into()),
                ("louder".to_owned(), prompts::louder_tone().into()),
                ("quieter".to_owned(), prompts::quieter_tone().into()),
            ])
            .collect();
        // The tones are narrowband: their wide copies are converted once.
        for (name, clip) in &clips {
            wide.entry(name.clone())
                .or_insert_with(|| resample(clip, RATE, WIDE_RATE).into());
        }
        let early_media: Arc<[i16]> = prompts::early_media_loop().into();
        let early_media_wide: Arc<[i16]> = resample(&early_media, RATE, WIDE_RATE).into();
        let music = dir.join(HOLD_MUSIC);
        let hold_music = match music.exists() {
            true => prompts::load_wav_at(&music, WIDE_RATE)?.into(),
            false => early_media_wide.clone(),
        };
        Ok(PromptBook {
            clips,
            wide,
            early_media,
            early_media_wide,
            hold_music,
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<[i16]>> {
        self.clips.get(name).cloned()
    }

    pub fn early_media(&self) -> Arc<[i16]> {
        self.early_media.clone()
    }

    /// A prompt at 16 kHz.
    pub fn get_wide(&self, name: &str) -> Option<Arc<[i16]>> {
        self.wide.get(name).cloned()
    }

    pub fn early_media_wide(&self) -> Arc<[i16]> {
        self.early_media_wide.clone()
    }

    /// The clips the rooms play, as `settings` asks for them.
    pub fn announcements(&self, settings: &Settings) -> Announcements {
        // Rooms mix at 16 kHz.
        let clip = |name: &str| self.get_wide(name).unwrap_or_else(|| Vec::new().into());
        Announcements {
            joined: clip("joined"),
            only_participant: clip("only_participant"),
            join_tone: settings.announce_tones.then(|| clip("join_tone")),
            leave_tone: settings.announce_tones.then(|| clip("leave_tone")),
            hold_music: self.hold_music.clone(),
            waiting_for_moderator: clip("waiting_for_moderator"),
            muted: clip("muted"),
            unmuted: clip("unmuted"),
            room_locked: clip("now_locked"),
            room_unlocked: clip("now_unlocked"),
            all_muted: clip("all_muted"),
            all_unmuted: clip("all_unmuted"),
            member_removed: clip("member_removed"),
            moderator_only: clip("moderator_only"),
            has_joined: clip("has_joined"),
            has_left: clip("has_left"),
            louder: clip("louder"),
            quieter: clip("quieter"),
        }
    }
}

/// The prompt texts of the configuration as render specs; templates (a
/// text with `{n}`) are spoken when needed, not rendered ahead.
pub fn specs(settings: &Settings) -> Vec<PromptSpec> {
    settings
        .prompt_texts
        .iter()
        .filter(|(_, text)| !text.contains("{n}"))
        .map(|(name, text)| PromptSpec {
            name: name.clone(),
            text: text.clone(),
        })
        .collect()
}

/// Speech made while running (the `say` command, how many are in a
/// room), synthesized on a blocking thread, never on the media path.
/// Short texts asked for again and again (the counts) are kept.
#[derive(Debug, Default)]
pub struct Speaker {
    kept: Mutex<HashMap<String, Arc<[i16]>>>,
}

/// Texts kept at most; past that the store starts again.
const KEPT: usize = 64;

impl Speaker {
    /// `text` spoken in the configured voice, at the rooms' 16 kHz.
    pub async fn speak(settings: &Settings, text: String) -> Result<Arc<[i16]>, String> {
        let (voice, wpm) = (settings.voice.clone(), settings.words_per_minute);
        // Synthesis and the conversion both stay off the async threads.
        let samples = tokio::task::spawn_blocking(move || {
            espeak::synthesize(&text, &voice, wpm)
                .map(|speech| resample(&speech.samples, speech.rate, WIDE_RATE))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(samples.into())
    }

    /// Like [`Speaker::speak`], kept for the next time.
    pub async fn kept(&self, settings: &Settings, text: String) -> Result<Arc<[i16]>, String> {
        // A poisoned lock only means a task panicked mid-insert; the clips stand.
        if let Some(clip) = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&text)
        {
            return Ok(clip.clone());
        }
        let clip = Self::speak(settings, text.clone()).await?;
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= KEPT {
            kept.clear();
        }
        kept.insert(text, clip.clone());
        Ok(clip)
    }
}

/// What a member hears about the `others` in its room; `None` for nobody
/// (the only-participant prompt says that).
pub fn participants_text(settings: &Settings, others: usize) -> Option<String> {
    let text = |name: &str| settings.prompt_texts.get(name).cloned();
    match others {
        0 => None,
        1 => text("one_participant"),
        n => text("participants").map(|t| t.replace("{n}", &n.to_string())),
    }
}
