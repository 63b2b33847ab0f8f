//! One media thread: its calls' sockets and sessions, its rooms' mixer, and
//! the 20 ms loop that moves everything between them.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::io::{Poller, Receiver, BATCH};
use super::{
    shard_of, Announcements, ConferenceStats, JoinError, JoinRequest, LegCommand, LegTotals,
    Limits, ShardCommand,
};
use crate::call::media::{MediaEvent, Transmit, Via};
use crate::daemon::{RtpSocket, RtpSockets};
use crate::events::{Direction, Events};
use crate::media::mixer::{MemberId, Mixer};
use crate::rtp::pacer::Pacer;

use super::rooms::RoomState;
use super::session::Session;
use super::{Notice, Quality};

const TICK: Duration = Duration::from_millis(20);
/// Commands taken per tick by a thread that has no time to spare.
const COMMANDS_WHEN_LATE: usize = 64;
/// How long the thread waits, once the daemon stops, for its calls to close.
const STOP_GRACE: Duration = Duration::from_secs(6);
/// Ticks between two sums of the calls' own counts.
const CENSUS_TICKS: u64 = 50;

/// A call's media as its thread holds it.
pub(super) struct LegSlot {
    pub(super) media: Session,
    rtp: RtpSocket,
    rtcp: UdpSocket,
    commands: std_mpsc::Receiver<LegCommand>,
    events: mpsc::UnboundedSender<MediaEvent>,
    pub(super) seat: Option<Seat>,
    /// When the session's timers next need a look (never later than due).
    deadline: Instant,
    /// The kernel's drop counts of the RTP and RTCP sockets, last seen.
    dropped: [u32; 2],
    /// The session's counts when it came to this thread: those since are
    /// this thread's to report.
    base: LegTotals,
}

impl LegSlot {
    pub(super) fn new(
        media: Session,
        sockets: RtpSockets,
        commands: std_mpsc::Receiver<LegCommand>,
        events: mpsc::UnboundedSender<MediaEvent>,
        now: Instant,
    ) -> LegSlot {
        LegSlot {
            deadline: media.poll_timeout().min(now),
            media,
            rtp: sockets.rtp,
            rtcp: sockets.rtcp,
            commands,
            events,
            seat: None,
            dropped: [0; 2],
            base: LegTotals::default(),
        }
    }

    /// What the session counted, and its member in the mixer.
    fn totals(&self, mixer: &Mixer) -> LegTotals {
        let stats = self.media.stats();
        let jitter = self
            .seat
            .as_ref()
            .and_then(|s| mixer.info(s.id))
            .map(|i| i.stats)
            .unwrap_or_default();
        LegTotals {
            received: stats.received,
            foreign: stats.foreign,
            srtp_rejected: stats.srtp_rejected,
            lost: jitter.lost,
            late: jitter.late,
        }
    }

    /// What it counted since it came to this thread.
    fn totals_here(&self, mixer: &Mixer) -> LegTotals {
        let now = self.totals(mixer);
        LegTotals {
            received: now.received.saturating_sub(self.base.received),
            foreign: now.foreign.since(&self.base.foreign),
            srtp_rejected: now.srtp_rejected.saturating_sub(self.base.srtp_rejected),
            // A member's counts start with its seat, which never moves.
            lost: now.lost,
            late: now.late,
        }
    }
}

