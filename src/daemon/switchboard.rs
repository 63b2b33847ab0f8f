//! The daemon behind the control socket: dials, hang-ups, member controls,
//! speech and status, checked against the dial rules before any INVITE.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the dial rules

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

use crate::call::admission::Refusal;
use crate::conference::{Audience, Control, Limits, RecordError, RoomStatus};
use crate::config::Config;
use crate::control::{
    CommandError, DialRequest, Draining, Peers, Reloaded, Status, Switchboard, Target,
};
use crate::events::Event;
use crate::ivr::dial_policy::{destination, DestinationError, DialPolicy};
use crate::sip::dial::{DialError, DialSpec};
use crate::sip::ua::UserAgent;

use super::context::CallContext;
use super::outbound::{self, OutboundCall};
use super::prompts::{PromptBook, Speaker};
use super::registry::CallCommand;
use crate::call::CallId;

/// Longest text `say` renders.
const MAX_SAY_CHARS: usize = 2000;
/// Longest ring timeout a dial may ask for.
const MAX_RING: Duration = crate::control::protocol::MAX_DIAL_TIMEOUT;

/// What registration with the trunk looks like now.
pub type RegistrationState = Arc<Mutex<&'static str>>;

pub struct Board {
    pub ctx: Arc<CallContext>,
    pub ua: Arc<UserAgent>,
    pub policy: Arc<Mutex<DialPolicy>>,
    pub started: Instant,
    pub registration: RegistrationState,
    /// Cancelled when a drain is over: the last call ended, or time ran out.
    pub drained: CancellationToken,
    /// One reload at a time.
    pub reloading: tokio::sync::Mutex<()>,
    /// The other nodes, in a cluster whose nodes announce their control.
    pub peers: Option<Arc<dyn Peers>>,
}

/// How often a drain looks for the last call to end.
const DRAIN_POLL: Duration = Duration::from_millis(200);

impl Board {
    /// Load the configuration again, render its prompts, and put it in force.
    pub async fn reload(&self) -> Result<Reloaded, CommandError> {
        let _one = self.reloading.lock().await;
        let ctx = &self.ctx;
        let old = ctx.settings();
        let current = old.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let origin = &current.origin;
            let new = Config::load(origin.path.as_deref(), &origin.overrides)
                .map_err(|e| e.to_string())?;
            let (new, restart) = current.reloaded(new);
            let prompts = PromptBook::prepare(&new).map_err(|e| format!("prompts: {e}"))?;
            Ok::<_, String>((new, restart, prompts))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        let (new, restart_needed, prompts) = match loaded {
            Ok(l) => l,
            Err(error) => {
                warn!(%error, "configuration not reloaded");
                ctx.events.publish(Event::ConfigReloadFailed {
                    error: error.clone(),
                });
                return Err(CommandError::BadConfig(error));
            }
        };
        ctx.admission.set_rules(new.admission.clone());
        let t = &new.trunk;
        lock(&self.policy).set_rules(t.allow.clone(), t.max_outbound, t.dials_per_minute);
        let th = new.throttle;
        lock(&ctx.pin_guard).set_rules(th.caller_failures, th.number_failures, th.window);
        ctx.conference
            .update(
                prompts.announcements(&new),
                Limits {
                    max_members: new.max_members,
                },
            )
            .await;
        ctx.replace(new, prompts);
        info!(restart_needed = ?restart_needed, "configuration reloaded");
        ctx.events.publish(Event::ConfigReloaded {
            restart_needed: restart_needed.clone(),
        });
        Ok(Reloaded { restart_needed })
    }
}

/// Room ids and From users: letters, digits, `_`, `-`, `.`, `+`.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a task panicked mid-update; the value is usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host of `sip:user@host:port;params` or `host:port` when it is an IP
/// literal (`[v6]` included).
pub(super) fn host_ip(target: &str) -> Option<std::net::IpAddr> {
    let rest = target
        .strip_prefix("sips:")
        .or_else(|| target.strip_prefix("sip:"))
        .unwrap_or(target);
    let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let host = host.split([';', '>', '?']).next().unwrap_or(host);
    if let Some(v6) = host.strip_prefix('[') {
        return v6.split(']').next()?.parse().ok();
    }
    host.split(':').next()?.parse().ok()
}

