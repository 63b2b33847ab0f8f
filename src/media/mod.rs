//! Audio: codecs, resampling, prompt playback and room recording.

pub mod codec;
pub mod g711;
pub mod halfband;
pub mod jitter;
pub mod mixer;
pub mod player;
pub mod quality;
pub mod recorder;
pub mod resample;
