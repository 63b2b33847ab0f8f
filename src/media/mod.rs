//! Audio: G.711, resampling, prompt playback and room recording.

pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod player;
pub mod quality;
pub mod recorder;
pub mod resample;
