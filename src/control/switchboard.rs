//! What the control server may ask of the daemon, and the errors it gets.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use super::peers::Peers;
use crate::conference::{Control, RoomStatus};
use crate::events::Event;

/// `dial`: call `to` and bring it into `room` on answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRequest {
    pub room: String,
    /// A number (`+15551234`, dialled as `sip:NUMBER@<trunk>`) or a full `sip:` URI.
    pub to: String,
    /// The From user to present (default: `trunk.from_user`).
    pub from: Option<String>,
    /// How long to let it ring (default: `trunk.ring_timeout_secs`).
    pub timeout: Option<Duration>,
    /// Keys to send once the callee has answered (to join another bridge).
    pub dtmf: Option<String>,
}

/// Where `say` plays its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Room(String),
    Call(String),
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub version: &'static str,
    pub uptime_secs: u64,
    /// Calls in progress, inbound and outbound.
    pub calls: usize,
    pub rooms: usize,
    /// `disabled`, `registering`, `registered` or `failed`.
    pub registration: String,
    /// `drain` was asked: no new calls, exit after the last one.
    pub draining: bool,
}

/// `drain`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Draining {
    /// Calls still in progress; the daemon exits when none is left.
    pub calls: usize,
    /// At the latest this many seconds from the first `drain`, the rest are hung up.
    pub drain_secs: u64,
}

/// `reload`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reloaded {
    /// Keys whose new values were not applied: they take a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Why a command was refused. Each variant has a stable code for programs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A destination the dial rules refuse; `rule` names the rule.
    #[error("refused by {rule}: {detail}")]
    Refused { rule: &'static str, detail: String },
    /// The destination is not a number or a SIP URI.
    #[error("bad destination {0:?}")]
    BadDestination(String),
    /// An argument other than the destination is unusable.
    #[error("bad argument {field}: {detail}")]
    BadArgument { field: &'static str, detail: String },
    #[error("no such call {0:?}")]
    NoSuchCall(String),
    #[error("no such room {0:?}")]
    NoSuchRoom(String),
    /// Outbound calls need `trunk.proxy`.
    #[error("no trunk configured (trunk.proxy is empty)")]
    NoTrunk,
    /// Text to speech failed.
    #[error("speech synthesis failed: {0}")]
    Speech(String),
    /// A resource ran out (no free RTP port, the SIP stack refused).
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// `record` on a room already recorded, or `stop_recording` on one that is not.
    #[error("room {room:?} is {}", if *.recording { "already being recorded" } else { "not being recorded" })]
    Recording { room: String, recording: bool },
    /// The recording could not start (its file could not be made).
    #[error("recording failed: {0}")]
    RecordingFailed(String),
    /// The call cannot take digits now (not answered yet).
    #[error("call {0:?} cannot take digits now")]
    NotAnswered(String),
    /// `dial` into a room that `lock` closed.
    #[error("room {0:?} is locked")]
    RoomLocked(String),
    /// Draining for an upgrade: no new calls.
    #[error("draining: no new calls")]
    Draining,
    /// A reload found the configuration file unusable; nothing changed.
    #[error("configuration not reloaded: {0}")]
    BadConfig(String),
    /// This daemon cannot do it.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
}

impl CommandError {
    /// The stable code sent in error responses.
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Refused { .. } => "refused",
            CommandError::BadDestination(_) => "bad_destination",
            CommandError::BadArgument { .. } => "bad_argument",
            CommandError::NoSuchCall(_) => "no_such_call",
            CommandError::NoSuchRoom(_) => "no_such_room",
            CommandError::NoTrunk => "no_trunk",
            CommandError::Speech(_) => "speech_failed",
            CommandError::Unavailable(_) => "unavailable",
            CommandError::ShuttingDown => "shutting_down",
            CommandError::Draining => "draining",
            CommandError::RoomLocked(_) => "room_locked",
            CommandError::Recording {
                recording: true, ..
            } => "already_recording",
            CommandError::Recording {
                recording: false, ..
            } => "not_recording",
            CommandError::RecordingFailed(_) => "recording_failed",
            CommandError::NotAnswered(_) => "not_answered",
            CommandError::BadConfig(_) => "bad_config",
            CommandError::Unsupported(_) => "unsupported",
        }
    }
}

/// The daemon as the control server sees it.
#[async_trait::async_trait]
pub trait Switchboard: Send + Sync + 'static {
    /// Start an outbound call; returns its call id at once. Its progress and
    /// its one terminal event (`member_left` or `dial_failed`) follow as events.
    async fn dial(&self, req: DialRequest) -> Result<String, CommandError>;
    /// End a call: CANCEL while it rings, BYE once answered.
    async fn hangup(&self, call: &str) -> Result<(), CommandError>;
    async fn rooms(&self) -> Vec<RoomStatus>;
    /// Mute, unmute, deafen, undeafen or kick a member.
    async fn control(&self, call: &str, control: Control) -> Result<(), CommandError>;
    /// Speak `text` to a room or one call (rendered off the media path).
    async fn say(&self, target: Target, text: String) -> Result<(), CommandError>;
    async fn status(&self) -> Status;
    /// Close an open room to newcomers (`on`), or open it again.
    async fn lock(&self, room: &str, on: bool) -> Result<(), CommandError> {
        let _ = (room, on);
        Err(CommandError::Unsupported("lock"))
    }
    /// Key `digits` into a call.
    async fn dtmf(&self, call: &str, digits: &str) -> Result<(), CommandError> {
        let _ = (call, digits);
        Err(CommandError::Unsupported("dtmf"))
    }
    /// Start (`on`) or stop recording a room.
    async fn record(&self, room: &str, on: bool) -> Result<Option<String>, CommandError> {
        let _ = (room, on);
        Err(CommandError::Unsupported("record"))
    }
    /// Take no new calls; exit once the last call has ended.
    async fn drain(&self) -> Result<Draining, CommandError> {
        Err(CommandError::Unsupported("drain"))
    }
    /// Read the configuration file again and apply what can change live.
    async fn reload(&self) -> Result<Reloaded, CommandError> {
        Err(CommandError::Unsupported("reload"))
    }
    /// Every event from now on.
    fn subscribe(&self) -> broadcast::Receiver<Event>;
    /// The other nodes, in a cluster whose nodes can forward commands to
    /// each other; `None`: every command is answered from here alone.
    fn peers(&self) -> Option<Arc<dyn Peers>> {
        None
    }
}
