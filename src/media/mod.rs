//! Audio: G.711, resampling and prompt playback.

pub mod g711;
pub mod jitter;
pub mod mixer;
pub mod player;
pub mod quality;
pub mod resample;
