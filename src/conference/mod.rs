//! Conference rooms: one task owns the [`Mixer`], ticks it every 20 ms on a
//! deadline clock, and sends each member's frame on that member's RTP
//! socket. Call tasks join and leave through a [`Conference`] handle; their
//! media legs forward received audio over a bounded channel.
//!
//! The task runs on a thread of its own (`confgate-mixer`), not among the
//! runtime's workers: thousands of media legs waking on every packet would
//! otherwise queue the tick behind them and make it late.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the mixer

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::daemon::RtpSocket;
use crate::events::{Direction, Event, Events, QualityState};
use crate::media::g711::Codec;
use crate::media::mixer::{MemberId, Mixer, RoomId};
use crate::media::player::FRAME;
use crate::rtp::pacer::Pacer;
use crate::rtp::packet::RtpSender;

/// A member, as the rest of the daemon names it (never reused).
pub type MemberKey = u64;

/// One received audio frame for the mixer.
#[derive(Clone, Copy)]
pub struct MediaIn {
    pub member: MemberKey,
    pub ts: u32,
    pub len: u16,
    pub payload: [u8; FRAME],
    pub at: Instant,
}

/// What the conference tells a member's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Kicked,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the room is full")]
    Full,
    #[error("the conference is stopping")]
    Stopped,
}

/// What a call brings to a room.
pub struct JoinRequest {
    pub room: String,
    /// Our call id, as text.
    pub call: String,
    /// The caller's SIP Call-ID (shown, never used to find the call).
    pub sip_call_id: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    /// A trusted source named the room (no PIN).
    pub direct: bool,
    pub codec: Codec,
    pub payload_type: u8,
    pub socket: Arc<RtpSocket>,
    pub dest: Option<SocketAddr>,
    /// Shared with the call's media leg, so sequence numbers and timestamps
    /// run on across the hand-over.
    pub rtp: Arc<Mutex<RtpSender>>,
    pub notices: mpsc::UnboundedSender<Notice>,
}

/// A member as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberStatus {
    pub call: String,
    pub sip_call_id: String,
    pub direction: Direction,
    pub from: String,
    pub to: String,
    pub codec: Codec,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub held: bool,
    pub lost: u64,
    pub late: u64,
    pub jitter_ms: f32,
    /// From the member's RTCP, once it has reported.
    pub quality: Quality,
}

/// A member's line as its RTCP shows it; each figure once known.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quality {
    /// Round-trip time, ms.
    pub rtt_ms: Option<f64>,
    /// Share of our packets the far end lost in its last report, 0.0–1.0.
    pub remote_lost: Option<f64>,
    /// Jitter of our stream as the far end measures it, ms.
    pub remote_jitter_ms: Option<f64>,
    /// Estimated MOS (ITU-T G.107 E-model) of the worse direction.
    pub mos: Option<f64>,
}

/// A room as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomStatus {
    pub room: String,
    pub members: Vec<MemberStatus>,
}

/// Member controls by call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Mute(bool),
    Deaf(bool),
    Kick,
}

enum Command {
    Join(
        Box<JoinRequest>,
        oneshot::Sender<Result<MemberKey, JoinError>>,
    ),
    Leave(MemberKey, &'static str),
    Dest(MemberKey, SocketAddr),
    Hold(MemberKey, bool),
    Quality(MemberKey, Quality, Option<QualityState>),
    Control(String, Control, oneshot::Sender<bool>),
    Say(Audience, Arc<[i16]>, oneshot::Sender<bool>),
    List(oneshot::Sender<Vec<RoomStatus>>),
}

/// Who hears a clip played with [`Conference::say`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every member of the room.
    Room(String),
    /// The member that is this call.
    Call(String),
}

/// The clips the conference plays.
#[derive(Clone)]
pub struct Announcements {
    pub joined: Arc<[i16]>,
    pub only_participant: Arc<[i16]>,
    /// Played to the others on a join and a leave; `None`: announce nothing.
    pub join_tone: Option<Arc<[i16]>>,
    pub leave_tone: Option<Arc<[i16]>>,
}

/// Conference limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_members: usize,
}

