//! A leg's media session as its thread drives it: a SIP call's RTP
//! ([`MediaSession`]) or a browser's WebRTC ([`WebSession`]). Both are fed
//! datagrams and the tick; a SIP call hands back at most one packet per
//! step, a browser's session queues what it has to send, and the thread
//! takes it with [`Session::next_transmit`].

use std::net::SocketAddr;
use std::time::Instant;

use crate::call::media::{
    MediaCommand, MediaEvent, MediaParams, MediaSession, MediaStats, Quality, Transmit,
};
use crate::call::webrtc::WebSession;
use crate::events::QualityState;
use crate::media::mixer::Output;

// Slots are boxed whole; the common SIP session stays inline in its slot.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Session {
    Rtp(MediaSession),
    Web(Box<WebSession>),
}

impl Session {
    pub(super) fn params(&self) -> &MediaParams {
        match self {
            Session::Rtp(m) => m.params(),
            Session::Web(w) => w.params(),
        }
    }

    pub(super) fn command(&mut self, cmd: MediaCommand, now: Instant) {
        match self {
            Session::Rtp(m) => m.command(cmd, now),
            // A browser member hears only its room: no prompts, no keying.
            Session::Web(_) => {}
        }
    }

    pub(super) fn seated(&mut self) {
        if let Session::Rtp(m) = self {
            m.seated();
        }
    }

    /// The next 20 ms for a leg not in a room.
    pub(super) fn prompt_frame(&mut self, now: Instant) -> Option<Transmit<'_>> {
        match self {
            Session::Rtp(m) => m.prompt_frame(),
            Session::Web(w) => {
                w.audio_frame(None, now);
                None
            }
        }
    }

    /// The room's frame for a seated leg.
    pub(super) fn audio_frame(
        &mut self,
        frame: Option<Output<'_>>,
        now: Instant,
    ) -> Option<Transmit<'_>> {
        match self {
            Session::Rtp(m) => m.audio_frame(frame),
            Session::Web(w) => {
                w.audio_frame(frame, now);
                None
            }
        }
    }

    pub(super) fn skip(&mut self, frames: u64) {
        match self {
            Session::Rtp(m) => m.skip(frames),
            Session::Web(w) => w.skip(frames),
        }
    }

    pub(super) fn poll_timeout(&self) -> Instant {
        match self {
            Session::Rtp(m) => m.poll_timeout(),
            Session::Web(w) => w.poll_timeout(),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) -> Option<Transmit<'_>> {
        match self {
            Session::Rtp(m) => m.handle_timeout(now),
            Session::Web(w) => {
                w.handle_timeout(now);
                None
            }
        }
    }

    pub(super) fn take_quality(&mut self) -> Option<(Quality, Option<QualityState>)> {
        match self {
            Session::Rtp(m) => m.take_quality(),
            Session::Web(_) => None,
        }
    }

    pub(super) fn poll_event(&mut self) -> Option<MediaEvent> {
        match self {
            Session::Rtp(m) => m.poll_event(),
            Session::Web(w) => w.poll_event(),
        }
    }

    /// The leg ends: RTCP BYE, or the browser's peer forgotten.
    pub(super) fn bye(&mut self, now: Instant) -> Option<Transmit<'_>> {
        match self {
            Session::Rtp(m) => m.bye(now),
            Session::Web(w) => {
                w.close();
                None
            }
        }
    }

    pub(super) fn stats(&self) -> MediaStats {
        match self {
            Session::Rtp(m) => m.stats(),
            Session::Web(w) => w.stats(),
        }
    }

    /// A browser session's next queued datagram.
    pub(super) fn next_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        match self {
            Session::Rtp(_) => None,
            Session::Web(w) => w.next_transmit(),
        }
    }
}
