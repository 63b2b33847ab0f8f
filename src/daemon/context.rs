#![allow(clippy::disallowed_methods)] // an edge: the PIN lockout window runs on the clock

//! What every call shares: settings, prompts, ports, the room conference,
//! the registry, admission and the task tracker.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::call::admission::Admission;
use crate::call::session::{LocalMedia, SdpSession};
use crate::cluster::ticket::{self, TICKET_PARAM};
use crate::conference::Conference;
use crate::config::Settings;
use crate::dtmf::DtmfMode;
use crate::events::Event;
use crate::events::Events;
use crate::ivr::directory::{self, MODERATOR_HEADER};
use crate::ivr::inbound::{Entry, Verdict};
use crate::ivr::throttle::{self, PinGuard};
use crate::metrics::PinResult;
use crate::rtp::sdes::Policy;
use crate::rtp::srtp::MasterKey;
use crate::sip::call::OfferedCall;

use super::ports::PortPool;
use super::prompts::{PromptBook, Speaker};
use super::registry::CallRegistry;

/// A value a reload replaces whole; readers keep the one they took.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live(RwLock::new(Arc::new(value)))
    }

    pub fn get(&self) -> Arc<T> {
        // A poisoned lock only means a task panicked mid-swap; the value stands.
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(value);
    }
}

/// What every call shares.
pub struct CallContext {
    /// Swapped whole by a reload; a call reads what it needs when it needs it.
    pub settings: Live<Settings>,
    pub prompts: Live<PromptBook>,
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
    pub speaker: Speaker,
    /// Bridging to rooms elsewhere (the cluster's, `rooms.upstream`), once started.
    pub bridges: std::sync::OnceLock<super::bridge::Bridges>,
}

