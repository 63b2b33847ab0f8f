//! Rooms that live elsewhere. A caller whose PIN names a room the
//! directory says another node holds is bridged there: this node, as a
//! B2BUA, dials `sip:room-ROOM@OWNER` with `X-Conference-Id: ROOM` (the
//! owner trusts us through `rooms.trusted`). With `rooms.upstream` every
//! admitted caller is bridged to that conference server instead. Either
//! way the caller and the leg dialled sit in a two-member bridge room
//! here: each hears the other, no announcements are played in it, and it
//! ends (so both calls end) when either side goes. The caller's key
//! presses are relayed to the leg dialled, which keys them to the far end
//! (its keypad acts on them in the real room), and a caller admitted here
//! as a moderator is announced as one with `X-Conference-Moderator: yes`.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the call core

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn, Instrument};

use crate::call::CallId;
use crate::cluster::ticket::{self, Key, TICKET_PARAM};
use crate::cluster::{Directory, Owner};
use crate::conference::Control;
use crate::config::Transport;
use crate::events::Event;
use crate::ivr::directory::{BRIDGE_PREFIX, MODERATOR_HEADER};
use crate::rtp::sdes::Policy;
use crate::sip::dial::DialSpec;
use crate::sip::ua::UserAgent;

use super::context::CallContext;
use super::driver::Party;
use super::outbound::{self, OutboundCall};

/// How long the owner has to answer the bridge's INVITE.
const RING: Duration = Duration::from_secs(10);

/// `cluster.refer`: how long the caller's side has to answer the REFER,
/// and then to report that its call to the room's node is answered (or to
/// hang up), before the caller is bridged after all.
pub(super) const REFER_ANSWER: Duration = Duration::from_secs(4);
pub(super) const MOVE_WAIT: Duration = Duration::from_secs(8);

/// Where a caller is seated here.
pub(super) struct Seat {
    /// The room, or the bridge room that leads to it.
    pub room: String,
    /// In a bridge room: the leg to the far end, which the caller's key
    /// presses are relayed to.
    pub far_leg: Option<CallId>,
}

impl Seat {
    fn here(room: String) -> Seat {
        Seat {
            room,
            far_leg: None,
        }
    }
}

/// A bridge placed: its room here and its leg to the far end.
struct Placed {
    room: String,
    leg: CallId,
}

/// What bridging needs: the directory (in a cluster), and the task that
/// dials the far ends.
pub struct Bridges {
    pub directory: Option<Arc<Directory>>,
    dialer: mpsc::UnboundedSender<Ask>,
    /// The key of the tickets that admit callers moved here with REFER
    /// (in a cluster whose nodes share a control token).
    pub ticket_key: Option<Key>,
    /// `cluster.refer`: callers are asked to move before being bridged.
    pub refer: bool,
}

/// A caller to bridge to `to`, and where to say the bridge room's name.
struct Ask {
    /// The room's node, or the upstream server's URI.
    to: Far,
    room: String,
    moderator: bool,
    party: Party,
    reply: oneshot::Sender<Result<Placed, String>>,
}

/// Where a bridge goes.
#[derive(Debug, Clone)]
enum Far {
    Node(SocketAddr),
    Upstream(String),
}

impl Bridges {
    /// Bridging, with its dialer task started; `directory` in a cluster.
    pub fn start(
        ctx: &Arc<CallContext>,
        directory: Option<Arc<Directory>>,
        ua: Arc<UserAgent>,
        ticket_key: Option<Key>,
    ) -> Bridges {
        let (dialer, mut asks) = mpsc::unbounded_channel::<Ask>();
        let refer = ctx.settings().cluster.as_ref().is_some_and(|c| c.refer);
        let ctx = ctx.clone();
        let node = directory.as_ref().map(|d| d.node());
        // The bridge legs are dialled from a task of their own: a call's
        // flow asks, so the call's future does not hold another call's.
        tokio::spawn(async move {
            while let Some(ask) = asks.recv().await {
                let placed = dial(
                    &ctx,
                    &ua,
                    node,
                    &ask.room,
                    ask.moderator,
                    &ask.to,
                    &ask.party,
                )
                .await;
                ask.reply.send(placed).ok();
            }
        });
        if refer && ticket_key.is_none() {
            warn!("cluster.refer needs the control token (control.tcp): callers are bridged");
        }
        Bridges {
            directory,
            dialer,
            ticket_key,
            refer,
        }
    }
}