/// Read all a call's socket holds into its session, and its audio into
/// the mixer. `clocks`: the monotonic and wall clocks read together, to
/// place the kernel's arrival times.
fn take_input(
    slot: &mut LegSlot,
    via: Via,
    receiver: &mut Receiver,
    mixer: &mut Mixer,
    stats: &mut ConferenceStats,
    (mono, wall): (Instant, SystemTime),
) {
    let fd = match via {
        Via::Rtp => slot.rtp.as_raw_fd(),
        Via::Rtcp => slot.rtcp.as_raw_fd(),
    };
    loop {
        let n = receiver.recv(fd);
        for i in 0..n {
            let Some(d) = receiver.datagram(i) else {
                continue;
            };
            if let Some(count) = d.dropped {
                let last = &mut slot.dropped[usize::from(via == Via::Rtcp)];
                stats.media_dropped += u64::from(count.wrapping_sub(*last));
                *last = count;
            }
            let at =
                d.at.and_then(|w| wall.duration_since(w).ok())
                    .and_then(|age| mono.checked_sub(age))
                    .unwrap_or(mono);
            match &mut slot.media {
                Session::Rtp(m) if via == Via::Rtcp => m.on_rtcp(d.bytes, d.from, at),
                Session::Rtp(m) => {
                    if let (Some(audio), Some(seat)) = (m.on_rtp(d.bytes, d.from, at), &slot.seat) {
                        match audio.keyed {
                            true => mixer.push_concealed(seat.id, audio.ts, audio.payload, at),
                            false => mixer.push(seat.id, audio.ts, audio.payload, at),
                        }
                    }
                }
                // A browser uses one socket for everything (bundle, rtcp-mux).
                Session::Web(_) if via == Via::Rtcp => {}
                Session::Web(w) => {
                    w.on_datagram(d.bytes, d.from, at);
                    while let Some((ts, payload)) = w.next_heard() {
                        if let Some(seat) = &slot.seat {
                            mixer.push(seat.id, ts, &payload, at);
                        }
                    }
                }
            }
        }
        if n < BATCH {
            break;
        }
    }
    flush(slot, stats);
    slot.deadline = slot.deadline.min(slot.media.poll_timeout());
}

/// Send what a browser's session has queued, on its socket.
fn flush(slot: &mut LegSlot, stats: &mut ConferenceStats) {
    while let Some((to, bytes)) = slot.media.next_transmit() {
        match slot.rtp.send_to(&bytes, to) {
            Ok(_) => stats.sent += 1,
            Err(_) => stats.send_errors += 1,
        }
    }
}

/// Send `t` on the call's RTP or RTCP socket.
fn send(rtp: &UdpSocket, rtcp: &UdpSocket, t: Transmit<'_>, stats: &mut ConferenceStats) {
    let socket = match t.via {
        Via::Rtp => rtp,
        Via::Rtcp => rtcp,
    };
    match socket.send_to(t.bytes, t.to) {
        Ok(_) => stats.sent += 1,
        Err(_) => stats.send_errors += 1,
    }
}

/// A call's place in a room.
pub(super) struct Seat {
    pub(super) id: MemberId,
    pub(super) room: String,
    pub(super) call: String,
    pub(super) sip_call_id: String,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) direction: Direction,
    pub(super) moderator: bool,
    /// When it joined, among this thread's joins: the keypad removes the last.
    pub(super) order: u64,
    /// A removal was asked for (its call is ending).
    pub(super) kicked: bool,
    /// "NAME has left", for the others when it goes.
    pub(super) farewell: Option<Arc<[i16]>>,
    pub(super) notices: mpsc::UnboundedSender<Notice>,
    pub(super) quality: Quality,
}

pub(super) struct Shard {
    index: usize,
    peers: Vec<std_mpsc::Sender<ShardCommand>>,
    pub(super) legs: Vec<Option<Box<LegSlot>>>,
    free: Vec<usize>,
    pub(super) mixer: Mixer,
    pub(super) rooms: HashMap<String, RoomState>,
    /// Members seated here so far.
    pub(super) joins: u64,
    /// Rooms being recorded now.
    pub(super) recorded_rooms: usize,
    /// The leg slot of each seated member.
    pub(super) members: HashMap<MemberId, usize>,
    pub(super) events: Events,
    pub(super) clips: Announcements,
    pub(super) limits: Limits,
    poller: Poller,
    receiver: Receiver,
    stats: ConferenceStats,
    /// What calls that left this thread counted here.
    departed: LegTotals,
    /// What [`Conference::stats`](super::Conference::stats) reads.
    shared: Arc<Mutex<ConferenceStats>>,
}

fn token(index: usize, via: Via) -> u64 {
    (index as u64) << 1 | u64::from(via == Via::Rtcp)
}

