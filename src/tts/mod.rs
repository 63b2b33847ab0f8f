//! Text to speech with espeak-ng, rendered to 8 kHz WAV prompts.

pub mod espeak;
pub mod prompts;
