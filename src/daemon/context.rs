//! What every call shares: settings, prompts, ports, the room conference,
//! the registry, admission and the task tracker.

use std::net::IpAddr;
use std::sync::Mutex;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::call::admission::Admission;
use crate::call::session::{LocalMedia, SdpSession};
use crate::conference::Conference;
use crate::config::Settings;
use crate::dtmf::DtmfMode;
use crate::events::Events;
use crate::ivr::throttle::PinGuard;

use super::ports::PortPool;
use super::prompts::PromptBook;
use super::registry::CallRegistry;

/// What every call shares.
pub struct CallContext {
    pub settings: Settings,
    pub prompts: PromptBook,
    pub ports: PortPool,
    pub advertised: IpAddr,
    pub shutdown: CancellationToken,
    pub events: Events,
    pub pin_guard: Mutex<PinGuard>,
    pub conference: Conference,
    pub calls: CallRegistry,
    pub admission: Admission,
    /// Every call task, inbound and outbound; shutdown waits for them.
    pub tasks: TaskTracker,
}

impl CallContext {
    /// A new call's SDP session for media on `port`. Without an events
    /// receiver telephone-event stays out of the SDP, so the phone sends
    /// tones (or INFO) instead.
    pub(super) fn sdp_session(&self, port: u16) -> SdpSession {
        SdpSession::new(LocalMedia {
            codecs: self.settings.codecs.clone(),
            events: listens(self.settings.dtmf_mode).0,
            address: self.advertised,
            port,
            session_id: u64::from(rand::random::<u32>()),
        })
    }
}

/// Which DTMF receivers a mode turns on: (RFC 4733 events, in-band tones).
pub(super) fn listens(mode: DtmfMode) -> (bool, bool) {
    match mode {
        DtmfMode::Auto => (true, true),
        DtmfMode::Rfc4733 => (true, false),
        DtmfMode::Info => (false, false),
        DtmfMode::Inband => (false, true),
    }
}
