//! What goes into a call core and what comes out of it: the inputs the
//! driver feeds, the outputs it carries out, and how a call starts and ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dtmf::{DtmfMode, Source};
use crate::events::Event;
use crate::ivr::inbound::{Entry, Prompt, RoomRefusal, Timers, Verdict};
use crate::ivr::keypad::{KeyAction, KeyBindings};
use crate::sip::sdp::SdpError;

use super::session::MediaParams;

/// What the driver must do on the SIP side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipAction {
    /// 183 Session Progress with our SDP (early media).
    Progress(Vec<u8>),
    /// 180 Ringing.
    Ringing,
    /// 200 OK with our SDP.
    Answer(Vec<u8>),
    /// A final refusal of the INVITE (e.g. 503 while shutting down).
    Reject(u16),
    /// BYE the answered call.
    Bye,
    /// CANCEL our INVITE.
    Cancel,
    /// Key these digits as SIP INFO requests.
    Info(String),
}

/// Something to play to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clip {
    /// The early-media loop.
    EarlyMedia,
    Prompt(Prompt),
}

/// What the driver must do on the media leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaAction {
    /// Open the leg (an outbound call, once answered).
    Start(MediaParams),
    /// Play `clip`; its end comes back as [`Input::PlaybackDone`] with `id`
    /// unless `looped`.
    Play { clip: Clip, looped: bool, id: u64 },
    /// Stop what plays.
    Stop,
    /// The negotiated media changed (an answer, a re-INVITE, hold).
    Update(MediaParams),
    /// Keep what the caller says for `frames` frames (its name), for the
    /// room; the end comes back as [`Input::PlaybackDone`] with `id`.
    Capture { frames: u32, id: u64 },
}

/// What the driver must do about the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomAction {
    /// Join `room` with `media`; answer with [`Input::Joined`],
    /// [`Input::RoomRefused`] or [`Input::JoinStopped`].
    Join {
        room: String,
        moderator: bool,
        media: MediaParams,
    },
    /// A keypad action for the room to carry out for this member; the
    /// room answers [`KeyAction::Leave`] with [`Input::Left`].
    Key(KeyAction),
    /// Let the member out of the room (its call is ending); answered with [`Input::Left`].
    Leave(&'static str),
    /// Play a prompt to the member in its room.
    Say(Prompt),
    /// A key press for the room a bridge leads to: pass it to the bridge's
    /// far leg, whose far end's keypad acts on it (see [`Input::JoinedBridge`]).
    Relay(char),
}

/// How key presses go to the far end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitPath {
    /// As RFC 4733 events on the media, after `lead_frames` of audio.
    Rtp { lead_frames: u32 },
    /// As SIP INFO (`application/dtmf-relay`), one request per key: the
    /// call negotiated no telephone-event.
    Info,
}

/// One thing for the driver to carry out.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Sip(SipAction),
    Media(MediaAction),
    Room(RoomAction),
    /// Look the PIN up; answer with [`Input::PinVerdict`].
    CheckPin(String),
    /// Send key presses to the far end.
    SendDigits {
        digits: String,
        path: DigitPath,
    },
    /// Publish this event.
    Event(Event),
}

/// What happened to the call, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// Inbound: the ACK for our 200 OK, with its body (the answer after a late offer).
    Acked { body: &'a [u8] },
    /// Inbound: the caller cancelled before we answered (487 already sent).
    Cancelled,
    /// The far end hung up (its BYE already answered).
    Bye,
    /// The dialog ended some other way (no ACK, transport error).
    DialogEnded,
    /// Outbound: 180 or 183.
    Progress,
    /// Outbound: 200 OK with its SDP answer (the stack sent the ACK).
    Answered { sdp: &'a [u8] },
    /// Outbound: the INVITE ended without an answer.
    DialFailed { status: Option<u16> },
    /// The clip played with `id` reached its end.
    PlaybackDone(u64),
    /// A key press from the media leg (an RFC 4733 event or a tone).
    Digit {
        digit: char,
        source: Source,
        at: Instant,
    },
    /// No RTP for the configured time while not on hold.
    RtpTimeout,
    /// The call's media could not be set up (no media thread took it).
    MediaFailed,
    /// The answer to [`Output::CheckPin`].
    PinVerdict(Verdict),
    /// The room took the call.
    Joined,
    /// A bridge room took the call: the real room is at the far end of the
    /// bridge's other leg, so the member's key presses are for that room's
    /// keypad. They come out as [`RoomAction::Relay`], once each, instead of
    /// acting on the bridge room.
    JoinedBridge,
    /// The room refused the call: full or locked.
    RoomRefused(RoomRefusal),
    /// The room refused the call: the conference is stopping.
    JoinStopped,
    /// The room removed the call.
    Kicked,
    /// The room let the member go after its leave key.
    Left,
    /// The room ended with the member in it (its moderator left, its time ran out).
    RoomEnded,
    /// Hang up, asked from the control socket.
    Hangup,
    /// The daemon is stopping.
    Shutdown,
}

/// The answer to a re-INVITE or UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    /// SDP to send with a 200 (an answer, or our offer).
    pub sdp: Option<Vec<u8>>,
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    /// As events and logs name it (`hangup`, `no_answer`, `kicked`...).
    pub reason: &'static str,
    /// Whether the call had joined its room.
    pub joined: bool,
}

/// The call could not even start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offer refused: {0}")]
pub struct Refused(pub SdpError);

impl Refused {
    /// The status that rejects the INVITE.
    pub fn sip_status(&self) -> u16 {
        self.0.sip_status()
    }
}

/// An inbound call, as offered.
#[derive(Debug, Clone)]
pub struct InboundCall<'a> {
    /// Our call id, as text (for events).
    pub call: String,
    /// The SDP offer; empty for a late offer.
    pub offer: &'a [u8],
    pub timers: Timers,
    pub entry: Entry,
    pub dtmf: DtmfMode,
    /// Keypad controls once in the room.
    pub keys: Arc<KeyBindings>,
    /// End the call this long after it is answered.
    pub max_duration: Option<Duration>,
}

/// An outbound call, dialled with the offer `session` made.
#[derive(Debug, Clone)]
pub struct OutboundCall {
    pub call: String,
    pub room: String,
    pub to: String,
    pub ring_timeout: Duration,
    pub dtmf: DtmfMode,
    pub keys: Arc<KeyBindings>,
    /// Keys to send once the callee is in the room.
    pub key_in: Option<String>,
    pub max_duration: Option<Duration>,
}
