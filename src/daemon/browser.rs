//! Browser members from the join page: the PIN is checked behind the same
//! lockout as phone callers', the media is a WebRTC leg on a port of the
//! pool, and the member's task lives until the page goes, the member is
//! kicked or hung up, or its media stops.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO session

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn, Instrument};

use crate::call::admission::CallPermit;
use crate::call::webrtc::WebSession;
use crate::conference::{JoinError, JoinRequest, Leg, Notice};
use crate::events::Direction;
use crate::ivr::directory::Admission;
use crate::ivr::inbound::Verdict;
use crate::ivr::throttle;
use crate::web::{JoinAsk, JoinRefused, Joined, Joiner};

use super::context::CallContext;
use super::registry::{CallCommand, Listed};

/// The "number" every join-page attempt is counted against, as phone
/// callers' are against the number they dialled.
const JOIN_PAGE: &str = "web";

/// Admits browsers into rooms.
pub struct BrowserJoiner {
    ctx: Arc<CallContext>,
}

impl BrowserJoiner {
    pub fn new(ctx: Arc<CallContext>) -> BrowserJoiner {
        BrowserJoiner { ctx }
    }
}

#[async_trait::async_trait]
impl Joiner for BrowserJoiner {
    async fn join(&self, ask: JoinAsk) -> Result<Joined, JoinRefused> {
        let ctx = &self.ctx;
        // Browsers are not SIP sources: `sip.allow` does not apply, but
        // they count in `calls.max_calls` and a draining daemon takes none.
        let permit = ctx
            .admission
            .admit_outbound()
            .map_err(|r| JoinRefused::Unavailable(r.to_string()))?;
        let (listed, commands) = ctx.calls.register();
        let call = listed.id().to_string();
        let span = tracing::info_span!("call", call = %call);
        let settings = ctx.settings();
        let (caller, number) = throttle::keys("web", ask.peer.ip(), JOIN_PAGE);
        let links = settings.web.as_ref().is_some_and(|w| w.room_links);
        let direct = links && ask.pin.is_empty();
        let admission = {
            let _entered = span.enter();
            info!(peer = %ask.peer, room = %ask.room, direct, "browser asks to join");
            if direct {
                // A link names the room: nothing secret was guessed.
                let room = settings.directory.named(&ask.room);
                let room = room.ok_or(JoinRefused::WrongPin)?;
                Admission {
                    room,
                    moderator: false,
                }
            } else {
                match ctx.check_pin_for_room(&call, &ask.room, &ask.pin, &caller, &number) {
                    Verdict::Room(a) => a,
                    Verdict::Wrong => return Err(JoinRefused::WrongPin),
                    Verdict::LockedOut => return Err(JoinRefused::LockedOut),
                }
            }
        };
        let sockets = ctx
            .ports
            .bind(settings.sip_listen.ip())
            .map_err(|e| JoinRefused::Unavailable(format!("no media port: {e}")))?;
        let local = SocketAddr::new(ctx.advertised, sockets.port());
        let (session, answer) =
            WebSession::accept(&ask.offer, local, settings.rtp_timeout, Instant::now())
                .map_err(|e| JoinRefused::BadOffer(e.to_string()))?;
        let leg = ctx
            .conference
            .start_web_leg(sockets, session)
            .map_err(|e| JoinRefused::Unavailable(e.to_string()))?;
        let (notices_tx, notices) = mpsc::unbounded_channel();
        let room = admission.room;
        let joined = leg
            .join(JoinRequest {
                room: room.clone(),
                call: call.clone(),
                sip_call_id: String::new(),
                from: format!("web:{}", ask.peer.ip()),
                to: room.clone(),
                direction: Direction::Web,
                direct,
                moderator: admission.moderator,
                rules: settings.directory.rules(&room),
                name: None,
                notices: notices_tx,
            })
            .instrument(span.clone())
            .await;
        if let Err(e) = joined {
            leg.close("refused").await;
            return Err(match e {
                JoinError::Full => JoinRefused::Full,
                JoinError::Locked => JoinRefused::Locked,
                JoinError::Stopped => JoinRefused::Unavailable(e.to_string()),
            });
        }
        let (ended_tx, ended) = oneshot::channel();
        let (leave, left) = oneshot::channel();
        let member = Member {
            leg,
            _listed: listed,
            _permit: permit,
            commands,
            notices,
            left,
            ended: ended_tx,
        };
        ctx.tasks
            .spawn(member.run(ctx.clone()).instrument(span.clone()));
        Ok(Joined {
            call,
            answer,
            ended,
            leave,
        })
    }
}

/// A browser member in its room.
struct Member {
    leg: Leg,
    /// Keeps the member reachable by `hangup`.
    _listed: Listed,
    _permit: CallPermit,
    commands: mpsc::UnboundedReceiver<CallCommand>,
    notices: mpsc::UnboundedReceiver<Notice>,
    left: oneshot::Receiver<()>,
    ended: oneshot::Sender<String>,
}

impl Member {
    async fn run(mut self, ctx: Arc<CallContext>) {
        let started = Instant::now();
        let mut track = ctx.events.metrics().call_started(Direction::Web);
        track.joined();
        let reason = loop {
            tokio::select! {
                n = self.notices.recv() => match n {
                    Some(Notice::Kicked) => break "kicked",
                    Some(Notice::RoomEnded) => break "room_ended",
                    None => break "media_stopped",
                },
                c = self.commands.recv() => match c {
                    Some(CallCommand::Hangup) | None => break "hangup",
                    // Digits cannot be keyed into a browser's stream.
                    Some(CallCommand::Dtmf(_, reply)) => { reply.send(false).ok(); }
                    // Never bridged: nothing relays to it.
                    Some(CallCommand::Relay(_)) => {}
                },
                e = self.leg.events.recv() => match e {
                    Some(crate::call::media::MediaEvent::RtpTimeout) => break "rtp_timeout",
                    Some(_) => {}
                    None => break "media_stopped",
                },
                _ = &mut self.left => break "left",
                _ = ctx.shutdown.cancelled() => break "shutdown",
            }
        };
        let stats = self.leg.close(reason).await;
        track.ended(reason);
        if reason != "left" {
            self.ended.send(reason.to_owned()).ok();
        }
        if stats.received == 0 {
            warn!("no media came from the browser");
        }
        info!(
            reason,
            secs = started.elapsed().as_secs_f32(),
            rtp_sent = stats.sent,
            rtp_received = stats.received,
            "browser left"
        );
    }
}
