//! What the daemon tells observers (tests now, the control socket later):
//! one broadcast of events, each naming the call it concerns.

use tokio::sync::broadcast;

use crate::dtmf::Source;

/// Something that happened to a call or a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
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
    /// A call left its room: `hangup`, `kicked`, `rtp_timeout`, `shutdown`, ...
    MemberLeft {
        call: String,
        room: String,
        reason: &'static str,
    },
    /// A call entered a room.
    MemberJoined {
        call: String,
        room: String,
        from: String,
        /// True when a trusted source named the room (no PIN asked).
        direct: bool,
    },
}

/// The daemon's event fan-out. Slow observers lose the oldest events
/// rather than slow the calls down.
#[derive(Debug, Clone)]
pub struct Events {
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(1024).0,
        }
    }
}

impl Events {
    pub fn publish(&self, event: Event) {
        // No subscriber is not an error.
        self.tx.send(event).ok();
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
