//! Audio: G.711, resampling and prompt playback.

pub mod g711;
pub mod player;
pub mod resample;
pub mod jitter;