impl Shard {
    pub(super) fn new(
        index: usize,
        peers: Vec<std_mpsc::Sender<ShardCommand>>,
        clips: Announcements,
        limits: Limits,
        events: Events,
        shared: Arc<Mutex<ConferenceStats>>,
    ) -> std::io::Result<Shard> {
        Ok(Shard {
            index,
            peers,
            legs: Vec::new(),
            free: Vec::new(),
            mixer: Mixer::new(),
            rooms: HashMap::new(),
            joins: 0,
            recorded_rooms: 0,
            members: HashMap::new(),
            events,
            clips,
            limits,
            poller: Poller::new()?,
            receiver: Receiver::new(),
            stats: ConferenceStats::default(),
            departed: LegTotals::default(),
            shared,
        })
    }

    pub(super) fn run(
        mut self,
        commands: std_mpsc::Receiver<ShardCommand>,
        shutdown: CancellationToken,
    ) {
        let mut pacer = Pacer::new(Instant::now(), TICK);
        let mut stop_by: Option<Instant> = None;
        loop {
            // Commands until the tick is due. A thread that is behind still
            // takes some of those waiting, so calls keep arriving, joining
            // and being listed under overload.
            let mut taken = 0;
            loop {
                let wait = pacer.time_until_next(Instant::now());
                let cmd = if wait.is_zero() {
                    if taken >= COMMANDS_WHEN_LATE {
                        break;
                    }
                    match commands.try_recv() {
                        Ok(cmd) => cmd,
                        Err(std_mpsc::TryRecvError::Empty) => break,
                        Err(std_mpsc::TryRecvError::Disconnected) => return,
                    }
                } else {
                    match commands.recv_timeout(wait) {
                        Ok(cmd) => cmd,
                        Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                };
                self.command(cmd);
                taken += 1;
            }
            if shutdown.is_cancelled() {
                let by = *stop_by.get_or_insert_with(|| Instant::now() + STOP_GRACE);
                if self.legs.iter().all(Option::is_none) || Instant::now() >= by {
                    break;
                }
            }
            let due = pacer.poll(Instant::now());
            if due.frames == 0 && due.skipped == 0 {
                continue;
            }
            self.tick(due.frames, due.skipped);
            self.share_if_free();
        }
        if let Ok(mut s) = self.shared.lock() {
            *s = ConferenceStats {
                legs: 0,
                members: 0,
                rooms: 0,
                ..self.stats
            };
        }
    }

    fn command(&mut self, cmd: ShardCommand) {
        match cmd {
            ShardCommand::Add(slot) => {
                self.attach(slot);
            }
            ShardCommand::Adopt(slot, req, reply) => {
                let index = self.attach(slot);
                reply.send(self.seat(index, *req)).ok();
            }
            ShardCommand::Control(call, control, reply) => {
                reply.send(self.control(&call, control)).ok();
            }
            ShardCommand::Say(audience, clip, reply) => {
                reply.send(self.say(&audience, clip)).ok();
            }
            ShardCommand::List(reply) => {
                reply.send(self.list()).ok();
            }
            ShardCommand::Lock(room, on, reply) => {
                reply.send(self.lock(&room, on)).ok();
            }
            ShardCommand::Recorded(room, reply) => {
                reply.send(self.recorded(&room)).ok();
            }
            ShardCommand::Record(room, recorder, reply) => {
                reply.send(self.record(&room, recorder)).ok();
            }
            ShardCommand::StopRecording(room, reply) => {
                reply.send(self.stop_recording(&room)).ok();
            }
            ShardCommand::Update(clips, limits, reply) => {
                self.clips = *clips;
                self.limits = limits;
                reply.send(()).ok();
            }
        }
        self.count();
    }

    /// Count what is held now, and share the figures.
    pub(super) fn count(&mut self) {
        self.stats.legs = self.legs.len() - self.free.len();
        self.stats.members = self.members.len();
        self.stats.rooms = self.rooms.len();
        self.share();
    }

    /// After a change (a call came, joined, left): the figures as they are now.
    fn share(&self) {
        // A poisoned lock only means a reader panicked; the figures stand.
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = self.stats;
    }

    /// After a tick: the figures, unless a reader holds them this moment
    /// (a scrape); the next tick shares them then. The tick never waits.
    fn share_if_free(&self) {
        if let Ok(mut s) = self.shared.try_lock() {
            *s = self.stats;
        }
    }

    /// Take a call's media in; returns its slot.
    fn attach(&mut self, mut slot: Box<LegSlot>) -> usize {
        slot.base = slot.totals(&self.mixer);
        let (rtp, rtcp) = (slot.rtp.as_raw_fd(), slot.rtcp.as_raw_fd());
        let index = match self.free.pop() {
            Some(i) => {
                self.legs[i] = Some(slot);
                i
            }
            None => {
                self.legs.push(Some(slot));
                self.legs.len() - 1
            }
        };
        for (fd, via) in [(rtp, Via::Rtp), (rtcp, Via::Rtcp)] {
            if let Err(e) = self.poller.add(fd, token(index, via)) {
                warn!(error = %e, "media socket not watched");
            }
        }
        index
    }

    /// Give up a call's media (to close it or hand it over).
    fn detach(&mut self, index: usize) -> Option<Box<LegSlot>> {
        let slot = self.legs.get_mut(index)?.take()?;
        self.departed.add(&slot.totals_here(&self.mixer));
        self.free.push(index);
        self.poller.remove(slot.rtp.as_raw_fd());
        self.poller.remove(slot.rtcp.as_raw_fd());
        Some(slot)
    }

    fn tick(&mut self, frames: u32, skipped: u64) {
        let started = Instant::now();
        let census = self.stats.ticks / CENSUS_TICKS;
        self.receive();
        self.take_commands();
        if skipped > 0 {
            self.stats.late_ticks += skipped;
            for slot in self.legs.iter_mut().flatten() {
                slot.media.skip(skipped);
            }
        }
        if frames == 0 {
            self.after_frame(false, true);
        }
        for frame in 1..=frames {
            self.mixer.tick();
            self.record_frame();
            self.stats.ticks += 1;
            self.after_frame(true, frame == frames);
        }
        if self.stats.ticks / CENSUS_TICKS != census {
            self.census();
            self.expire_rooms(Instant::now());
        }
        self.stats.tick_time.observe_duration(started.elapsed());
    }

    /// Bring the calls' own counts up to date: those that left, and those
    /// of every call here, summed at once so no call counts twice.
    fn census(&mut self) {
        let mut media = self.departed;
        let mut talking = 0;
        for slot in self.legs.iter().flatten() {
            media.add(&slot.totals_here(&self.mixer));
            if let Some(seat) = &slot.seat {
                talking += usize::from(self.mixer.info(seat.id).is_some_and(|i| i.talking));
            }
        }
        self.stats.media = media;
        self.stats.talking = talking;
    }

    /// Send every call its frame (when `frame`); after the tick's last
    /// frame, in the same pass, each call's timers, line quality and events.
    fn after_frame(&mut self, frame: bool, last: bool) {
        let Shard {
            legs,
            mixer,
            stats,
            events,
            ..
        } = self;
        let now = Instant::now();
        for slot in legs.iter_mut().flatten() {
            if frame {
                let t = match &slot.seat {
                    Some(seat) => slot.media.audio_frame(mixer.output(seat.id), now),
                    None => slot.media.prompt_frame(now),
                };
                if let Some(t) = t {
                    // Disjoint fields: the session's packet, the slot's sockets.
                    send(&slot.rtp, &slot.rtcp, t, stats);
                }
                // A talker's frame: from its arrival to this send.
                if let Some(at) = slot.seat.as_ref().and_then(|s| mixer.contributed(s.id)) {
                    stats
                        .latency
                        .record(Instant::now().saturating_duration_since(at));
                }
            }
            if !last {
                continue;
            }
            if now >= slot.deadline {
                if let Some(t) = slot.media.handle_timeout(now) {
                    send(&slot.rtp, &slot.rtcp, t, stats);
                }
                slot.deadline = slot.media.poll_timeout();
                if let Some((quality, change)) = slot.media.take_quality() {
                    if let Some(seat) = &mut slot.seat {
                        if let Some(info) = mixer.info(seat.id) {
                            stats.jitter.observe(f64::from(info.jitter_ms) / 1000.0);
                        }
                        super::rooms::quality(seat, quality, change, events);
                    }
                }
            }
            flush(slot, stats);
            while let Some(e) = slot.media.poll_event() {
                slot.events.send(e).ok();
            }
        }
    }

    /// Everything the sockets hold, into the sessions and the mixer.
    fn receive(&mut self) {
        let clocks = (Instant::now(), SystemTime::now());
        let Shard {
            poller,
            receiver,
            legs,
            mixer,
            stats,
            ..
        } = self;
        // Each socket is drained as it is named, so the poller's next
        // batch names others.
        poller.ready(|t| {
            let via = if t & 1 == 1 { Via::Rtcp } else { Via::Rtp };
            if let Some(Some(slot)) = legs.get_mut((t >> 1) as usize) {
                take_input(slot, via, receiver, mixer, stats, clocks);
            }
        });
    }

    /// Each call's commands since the last tick.
    fn take_commands(&mut self) {
        let now = Instant::now();
        for index in 0..self.legs.len() {
            while let Some(Some(slot)) = self.legs.get_mut(index) {
                let cmd = match slot.commands.try_recv() {
                    Ok(cmd) => cmd,
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    // The call's task is gone without closing its media.
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.close(index, "hangup", None);
                        break;
                    }
                };
                match cmd {
                    LegCommand::Media(c) => {
                        slot.media.command(c, now);
                        slot.deadline = slot.deadline.min(slot.media.poll_timeout());
                        if let Some(seat) = &slot.seat {
                            self.mixer.set_held(seat.id, !slot.media.params().send);
                        }
                    }
                    LegCommand::Join(req, reply) => self.join(index, req, reply),
                    LegCommand::Key(action, reply) => {
                        reply.send(self.key(index, action)).ok();
                    }
                    LegCommand::Leave(reason, reply) => {
                        let seat = slot.seat.take();
                        let seated = seat.is_some();
                        if let Some(seat) = seat {
                            self.unseat(seat, reason);
                        }
                        reply.send(seated).ok();
                    }
                    LegCommand::Close(reason, reply) => {
                        self.close(index, reason, Some(reply));
                        break;
                    }
                }
            }
        }
        self.count();
    }