/// Counters of the conference task.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConferenceStats {
    pub ticks: u64,
    pub late_ticks: u64,
    pub media_dropped: u64,
    pub sent: u64,
    /// Members seated now, in all rooms.
    pub members: usize,
    /// Rooms open now.
    pub rooms: usize,
}

/// The handle call tasks use.
#[derive(Clone)]
pub struct Conference {
    commands: mpsc::UnboundedSender<Command>,
    media: mpsc::Sender<MediaIn>,
    stats: Arc<Mutex<ConferenceStats>>,
}

/// Frames waiting for the mixer; beyond this a burst is dropped.
const MEDIA_QUEUE: usize = 16 * 1024;

struct Seat {
    id: MemberId,
    room: String,
    call: String,
    sip_call_id: String,
    from: String,
    to: String,
    direction: Direction,
    socket: Arc<RtpSocket>,
    dest: Option<SocketAddr>,
    payload_type: u8,
    rtp: Arc<Mutex<RtpSender>>,
    notices: mpsc::UnboundedSender<Notice>,
    quality: Quality,
}

struct Task {
    mixer: Mixer,
    rooms: HashMap<String, RoomId>,
    seats: HashMap<MemberKey, Seat>,
    next_key: MemberKey,
    events: Events,
    clips: Announcements,
    limits: Limits,
    packet: Vec<u8>,
}

impl Conference {
    /// Start the conference task; it ends when `shutdown` is cancelled.
    pub fn start(
        clips: Announcements,
        limits: Limits,
        events: Events,
        shutdown: CancellationToken,
    ) -> Conference {
        let (commands, cmd_rx) = mpsc::unbounded_channel();
        let (media, media_rx) = mpsc::channel(MEDIA_QUEUE);
        let stats = Arc::new(Mutex::new(ConferenceStats::default()));
        let task = Task {
            mixer: Mixer::new(),
            rooms: HashMap::new(),
            seats: HashMap::new(),
            next_key: 1,
            events,
            clips,
            limits,
            packet: Vec::with_capacity(12 + FRAME),
        };
        let task_stats = stats.clone();
        let spawned = std::thread::Builder::new()
            .name("confgate-mixer".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt.block_on(task.run(cmd_rx, media_rx, task_stats, shutdown)),
                    Err(e) => warn!(error = %e, "conference runtime did not start"),
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "conference thread did not start");
        }
        Conference {
            commands,
            media,
            stats,
        }
    }

    pub async fn join(&self, req: JoinRequest) -> Result<MemberKey, JoinError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Join(Box::new(req), tx))
            .map_err(|_| JoinError::Stopped)?;
        rx.await.unwrap_or(Err(JoinError::Stopped))
    }

    pub fn leave(&self, member: MemberKey, reason: &'static str) {
        self.commands.send(Command::Leave(member, reason)).ok();
    }

    /// Where the member's packets come from (symmetric RTP).
    pub fn set_dest(&self, member: MemberKey, dest: SocketAddr) {
        self.commands.send(Command::Dest(member, dest)).ok();
    }

    pub fn set_held(&self, member: MemberKey, held: bool) {
        self.commands.send(Command::Hold(member, held)).ok();
    }

    /// The member's latest line quality; `change` when its alarm moved.
    pub fn set_quality(&self, member: MemberKey, quality: Quality, change: Option<QualityState>) {
        self.commands
            .send(Command::Quality(member, quality, change))
            .ok();
    }

    /// Forward a received frame; a full queue drops it (counted).
    pub fn media(&self, frame: MediaIn) {
        if self.media.try_send(frame).is_err() {
            if let Ok(mut s) = self.stats.lock() {
                s.media_dropped += 1;
            }
        }
    }

    /// Mute, deafen or kick the member that is call `call`; false if no such member.
    pub async fn control(&self, call: &str, control: Control) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Control(call.to_owned(), control, tx))
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Play `clip` to a room or one member; false if there is no such room or member.
    pub async fn say(&self, audience: Audience, clip: Arc<[i16]>) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::Say(audience, clip, tx))
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Every open room and its members.
    pub async fn rooms(&self) -> Vec<RoomStatus> {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::List(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    pub fn stats(&self) -> ConferenceStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }
}

