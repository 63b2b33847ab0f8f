//! What the daemon tells observers (the control socket, tests): one
//! broadcast of events, each naming the call or room it concerns. The serde
//! form is the control protocol's: `{"event":"member_joined","call":...}`.

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::dtmf::Source;
use crate::metrics::Metrics;

/// Which way a call was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The caller dialled in.
    Inbound,
    /// Placed from the control socket.
    Outbound,
    /// A browser, from the join page (WebRTC).
    Web,
}

/// Which way a member's line quality went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QualityState {
    /// Its estimated MOS stayed below `rtp.quality_alarm_mos` for 10 s.
    Degraded,
    /// At or above it again.
    Recovered,
}

/// Something that happened to a call or a room.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An outbound call is ringing (180 or 183).
    CallRinging {
        call: String,
        room: String,
        to: String,
    },
    /// An outbound call was answered; it joins `room` next.
    CallAnswered {
        call: String,
        room: String,
        to: String,
    },
    /// An outbound call ended before it joined: its one terminal event.
    /// `status` is the SIP final response, if one came (486, 603, 408...);
    /// `reason` says what happened (`busy`, `declined`, `no_answer`,
    /// `unreachable`, `auth_failed`, `cancelled`, ...).
    DialFailed {
        call: String,
        room: String,
        to: String,
        status: Option<u16>,
        reason: String,
    },
    /// The trunk registration changed: `registering`, `registered`, `failed`.
    Registration {
        state: &'static str,
        detail: Option<String>,
    },
    /// A key press, once, whatever carried it.
    Digit {
        call: String,
        digit: char,
        source: Source,
    },
    /// A PIN matched no room (the PIN itself is never reported).
    PinRejected { call: String, failures: u32 },
    /// A caller was refused for too many wrong PINs; `key` is what was
    /// throttled (`caller:USER@IP` or `number:USER`).
    PinLockout { call: String, key: String },
    /// The first member arrived.
    RoomOpened { room: String },
    /// The last member left.
    RoomClosed { room: String },
    /// `lock`: the room takes no newcomers.
    RoomLocked { room: String },
    /// `unlock`: it takes them again.
    RoomUnlocked { room: String },
    /// A call left its room: `hangup`, `kicked`, `rtp_timeout`, `shutdown`, ...
    MemberLeft {
        call: String,
        room: String,
        reason: &'static str,
    },
    /// A member's line went bad, or came good again.
    MemberQuality {
        call: String,
        room: String,
        /// The estimated MOS that moved it (ITU-T G.107 E-model), 1.0–4.5.
        mos: f64,
        state: QualityState,
    },
    /// `drain` was asked: no new calls; the daemon exits after the last.
    Draining { calls: usize },
    /// The configuration file was read again and applied; the keys named
    /// take a restart and kept their running values.
    ConfigReloaded { restart_needed: Vec<&'static str> },
    /// A reload found the file unusable and changed nothing.
    ConfigReloadFailed { error: String },
    /// A call entered a room.
    MemberJoined {
        call: String,
        /// The call's SIP Call-ID, to find it in a SIP trace.
        sip_call_id: String,
        room: String,
        from: String,
        to: String,
        direction: Direction,
        /// True when a trusted source named the room (no PIN asked).
        direct: bool,
        /// Admitted with the room's moderator PIN (here, or on the node
        /// that bridged the call here).
        moderator: bool,
    },
    /// A member keyed a room control (`mute`, `count`, `lock`, ...);
    /// `allowed` is false for a moderator's key keyed by someone else.
    MemberKey {
        call: String,
        room: String,
        action: &'static str,
        allowed: bool,
    },
    /// A room's mix is being written to `path`.
    RecordingStarted { room: String, path: String },
    /// The recording ended (`stop_recording`, or the room closed); the WAV
    /// at `path` holds `secs` of audio.
    RecordingStopped {
        room: String,
        path: String,
        secs: f64,
    },
    /// The recording stopped on its own: the disk failed or was too slow.
    /// The WAV holds what was written up to then.
    RecordingFailed {
        room: String,
        path: String,
        secs: f64,
        reason: String,
    },
    /// The room ended with members in it, who were let go:
    /// `moderator_left` or `max_duration`.
    RoomEnded { room: String, reason: &'static str },
}

/// The daemon's event fan-out. Slow observers lose the oldest events
/// rather than slow the calls down; the metrics count every one.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
    metrics: Arc<Metrics>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(1024).0,
            metrics: Arc::default(),
        }
    }
}

impl Events {
    pub fn publish(&self, event: Event) {
        self.metrics.observe(&event);
        // No subscriber is not an error.
        self.tx.send(event).ok();
    }

    /// The counts every part of the daemon adds to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