/// With `cluster.refer`, where a caller for `room` is asked to move: the
/// room's URI on the node that holds it, with a ticket that admits the
/// caller there. `None`: the room is not elsewhere in the cluster, or the
/// caller is to be bridged (a moderator: the ticket does not carry that).
pub(super) async fn refer_target(
    ctx: &Arc<CallContext>,
    room: &str,
    moderator: bool,
) -> Option<String> {
    let bridges = ctx.bridges.get()?;
    if !bridges.refer || moderator || room.starts_with(BRIDGE_PREFIX) {
        return None;
    }
    if ctx.settings().directory.upstream.is_some() {
        return None;
    }
    let key = bridges.ticket_key.as_ref()?;
    let Owner::There(owner) = bridges.directory.as_ref()?.claim(room).await else {
        return None;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let ticket = ticket::sign(room, now + ticket::TICKET_LIFE_SECS, key);
    let target = format!(
        "sip:room-{}@{owner};{}={}",
        ticket::escape(room),
        TICKET_PARAM.to_ascii_lowercase(),
        ticket::escape(&ticket)
    );
    info!(%room, %owner, "asking the caller to move to the room's node");
    Some(target)
}

/// Where a caller for `room` goes: the room itself (here, or standalone),
/// or the bridge room that carries it to the room's node or the upstream
/// server (as a moderator there if `moderator`). `None`: the upstream
/// server could not be dialled.
pub(super) async fn route(
    ctx: &Arc<CallContext>,
    room: String,
    moderator: bool,
    party: &Party,
) -> Option<Seat> {
    let Some(bridges) = ctx.bridges.get() else {
        return Some(Seat::here(room));
    };
    // A bridge's own leg joins its bridge room here.
    if room.starts_with(BRIDGE_PREFIX) {
        return Some(Seat::here(room));
    }
    let upstream = ctx.settings().directory.upstream.clone();
    let to = match (upstream, &bridges.directory) {
        (Some(uri), _) => Far::Upstream(uri.replace("{room}", &room)),
        (None, Some(directory)) => match directory.claim(&room).await {
            Owner::Here | Owner::Standalone => return Some(Seat::here(room)),
            Owner::There(owner) => Far::Node(owner),
        },
        (None, None) => return Some(Seat::here(room)),
    };
    let (reply, placed) = oneshot::channel();
    let ask = Ask {
        to: to.clone(),
        room: room.clone(),
        moderator,
        party: party.clone(),
        reply,
    };
    let placed = match bridges.dialer.send(ask) {
        Ok(()) => placed
            .await
            .unwrap_or_else(|_| Err("the daemon is stopping".into())),
        Err(_) => Err("the daemon is stopping".into()),
    };
    match (placed, to) {
        (Ok(placed), _) => Some(Seat {
            room: placed.room,
            far_leg: Some(placed.leg),
        }),
        (Err(e), Far::Node(owner)) => {
            // Better a room here than no room.
            warn!(%room, %owner, error = %e, "bridge not placed: the room opens here");
            Some(Seat::here(room))
        }
        (Err(e), Far::Upstream(uri)) => {
            warn!(%room, %uri, error = %e, "upstream not dialled");
            None
        }
    }
}

/// Dial the far end for `party`'s call (a moderator of `room` if
/// `moderator`); returns the bridge room and the leg dialled.
async fn dial(
    ctx: &Arc<CallContext>,
    ua: &UserAgent,
    node: Option<SocketAddr>,
    room: &str,
    moderator: bool,
    far: &Far,
    party: &Party,
) -> Result<Placed, String> {
    let permit = ctx.admission.admit_outbound().map_err(|r| r.to_string())?;
    let bridge = format!("{BRIDGE_PREFIX}{}", party.call);
    let sockets = ctx
        .ports
        .bind(ctx.settings().sip_listen.ip())
        .map_err(|e| format!("no RTP port: {e}"))?;
    let mut session = ctx.sdp_session(sockets.port(), Policy::Off);
    let offer = session.offer();
    let (listed, commands) = ctx.calls.register();
    let leg = listed.id();
    let id = leg.to_string();
    let sip_call_id = super::switchboard::sip_call_id();
    let user = super::context::uri_user(&party.from);
    let user = if user.is_empty() { "bridge" } else { user };
    let node =
        node.unwrap_or_else(|| SocketAddr::new(ctx.advertised, ctx.settings().sip_listen.port()));
    let from = format!("sip:{user}@{node}");
    let (to, mut headers, signalling_ip) = match far {
        Far::Node(owner) => (
            format!("sip:room-{room}@{owner}"),
            vec![("X-Conference-Id".to_owned(), room.to_owned())],
            Some(owner.ip()),
        ),
        Far::Upstream(uri) => (uri.clone(), Vec::new(), super::switchboard::host_ip(uri)),
    };
    // The far end honours it only from a source it trusts.
    if moderator {
        headers.push((MODERATOR_HEADER.to_owned(), "yes".to_owned()));
    }
    let spec = DialSpec {
        call_id: sip_call_id.clone(),
        from: from.clone(),
        to: to.clone(),
        proxy: None,
        transport: Transport::Udp,
        credential: None,
        offer,
        headers,
    };
    let dialing = ua.dial(spec).await.map_err(|e| e.to_string())?;
    info!(%room, %to, bridge_call = %id, moderator, "bridging");
    let call = OutboundCall {
        call_id: id.clone(),
        sip_call_id,
        room: bridge.clone(),
        signalling_ip,
        from,
        to,
        ring_timeout: RING,
        sockets,
        session,
        dialing,
        key_in: None,
        commands,
    };
    let span = tracing::info_span!("call", call = %id);
    let task = ctx.clone();
    let run = outbound::run(call, task.clone());
    let caller = party.call.clone();
    ctx.tasks.spawn(
        async move {
            let _listed = listed;
            let _permit = permit;
            let mut events = task.events.subscribe();
            let failed = watch_dial(&mut events, &id);
            tokio::pin!(failed);
            tokio::select! {
                _ = run => {}
                status = &mut failed => {
                    // The far end never took the bridge: the caller, alone
                    // in the bridge room, is let go.
                    warn!(?status, "bridge refused by the far end");
                    task.conference.control(&caller, Control::Kick).await;
                }
            }
        }
        .instrument(span),
    );
    Ok(Placed { room: bridge, leg })
}

/// Resolves when the dial `call` fails (never, once it is answered).
async fn watch_dial(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    call: &str,
) -> Option<u16> {
    loop {
        match events.recv().await {
            Ok(Event::DialFailed {
                call: c, status, ..
            }) if c == call => return status,
            Ok(Event::CallAnswered { call: c, .. }) if c == call => {
                return std::future::pending().await
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                return std::future::pending().await
            }
            _ => {}
        }
    }
}

/// Tell the directory which rooms open and close here (bridge rooms are
/// not rooms of the cluster), until the daemon stops.
pub(super) async fn follow_rooms(ctx: Arc<CallContext>, directory: Arc<Directory>) {
    let mut events = ctx.events.subscribe();
    loop {
        let event = tokio::select! {
            e = events.recv() => e,
            _ = ctx.shutdown.cancelled() => return,
        };
        match event {
            Ok(Event::RoomOpened { room }) if !room.starts_with(BRIDGE_PREFIX) => {
                directory.room_opened(&room)
            }
            Ok(Event::RoomClosed { room }) if !room.starts_with(BRIDGE_PREFIX) => {
                directory.room_closed(&room)
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            _ => {}
        }
    }
}