    /// Seat the call here, or hand it to the thread its room lives on.
    fn join(
        &mut self,
        index: usize,
        req: Box<JoinRequest>,
        reply: oneshot::Sender<Result<usize, JoinError>>,
    ) {
        let home = shard_of(&req.room, self.peers.len());
        if home == self.index {
            reply.send(self.seat(index, *req)).ok();
            return;
        }
        let Some(slot) = self.detach(index) else {
            reply.send(Err(JoinError::Stopped)).ok();
            return;
        };
        if let Err(std_mpsc::SendError(ShardCommand::Adopt(_, _, reply))) =
            self.peers[home].send(ShardCommand::Adopt(slot, req, reply))
        {
            reply.send(Err(JoinError::Stopped)).ok();
        }
    }

    /// End a call's media: leave its room, say RTCP BYE, free its sockets.
    fn close(
        &mut self,
        index: usize,
        reason: &'static str,
        reply: Option<oneshot::Sender<crate::call::media::MediaStats>>,
    ) {
        let Some(mut slot) = self.detach(index) else {
            return;
        };
        if let Some(seat) = slot.seat.take() {
            self.unseat(seat, reason);
        }
        while let Some(e) = slot.media.poll_event() {
            slot.events.send(e).ok();
        }
        if let Some(t) = slot.media.bye(Instant::now()) {
            send(&slot.rtp, &slot.rtcp, t, &mut self.stats);
        }
        if let Some(reply) = reply {
            reply.send(slot.media.stats()).ok();
        }
        if self.free.len() == self.legs.len() {
            // No call left: the tables need not stay the size of the
            // busiest moment.
            self.legs.clear();
            self.free.clear();
            self.legs.shrink_to_fit();
            self.free.shrink_to_fit();
        }
    }
}
