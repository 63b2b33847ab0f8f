//! Prompt playback in 20 ms frames (sans-IO): the media leg asks for one
//! frame per tick; the player hands out the prompt, then silence.

use std::sync::Arc;

/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// What one call of [`Player::next_frame`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Prompt audio (a last partial frame is padded with silence).
    Audio,
    /// Nothing playing: the frame is silence.
    Silence,
}

/// Plays one clip at a time, once or looped.
#[derive(Debug, Default)]
pub struct Player {
    clip: Option<Clip>,
    /// Set when a clip played to its end; taken by [`Player::take_finished`].
    finished: bool,
}

#[derive(Debug)]
struct Clip {
    samples: Arc<[i16]>,
    pos: usize,
    looped: bool,
}

impl Player {
    pub fn new() -> Self {
        Self::default()
    }

    /// Start `samples`, replacing whatever plays now (without reporting it finished).
    pub fn play(&mut self, samples: Arc<[i16]>, looped: bool) {
        self.finished = false;
        self.clip = (!samples.is_empty()).then_some(Clip {
            samples,
            pos: 0,
            looped,
        });
        if self.clip.is_none() {
            self.finished = true;
        }
    }

    /// Stop at once (barge-in). Not reported as finished.
    pub fn stop(&mut self) {
        self.clip = None;
    }

    pub fn is_playing(&self) -> bool {
        self.clip.is_some()
    }

    /// True once after a clip that was not looped reached its end.
    pub fn take_finished(&mut self) -> bool {
        std::mem::take(&mut self.finished)
    }

    /// Fill `out` with the next 20 ms ([`FRAME`] samples at 8 kHz, or
    /// twice that for a 16 kHz clip).
    pub fn next_frame(&mut self, out: &mut [i16]) -> Frame {
        let frame = out.len();
        let Some(clip) = self.clip.as_mut() else {
            out.fill(0);
            return Frame::Silence;
        };
        let mut filled = 0;
        while filled < frame {
            let left = clip.samples.len() - clip.pos;
            let n = left.min(frame - filled);
            out[filled..filled + n].copy_from_slice(&clip.samples[clip.pos..clip.pos + n]);
            filled += n;
            clip.pos += n;
            if clip.pos == clip.samples.len() {
                if clip.looped {
                    clip.pos = 0;
                } else {
                    out[filled..].fill(0);
                    self.clip = None;
                    self.finished = true;
                    break;
                }
            }
        }
        Frame::Audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(n: usize) -> Arc<[i16]> {
        (1..=n as i16).collect::<Vec<_>>().into()
    }

    #[test]
    fn plays_once_then_silence_and_reports_finished() {
        let mut p = Player::new();
        p.play(clip(400), false);
        let mut f = [0i16; FRAME];
        assert_eq!(p.next_frame(&mut f), Frame::Audio);
        assert_eq!(f[0], 1);
        assert_eq!(p.next_frame(&mut f), Frame::Audio);
        assert!(!p.take_finished());
        assert_eq!(p.next_frame(&mut f), Frame::Audio);
        assert_eq!(f[79], 400);
        assert!(f[80..].iter().all(|&s| s == 0), "tail padded with silence");
        assert!(p.take_finished());
        assert!(!p.take_finished(), "reported once");
        assert_eq!(p.next_frame(&mut f), Frame::Silence);
    }

    #[test]
    fn loops_seamlessly() {
        let mut p = Player::new();
        p.play(clip(100), true);
        let mut f = [0i16; FRAME];
        p.next_frame(&mut f);
        assert_eq!(f[99], 100);
        assert_eq!(f[100], 1, "wraps within the frame");
        for _ in 0..50 {
            assert_eq!(p.next_frame(&mut f), Frame::Audio);
        }
        assert!(!p.take_finished());
    }

    #[test]
    fn stop_is_immediate_and_silent() {
        let mut p = Player::new();
        p.play(clip(1000), false);
        p.stop();
        let mut f = [7i16; FRAME];
        assert_eq!(p.next_frame(&mut f), Frame::Silence);
        assert!(f.iter().all(|&s| s == 0));
        assert!(!p.take_finished());
    }
}