/// A fresh SIP Call-ID for an INVITE of ours.
pub(super) fn sip_call_id() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[async_trait::async_trait]
impl Switchboard for Board {
    async fn dial(&self, req: DialRequest) -> Result<String, CommandError> {
        let ctx = &self.ctx;
        let settings = ctx.settings();
        let trunk = &settings.trunk;
        if ctx.shutdown.is_cancelled() {
            return Err(CommandError::ShuttingDown);
        }
        if ctx.admission.draining() {
            return Err(CommandError::Draining);
        }
        if !plain(&req.room) {
            return Err(CommandError::BadArgument {
                field: "room",
                detail: "use 1-64 letters, digits, '_', '-', '.', '+'".into(),
            });
        }
        // Refused now rather than after the far end has answered; a lock
        // that comes while it rings ends it with `room_locked`.
        let rooms = ctx.conference.rooms().await;
        if rooms.iter().any(|r| r.room == req.room && r.locked) {
            return Err(CommandError::RoomLocked(req.room));
        }
        let ring_timeout = match req.timeout {
            None => trunk.ring_timeout,
            Some(t) if !t.is_zero() && t <= MAX_RING => t,
            Some(_) => {
                return Err(CommandError::BadArgument {
                    field: "timeout",
                    detail: "must be 1-600 seconds".into(),
                })
            }
        };
        let from_user = req.from.clone().unwrap_or_else(|| trunk.from_user.clone());
        if !plain(&from_user) {
            return Err(CommandError::BadArgument {
                field: "from",
                detail: "use 1-64 letters, digits, '_', '-', '.', '+'".into(),
            });
        }
        let dest = destination(&req.to, trunk.proxy.as_deref()).map_err(|e| match e {
            DestinationError::Malformed(_) => CommandError::BadDestination(req.to.clone()),
            DestinationError::NoTrunk => CommandError::NoTrunk,
        })?;
        let is_number = !req.to.trim().to_ascii_lowercase().starts_with("sip");
        lock(&self.policy)
            .admit(&dest, Instant::now())
            .map_err(|r| CommandError::Refused {
                rule: r.rule(),
                detail: r.to_string(),
            })?;
        let release = || lock(&self.policy).finished();
        let permit = ctx.admission.admit_outbound().map_err(|r| {
            release();
            match r {
                Refusal::Draining => CommandError::Draining,
                _ => CommandError::Refused {
                    rule: "calls.max_calls",
                    detail: r.to_string(),
                },
            }
        })?;

        let sockets = match ctx.ports.bind(ctx.settings().sip_listen.ip()) {
            Ok(s) => s,
            Err(e) => {
                release();
                return Err(CommandError::Unavailable(format!("no RTP port: {e}")));
            }
        };
        let port = sockets.port();
        let mut session = ctx.sdp_session(port, trunk.srtp);
        let offer = session.offer();
        let domain = match (trunk.from_domain.as_str(), &trunk.proxy) {
            ("", Some(proxy)) => proxy.split(':').next().unwrap_or(proxy).to_owned(),
            ("", None) => ctx.advertised.to_string(),
            (d, _) => d.to_owned(),
        };
        let (listed, commands) = ctx.calls.register();
        let id = listed.id().to_string();
        let sip_call_id = sip_call_id();
        let from = format!("sip:{from_user}@{domain}");
        let spec = DialSpec {
            call_id: sip_call_id.clone(),
            from: from.clone(),
            to: dest.uri.clone(),
            proxy: trunk.proxy.clone().filter(|_| is_number),
            transport: trunk.transport,
            credential: (!trunk.username.is_empty())
                .then(|| (trunk.username.clone(), trunk.password.clone())),
            offer,
            headers: Vec::new(),
        };
        let dialing = match self.ua.dial(spec).await {
            Ok(d) => d,
            Err(e) => {
                release();
                return Err(match e {
                    DialError::BadUri(_) => CommandError::BadDestination(req.to),
                    other => CommandError::Unavailable(other.to_string()),
                });
            }
        };
        info!(call = %id, room = %req.room, to = %dest.uri, "dialling");
        let via = match (&trunk.proxy, is_number) {
            (Some(proxy), true) => proxy.as_str(),
            _ => dest.uri.as_str(),
        };
        let call = OutboundCall {
            call_id: id.clone(),
            sip_call_id,
            room: req.room,
            signalling_ip: host_ip(via),
            from,
            to: dest.uri,
            ring_timeout,
            sockets,
            session,
            dialing,
            key_in: req.dtmf,
            commands,
        };
        let ctx = ctx.clone();
        let policy = self.policy.clone();
        let span = tracing::info_span!("call", call = %id);
        self.ctx.tasks.spawn(
            async move {
                outbound::run(call, ctx).await;
                drop((listed, permit));
                lock(&policy).finished();
            }
            .instrument(span),
        );
        Ok(id)
    }

    async fn hangup(&self, call: &str) -> Result<(), CommandError> {
        let sent = call
            .parse::<CallId>()
            .is_ok_and(|id| self.ctx.calls.send(id, CallCommand::Hangup));
        if sent {
            Ok(())
        } else {
            Err(CommandError::NoSuchCall(call.to_owned()))
        }
    }

    async fn rooms(&self) -> Vec<RoomStatus> {
        self.ctx.conference.rooms().await
    }