impl Task {
    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut media: mpsc::Receiver<MediaIn>,
        stats: Arc<Mutex<ConferenceStats>>,
        shutdown: CancellationToken,
    ) {
        let mut pacer = Pacer::new(Instant::now(), Duration::from_millis(20));
        let mut local = ConferenceStats::default();
        let mut batch = Vec::with_capacity(256);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(pacer.next_deadline().into()) => {
                    let due = pacer.poll(Instant::now());
                    local.late_ticks += due.skipped;
                    for _ in 0..due.frames {
                        self.mixer.tick();
                        local.ticks += 1;
                        local.sent += self.send_all();
                    }
                    if let Ok(mut s) = stats.lock() {
                        s.ticks = local.ticks;
                        s.late_ticks = local.late_ticks;
                        s.sent = local.sent;
                    }
                }
                cmd = commands.recv() => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        if let Ok(mut s) = stats.lock() {
                            s.members = self.seats.len();
                            s.rooms = self.rooms.len();
                        }
                    }
                    None => break,
                },
                n = media.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    for m in batch.drain(..) {
                        if let Some(seat) = self.seats.get(&m.member) {
                            self.mixer.push(seat.id, m.ts, &m.payload[..usize::from(m.len)], m.at);
                        }
                    }
                }
            }
        }
    }

    /// Send this tick's frame to every member; returns how many went out.
    fn send_all(&mut self) -> u64 {
        let mut sent = 0;
        for seat in self.seats.values() {
            // A poisoned lock only means a leg panicked; its counters are fine.
            let mut rtp = seat.rtp.lock().unwrap_or_else(|e| e.into_inner());
            match (self.mixer.output(seat.id), seat.dest) {
                (Some(payload), Some(dest)) => {
                    rtp.packetize(seat.payload_type, payload, FRAME as u32, &mut self.packet);
                    drop(rtp);
                    if seat.socket.try_send_to(&self.packet, dest).is_ok() {
                        sent += 1;
                    }
                }
                _ => rtp.skip(FRAME as u32),
            }
        }
        sent
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join(req, reply) => {
                reply.send(self.join(*req)).ok();
            }
            Command::Leave(key, reason) => self.leave(key, reason),
            Command::Dest(key, dest) => {
                if let Some(seat) = self.seats.get_mut(&key) {
                    seat.dest = Some(dest);
                }
            }
            Command::Hold(key, held) => {
                if let Some(seat) = self.seats.get(&key) {
                    self.mixer.set_held(seat.id, held);
                }
            }
            Command::Quality(key, quality, change) => {
                let Some(seat) = self.seats.get_mut(&key) else {
                    return;
                };
                seat.quality = quality;
                if let (Some(state), Some(mos)) = (change, quality.mos) {
                    info!(room = %seat.room, call = %seat.call, mos = format!("{mos:.2}"), ?state, "member quality");
                    self.events.publish(Event::MemberQuality {
                        call: seat.call.clone(),
                        room: seat.room.clone(),
                        mos: (mos * 100.0).round() / 100.0,
                        state,
                    });
                }
            }
            Command::Control(call, control, reply) => {
                let found = self.seats.values().find(|s| s.call == call);
                let ok = match (found, control) {
                    (Some(s), Control::Mute(on)) => {
                        self.mixer.set_muted(s.id, on);
                        true
                    }
                    (Some(s), Control::Deaf(on)) => {
                        self.mixer.set_deaf(s.id, on);
                        true
                    }
                    (Some(s), Control::Kick) => {
                        s.notices.send(Notice::Kicked).ok();
                        true
                    }
                    (None, _) => false,
                };
                reply.send(ok).ok();
            }
            Command::Say(audience, clip, reply) => {
                let ids: Vec<MemberId> = match &audience {
                    Audience::Room(room) => self
                        .rooms
                        .get(room)
                        .map(|&r| self.mixer.members(r).to_vec())
                        .unwrap_or_default(),
                    Audience::Call(call) => self
                        .seats
                        .values()
                        .filter(|s| &s.call == call)
                        .map(|s| s.id)
                        .collect(),
                };
                for &id in &ids {
                    self.mixer.play(id, clip.clone());
                }
                reply.send(!ids.is_empty()).ok();
            }
            Command::List(reply) => {
                reply.send(self.list()).ok();
            }
        }
    }

    fn join(&mut self, req: JoinRequest) -> Result<MemberKey, JoinError> {
        let room = match self.rooms.get(&req.room) {
            Some(&room) => {
                if self.mixer.members(room).len() >= self.limits.max_members {
                    return Err(JoinError::Full);
                }
                room
            }
            None => {
                let room = self.mixer.open_room();
                self.rooms.insert(req.room.clone(), room);
                info!(room = %req.room, "room opened");
                self.events.publish(Event::RoomOpened {
                    room: req.room.clone(),
                });
                room
            }
        };
        let others: Vec<MemberId> = self.mixer.members(room).to_vec();
        let id = self
            .mixer
            .add_member(room, req.codec)
            .ok_or(JoinError::Stopped)?;
        if let Ok(mut rtp) = req.rtp.lock() {
            rtp.start_talkspurt();
        }
        self.mixer.play(id, self.clips.joined.clone());
        if others.is_empty() {
            self.mixer.play(id, self.clips.only_participant.clone());
        }
        if let Some(tone) = &self.clips.join_tone {
            for other in others {
                self.mixer.play(other, tone.clone());
            }
        }
        let key = self.next_key;
        self.next_key += 1;
        info!(room = %req.room, call = %req.call, direct = req.direct, "member joined");
        let direct = req.direct;
        self.seats.insert(
            key,
            Seat {
                id,
                room: req.room,
                call: req.call,
                sip_call_id: req.sip_call_id,
                from: req.from,
                to: req.to,
                direction: req.direction,
                socket: req.socket,
                dest: req.dest,
                payload_type: req.payload_type,
                rtp: req.rtp,
                notices: req.notices,
                quality: Quality::default(),
            },
        );
        // Published once the member is seated: an observer that acts on it
        // finds the member listed.
        if let Some(seat) = self.seats.get(&key) {
            self.events.publish(Event::MemberJoined {
                call: seat.call.clone(),
                sip_call_id: seat.sip_call_id.clone(),
                room: seat.room.clone(),
                from: seat.from.clone(),
                to: seat.to.clone(),
                direction: seat.direction,
                direct,
            });
        }
        Ok(key)
    }

    fn leave(&mut self, key: MemberKey, reason: &'static str) {
        let Some(seat) = self.seats.remove(&key) else {
            return;
        };
        let left = self.mixer.remove_member(seat.id);
        info!(room = %seat.room, call = %seat.call, reason, "member left");
        self.events.publish(Event::MemberLeft {
            call: seat.call,
            room: seat.room.clone(),
            reason,
        });
        let Some(&room) = self.rooms.get(&seat.room) else {
            warn!(room = %seat.room, "member of an unknown room");
            return;
        };
        if left == 0 {
            self.mixer.close_room(room);
            self.rooms.remove(&seat.room);
            if self.seats.is_empty() {
                // Nobody left in any room: the tables need not stay the
                // size of the busiest moment.
                self.seats.shrink_to_fit();
                self.rooms.shrink_to_fit();
            }
            info!(room = %seat.room, "room closed");
            self.events.publish(Event::RoomClosed { room: seat.room });
        } else if let Some(tone) = &self.clips.leave_tone {
            for i in 0..left {
                let other = self.mixer.members(room)[i];
                self.mixer.play(other, tone.clone());
            }
        }
    }

    fn list(&self) -> Vec<RoomStatus> {
        let mut rooms: Vec<RoomStatus> = self
            .rooms
            .iter()
            .map(|(name, &room)| RoomStatus {
                room: name.clone(),
                members: self
                    .mixer
                    .members(room)
                    .iter()
                    .filter_map(|&id| {
                        let seat = self.seats.values().find(|s| s.id == id)?;
                        let info = self.mixer.info(id)?;
                        Some(MemberStatus {
                            call: seat.call.clone(),
                            sip_call_id: seat.sip_call_id.clone(),
                            direction: seat.direction,
                            from: seat.from.clone(),
                            to: seat.to.clone(),
                            codec: info.codec,
                            talking: info.talking,
                            muted: info.muted,
                            deaf: info.deaf,
                            held: info.held,
                            lost: info.stats.lost,
                            late: info.stats.late,
                            jitter_ms: info.jitter_ms,
                            quality: seat.quality,
                        })
                    })
                    .collect(),
            })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }
}