impl CallContext {
    /// The settings in force.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.get()
    }

    /// The prompts in force.
    pub fn prompts(&self) -> Arc<PromptBook> {
        self.prompts.get()
    }

    /// Put reloaded settings and prompts in force.
    pub(super) fn replace(&self, settings: Settings, prompts: PromptBook) {
        self.prompts.set(prompts);
        self.settings.set(settings);
    }

    /// A trusted source may name the room, and seat the call as one of its
    /// moderators; everyone else is asked for the PIN.
    pub(super) fn entry(&self, call: &OfferedCall) -> Entry {
        if let Some(entry) = self.ticketed(call) {
            return entry;
        }
        let named = call.header("X-Conference-Id");
        let moderator = call.header(MODERATOR_HEADER);
        let settings = self.settings();
        let dir = &settings.directory;
        let source = call.source.ip();
        let trusted = dir.trusts(source);
        if moderator.is_some() && !trusted {
            info!("{MODERATOR_HEADER} from an untrusted source ignored");
        }
        match dir.direct(source, call.request_user.as_deref(), named) {
            Some(room) => Entry::Direct(directory::Admission {
                room,
                moderator: dir.direct_moderator(source, moderator),
            }),
            None => {
                if named.is_some() && !trusted {
                    info!("X-Conference-Id from an untrusted source ignored");
                }
                Entry::Pin(self.settings().pin)
            }
        }
    }

    /// A call moved here with REFER by another node of the cluster carries
    /// a ticket (see [`crate::cluster::ticket`]) in its Request-URI: a good
    /// one seats it in the ticket's room, from any source (the ticket is
    /// the trust); a bad or expired one is logged and the PIN decides.
    fn ticketed(&self, call: &OfferedCall) -> Option<Entry> {
        let ticket = ticket::uri_param(&call.request_uri, TICKET_PARAM)
            .or_else(|| call.header(TICKET_PARAM).map(str::to_owned))?;
        let Some(key) = self.bridges.get().and_then(|b| b.ticket_key.as_ref()) else {
            info!("a ticket, but no cluster control token to check it with: ignored");
            return None;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match ticket::verify(&ticket, now, key) {
            Ok(room) => match self.settings().directory.named(&room) {
                Some(room) => {
                    info!(%room, "ticket accepted");
                    Some(Entry::Direct(directory::Admission {
                        room,
                        moderator: false,
                    }))
                }
                None => {
                    info!(%room, "ticket for a room that is not one here: ignored");
                    None
                }
            },
            Err(why) => {
                info!(%why, "ticket ignored");
                None
            }
        }
    }

    /// Look a PIN up behind the lockout: a locked-out caller is refused even
    /// with the right PIN, and a wrong PIN counts against caller and number.
    pub(super) fn check_pin(&self, call: &str, pin: &str, caller: &str, number: &str) -> Verdict {
        self.check(call, None, pin, caller, number)
    }

    /// [`check_pin`](Self::check_pin) for a caller who names the room too
    /// (the join page): a PIN of another room is a wrong PIN.
    pub(super) fn check_pin_for_room(
        &self,
        call: &str,
        room: &str,
        pin: &str,
        caller: &str,
        number: &str,
    ) -> Verdict {
        self.check(call, Some(room), pin, caller, number)
    }

    fn check(
        &self,
        call: &str,
        room: Option<&str>,
        pin: &str,
        caller: &str,
        number: &str,
    ) -> Verdict {
        let now = Instant::now();
        // A poisoned lock only means another call panicked mid-update; the
        // counts are still usable.
        let metrics = self.events.metrics();
        let mut guard = self.pin_guard.lock().unwrap_or_else(|e| e.into_inner());
        let locked = match guard.locked(caller, number, now) {
            Some(key) => Some(key),
            None => match self
                .settings()
                .directory
                .by_pin(pin)
                .filter(|a| room.is_none_or(|r| a.room == r))
            {
                Some(admission) => {
                    info!(room = %admission.room, "PIN accepted");
                    metrics.pin_checked(PinResult::Accepted);
                    return Verdict::Room(admission);
                }
                None => match guard.failed(caller, number, now) {
                    None => {
                        info!(pin = %throttle::redact(pin), "PIN rejected");
                        metrics.pin_checked(PinResult::Wrong);
                        return Verdict::Wrong;
                    }
                    locked => {
                        // A wrong PIN, and the one that locks the caller out.
                        metrics.pin_checked(PinResult::Wrong);
                        metrics.pin_locked_out();
                        drop(guard);
                        return self.locked_out(call, locked);
                    }
                },
            },
        };
        drop(guard);
        metrics.pin_checked(PinResult::LockedOut);
        self.locked_out(call, locked)
    }

    /// Refuse a caller or number locked out (now, or already) by `key`.
    fn locked_out(&self, call: &str, key: Option<String>) -> Verdict {
        if let Some(key) = key {
            warn!(%key, "PIN lockout");
            self.events.publish(Event::PinLockout {
                call: call.to_owned(),
                key,
            });
        }
        Verdict::LockedOut
    }

    /// Caller and number keys with wrong PINs still in their window.
    pub(super) fn pin_keys(&self) -> usize {
        self.pin_guard
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tracked()
    }

    /// Forget wrong PINs older than the window, now and then until the
    /// daemon stops: a key of a caller who never calls again goes too.
    pub(super) async fn sweep_pin_failures(&self) {
        let every = self
            .settings()
            .throttle
            .window
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.shutdown.cancelled() => return,
            }
            self.pin_guard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .expire(Instant::now());
        }
    }

    /// A new call's SDP session for media on `port`. Without an events
    /// receiver telephone-event stays out of the SDP, so the phone sends
    /// tones (or INFO) instead.
    /// `srtp`: the policy of the call's direction (`rtp.srtp` for calls
    /// that come in, `trunk.srtp` for those placed).
    pub(super) fn sdp_session(&self, port: u16, srtp: Policy) -> SdpSession {
        SdpSession::new(LocalMedia {
            codecs: self.settings().codecs.clone(),
            events: listens(self.settings().dtmf_mode).0,
            address: self.advertised,
            port,
            session_id: u64::from(rand::random::<u32>()),
            srtp,
            srtp_key: MasterKey::random(),
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

/// The user part of a SIP URI (`sip:alice@host` → `alice`), or "" if none.
pub(super) fn uri_user(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    rest.split_once('@').map_or("", |(user, _)| user)
}