    async fn record(&self, room: &str, on: bool) -> Result<Option<String>, CommandError> {
        let conference = &self.ctx.conference;
        let done = match on {
            true => {
                conference
                    .record(room, &self.ctx.settings().recordings_dir)
                    .await
            }
            false => conference.stop_recording(room).await,
        };
        match done {
            Ok(path) => Ok(Some(path.display().to_string())),
            Err(RecordError::NoSuchRoom) => Err(CommandError::NoSuchRoom(room.to_owned())),
            Err(RecordError::AlreadyRecording | RecordError::NotRecording) => {
                Err(CommandError::Recording {
                    room: room.to_owned(),
                    recording: on,
                })
            }
            Err(RecordError::Failed(e)) => Err(CommandError::RecordingFailed(e)),
        }
    }

    async fn dtmf(&self, call: &str, digits: &str) -> Result<(), CommandError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = call.parse::<CallId>().is_ok_and(|id| {
            self.ctx
                .calls
                .send(id, CallCommand::Dtmf(digits.to_owned(), tx))
        });
        if !sent {
            return Err(CommandError::NoSuchCall(call.to_owned()));
        }
        match rx.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(CommandError::NotAnswered(call.to_owned())),
            // The call ended meanwhile.
            Err(_) => Err(CommandError::NoSuchCall(call.to_owned())),
        }
    }

    async fn control(&self, call: &str, control: Control) -> Result<(), CommandError> {
        if self.ctx.conference.control(call, control).await {
            Ok(())
        } else {
            Err(CommandError::NoSuchCall(call.to_owned()))
        }
    }

    async fn say(&self, target: Target, text: String) -> Result<(), CommandError> {
        if text.trim().is_empty() || text.chars().count() > MAX_SAY_CHARS {
            return Err(CommandError::BadArgument {
                field: "text",
                detail: format!("must be 1-{MAX_SAY_CHARS} characters"),
            });
        }
        let rooms = self.ctx.conference.rooms().await;
        let known = match &target {
            Target::Room(r) => rooms.iter().any(|x| &x.room == r),
            Target::Call(c) => rooms.iter().flat_map(|r| &r.members).any(|m| &m.call == c),
        };
        let missing = || match &target {
            Target::Room(r) => CommandError::NoSuchRoom(r.clone()),
            Target::Call(c) => CommandError::NoSuchCall(c.clone()),
        };
        if !known {
            return Err(missing());
        }
        let clip = Speaker::speak(&self.ctx.settings(), text)
            .await
            .map_err(CommandError::Speech)?;
        let audience = match &target {
            Target::Room(r) => Audience::Room(r.clone()),
            Target::Call(c) => Audience::Call(c.clone()),
        };
        if self.ctx.conference.say(audience, clip).await {
            Ok(())
        } else {
            Err(missing())
        }
    }

    async fn lock(&self, room: &str, on: bool) -> Result<(), CommandError> {
        if self.ctx.conference.lock(room, on).await {
            Ok(())
        } else {
            Err(CommandError::NoSuchRoom(room.to_owned()))
        }
    }

    async fn drain(&self) -> Result<Draining, CommandError> {
        let ctx = &self.ctx;
        let limit = ctx.settings().drain;
        let calls = ctx.admission.calls();
        if ctx.admission.start_draining() {
            info!(
                calls,
                drain_secs = limit.as_secs(),
                "draining: no new calls; exiting after the last one"
            );
            ctx.events.publish(Event::Draining { calls });
            let (ctx, drained) = (ctx.clone(), self.drained.clone());
            let by = Instant::now() + limit;
            tokio::spawn(async move {
                loop {
                    let left = ctx.admission.calls();
                    if left == 0 {
                        info!("drained: the last call has ended");
                        break;
                    }
                    if Instant::now() >= by {
                        warn!(calls = left, "drain time is up: hanging up the rest");
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(DRAIN_POLL) => {}
                        _ = ctx.shutdown.cancelled() => return,
                    }
                }
                drained.cancel();
            });
        }
        Ok(Draining {
            calls,
            drain_secs: limit.as_secs(),
        })
    }

    async fn reload(&self) -> Result<Reloaded, CommandError> {
        Board::reload(self).await
    }

    async fn status(&self) -> Status {
        Status {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: self.started.elapsed().as_secs(),
            calls: self.ctx.calls.len(),
            rooms: self.ctx.conference.rooms().await.len(),
            registration: (*lock(&self.registration)).to_owned(),
            draining: self.ctx.admission.draining(),
        }
    }

    fn peers(&self) -> Option<Arc<dyn Peers>> {
        self.peers.clone()
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.ctx.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signalling_host_is_read_when_it_is_an_ip() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().ok();
        assert_eq!(
            host_ip("sip:bob@192.0.2.7:5070;transport=udp"),
            ip("192.0.2.7")
        );
        assert_eq!(host_ip("198.51.100.1:5060"), ip("198.51.100.1"));
        assert_eq!(host_ip("sip:+1555@[2001:db8::1]:5060"), ip("2001:db8::1"));
        assert_eq!(host_ip("sip:bob@trunk.example.com"), None);
    }
}
