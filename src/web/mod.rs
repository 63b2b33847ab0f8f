//! The web endpoint: HTTP(S) pages for hosts to watch and steer rooms (a
//! login with the control token, then control over a WebSocket) and for
//! browsers to join a room (signalling over a WebSocket; the media is a
//! [`Joiner`]'s business).

mod join;
mod pages;
pub mod server;
mod session;
mod socket;

pub use server::{WebError, WebServer};

/// What the join page asks for.
pub struct JoinAsk {
    pub room: String,
    pub pin: String,
    /// The browser's SDP offer.
    pub offer: String,
    /// Where the page's connection comes from (the PIN lockout's caller key).
    pub peer: std::net::SocketAddr,
}

/// A browser member, admitted.
pub struct Joined {
    /// Our call id, as listed in `rooms` and events.
    pub call: String,
    /// The SDP answer for the browser.
    pub answer: String,
    /// Resolves with the reason when the member's call ends from our side.
    pub ended: tokio::sync::oneshot::Receiver<String>,
    /// Send (or drop) when the page goes: the member leaves.
    pub leave: tokio::sync::oneshot::Sender<()>,
}

/// Why a browser was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum JoinRefused {
    #[error("wrong PIN")]
    WrongPin,
    #[error("too many wrong PINs: try again later")]
    LockedOut,
    #[error("the room is full")]
    Full,
    #[error("the room is locked")]
    Locked,
    #[error("the offer was refused: {0}")]
    BadOffer(String),
    #[error("{0}")]
    Unavailable(String),
}

impl JoinRefused {
    /// The `code` the join page is told.
    pub fn code(&self) -> &'static str {
        match self {
            JoinRefused::WrongPin => "wrong_pin",
            JoinRefused::LockedOut => "locked_out",
            JoinRefused::Full => "room_full",
            JoinRefused::Locked => "room_locked",
            JoinRefused::BadOffer(_) => "bad_offer",
            JoinRefused::Unavailable(_) => "unavailable",
        }
    }
}

/// Admits browsers into rooms: the media side of the join page.
#[async_trait::async_trait]
pub trait Joiner: Send + Sync + 'static {
    async fn join(&self, ask: JoinAsk) -> Result<Joined, JoinRefused>;
}
