//! The prompts a running daemon plays, rendered and loaded once at start
//! (synthesis never runs on the media path).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use crate::conference::Announcements;
use crate::config::Settings;
use crate::tts::prompts::{self, PromptError, PromptSpec};

/// Prompt audio by name, 8 kHz mono, shared by every call.
#[derive(Debug, Default)]
pub struct PromptBook {
    clips: HashMap<String, Arc<[i16]>>,
    early_media: Arc<[i16]>,
}

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
        let clips = prompts::load(dir, specs)?
            .into_iter()
            .map(|p| (p.name, p.samples))
            .chain([
                ("join_tone".to_owned(), prompts::join_tone().into()),
                ("leave_tone".to_owned(), prompts::leave_tone().into()),
            ])
            .collect();
        Ok(PromptBook {
            clips,
            early_media: prompts::early_media_loop().into(),
        })
    }

    pub fn get(&self, name: &str) -> Option<Arc<[i16]>> {
        self.clips.get(name).cloned()
    }

    pub fn early_media(&self) -> Arc<[i16]> {
        self.early_media.clone()
    }

    /// The clips the rooms play, as `settings` asks for them.
    pub fn announcements(&self, settings: &Settings) -> Announcements {
        let clip = |name: &str| self.get(name).unwrap_or_else(|| Vec::new().into());
        Announcements {
            joined: clip("joined"),
            only_participant: clip("only_participant"),
            join_tone: settings.announce_tones.then(|| clip("join_tone")),
            leave_tone: settings.announce_tones.then(|| clip("leave_tone")),
        }
    }
}

/// The prompt texts of the configuration as render specs.
pub fn specs(settings: &Settings) -> Vec<PromptSpec> {
    settings
        .prompt_texts
        .iter()
        .map(|(name, text)| PromptSpec {
            name: name.clone(),
            text: text.clone(),
        })
        .collect()
}
