//! The media engine: every call's media and every conference room.
//!
//! A few media threads (`confgate-media-N`, one per core by default) each
//! own a share of the calls: their sockets, their sans-IO media sessions
//! ([`MediaSession`]) and a [`Mixer`](crate::media::mixer::Mixer) for the
//! rooms that live there. Every 20 ms a thread reads what every one of its
//! sockets received (one `epoll_wait`, one `recvmmsg` per socket with
//! input, kernel arrival times), feeds it to the sessions and the mixer,
//! mixes, and sends each call its frame — no task wake-up, no channel hop
//! and no lock per packet. A room lives on the thread its name hashes to;
//! a call that joins a room on another thread is handed over to it, socket
//! and session, so a room's members always mix on one thread.
//!
//! Calls talk to their media through a [`Leg`]; the control socket through
//! a [`Conference`]. The room rules are in `rooms.rs`, the thread loop in
//! `shard.rs`, the batched socket input in `io.rs`.

#![allow(clippy::disallowed_methods)] // an edge: the media threads read the clock

mod io;
mod rooms;
mod session;
mod shard;

use std::hash::{Hash, Hasher};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::call::media::Quality;
use crate::call::media::{MediaCommand, MediaEvent, MediaSession, MediaSetup, MediaStats};
use crate::call::webrtc::WebSession;
use crate::daemon::RtpSockets;
use crate::events::Event;
use crate::events::{Direction, Events};
pub use crate::ivr::directory::RoomRules;
use crate::ivr::keypad::KeyAction;
use crate::media::codec::Codec;
use crate::media::recorder::{self, Recorder, RecordingError};
use crate::metrics::{Histogram, JITTER_SECONDS, TICK_SECONDS};
use crate::rtp::learning::ForeignCounters;
use session::Session;

/// What the conference tells a member's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Kicked,
    /// The room ended around the member, who is no longer seated
    /// (`end_with_moderator`, `rooms.max_duration_secs`).
    RoomEnded,
}

/// What the room did with a keypad action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyReply {
    /// Carried out (the member heard its prompt or tone).
    Done,
    /// [`KeyAction::Count`](crate::ivr::keypad::KeyAction::Count): how many
    /// others are in the room, for the call to speak.
    Others(usize),
    /// The member is no longer seated (the leave key): its call says goodbye.
    Left,
    /// A moderator's action keyed by a member who is not one.
    NotAllowed,
    /// The call is not seated in a room.
    NotSeated,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the room is full")]
    Full,
    /// `lock` closed the room to newcomers.
    #[error("the room is locked")]
    Locked,
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
    /// Admitted with the moderator PIN.
    pub moderator: bool,
    /// How the room behaves if this call opens it.
    pub rules: RoomRules,
    /// The caller's name as it said it, announced to the others.
    pub name: Option<Arc<[i16]>>,
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
    pub moderator: bool,
    pub codec: Codec,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub held: bool,
    /// Keypad volumes, in dB.
    pub listen_db: i8,
    pub talk_db: i8,
    pub lost: u64,
    pub late: u64,
    pub jitter_ms: f32,
    /// From the member's RTCP, once it has reported.
    pub quality: Quality,
}

/// A room as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomStatus {
    pub room: String,
    /// Closed to newcomers by `lock`.
    pub locked: bool,
    pub members: Vec<MemberStatus>,
}

/// Member controls by call id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Mute(bool),
    Deaf(bool),
    Kick,
}

/// Who hears a clip played with [`Conference::say`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// Every member of the room.
    Room(String),
    /// The member that is this call.
    Call(String),
}

/// The clips the conference plays, at the rooms' 16 kHz.
#[derive(Clone)]
pub struct Announcements {
    pub joined: Arc<[i16]>,
    pub only_participant: Arc<[i16]>,
    /// Played to the others on a join and a leave; `None`: announce nothing.
    pub join_tone: Option<Arc<[i16]>>,
    pub leave_tone: Option<Arc<[i16]>>,
    /// Looped to a room waiting for its moderator.
    pub hold_music: Arc<[i16]>,
    pub waiting_for_moderator: Arc<[i16]>,
    /// Keypad answers, to the presser alone.
    pub muted: Arc<[i16]>,
    pub unmuted: Arc<[i16]>,
    pub room_locked: Arc<[i16]>,
    pub room_unlocked: Arc<[i16]>,
    pub all_muted: Arc<[i16]>,
    pub all_unmuted: Arc<[i16]>,
    pub member_removed: Arc<[i16]>,
    pub moderator_only: Arc<[i16]>,
    /// After a member's name: "has joined", "has left".
    pub has_joined: Arc<[i16]>,
    pub has_left: Arc<[i16]>,
    /// Volume up and down.
    pub louder: Arc<[i16]>,
    pub quieter: Arc<[i16]>,
}

/// Conference limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_members: usize,
}

/// How long a talker's audio spent inside confgate, arrival to the mixed
/// frame sent, in 1 ms buckets (the last holds everything from 200 ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    buckets: [u64; LATENCY_BUCKETS],
}

const LATENCY_BUCKETS: usize = 201;

impl Default for Latency {
    fn default() -> Self {
        Latency {
            buckets: [0; LATENCY_BUCKETS],
        }
    }
}

impl Latency {
    fn record(&mut self, d: Duration) {
        let ms = usize::try_from(d.as_millis()).unwrap_or(usize::MAX);
        self.buckets[ms.min(LATENCY_BUCKETS - 1)] += 1;
    }

    fn add(&mut self, other: &Latency) {
        for (a, b) in self.buckets.iter_mut().zip(other.buckets.iter()) {
            *a += b;
        }
    }

    /// Frames measured.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The `q` quantile (0.0–1.0) in ms: the upper edge of its bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(ms as u64 + 1);
            }
        }
        Some(LATENCY_BUCKETS as u64)
    }

    /// What was measured since `earlier`, a copy taken before.
    pub fn since(&self, earlier: &Latency) -> Latency {
        let mut d = *self;
        for (a, b) in d.buckets.iter_mut().zip(earlier.buckets.iter()) {
            *a = a.saturating_sub(*b);
        }
        d
    }
}

/// What the calls' media counted, summed over calls (ended ones too).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LegTotals {
    /// RTP packets taken from the calls' media sources.
    pub received: u64,
    /// Packets refused for not coming from a call's media source.
    pub foreign: ForeignCounters,
    /// SRTP/SRTCP packets that failed authentication or were replays.
    pub srtp_rejected: u64,
    /// Members' audio packets that never came, and that came too late.
    pub lost: u64,
    pub late: u64,
}

impl LegTotals {
    fn add(&mut self, o: &LegTotals) {
        self.received += o.received;
        self.foreign.add(&o.foreign);
        self.srtp_rejected += o.srtp_rejected;
        self.lost += o.lost;
        self.late += o.late;
    }
}

/// Counters of the media threads, summed.
#[derive(Debug, Clone, Copy)]
pub struct ConferenceStats {
    pub ticks: u64,
    pub late_ticks: u64,
    /// Packets sent by the media threads.
    pub sent: u64,
    /// Sends the kernel refused (a full socket buffer, an unreachable host).
    pub send_errors: u64,
    /// Datagrams the kernel dropped before a media thread read them (a
    /// socket's receive buffer was full: the thread fell behind).
    pub media_dropped: u64,
    /// Calls whose media the threads hold now, in rooms or not.
    pub legs: usize,
    /// Members seated now, in all rooms.
    pub members: usize,
    /// Rooms open now.
    pub rooms: usize,
    /// Members talking now.
    pub talking: usize,
    /// The calls' own counts, brought up to date once a second.
    pub media: LegTotals,
    pub latency: Latency,
    /// How long each tick took.
    pub tick_time: Histogram,
    /// Members' interarrival jitter, at each of their RTCP reports.
    pub jitter: Histogram,
}

impl Default for ConferenceStats {
    fn default() -> Self {
        ConferenceStats {
            ticks: 0,
            late_ticks: 0,
            sent: 0,
            send_errors: 0,
            media_dropped: 0,
            legs: 0,
            members: 0,
            rooms: 0,
            talking: 0,
            media: LegTotals::default(),
            latency: Latency::default(),
            tick_time: Histogram::new(TICK_SECONDS),
            jitter: Histogram::new(JITTER_SECONDS),
        }
    }
}

impl ConferenceStats {
    fn add(&mut self, o: &ConferenceStats) {
        // Ticks run in step on every thread: the busiest one's count.
        self.ticks = self.ticks.max(o.ticks);
        self.late_ticks += o.late_ticks;
        self.sent += o.sent;
        self.send_errors += o.send_errors;
        self.media_dropped += o.media_dropped;
        self.legs += o.legs;
        self.members += o.members;
        self.rooms += o.rooms;
        self.talking += o.talking;
        self.media.add(&o.media);
        self.latency.add(&o.latency);
        self.tick_time.add(&o.tick_time);
        self.jitter.add(&o.jitter);
    }
}

/// What a call's [`Leg`] asks of the thread that holds its media.
enum LegCommand {
    Media(MediaCommand),
    Join(Box<JoinRequest>, oneshot::Sender<Result<usize, JoinError>>),
    Key(KeyAction, oneshot::Sender<KeyReply>),
    /// Leave the room for a reason, keeping the media; answers whether it was seated.
    Leave(&'static str, oneshot::Sender<bool>),
    Close(&'static str, oneshot::Sender<MediaStats>),
}

/// What a media thread is asked by the rest of the daemon.
enum ShardCommand {
    /// A new call's media.
    Add(Box<shard::LegSlot>),
    /// A call handed over to join a room that lives here.
    Adopt(
        Box<shard::LegSlot>,
        Box<JoinRequest>,
        oneshot::Sender<Result<usize, JoinError>>,
    ),
    Control(String, Control, oneshot::Sender<bool>),
    Say(Audience, Arc<[i16]>, oneshot::Sender<bool>),
    List(oneshot::Sender<Vec<RoomStatus>>),
    /// Lock (true) or unlock a room; answers whether the room is here.
    Lock(String, bool, oneshot::Sender<bool>),
    /// Whether a room is open here, and recorded.
    Recorded(String, oneshot::Sender<Option<bool>>),
    /// Record a room with this recorder; it comes back when the room is
    /// gone or already recorded.
    Record(
        String,
        Box<Recorder>,
        oneshot::Sender<Result<PathBuf, Box<Recorder>>>,
    ),
    /// Stop recording a room; answers the path, if it was recorded.
    StopRecording(String, oneshot::Sender<Option<PathBuf>>),
    /// New clips and limits (a reload); members already seated stay.
    Update(Box<Announcements>, Limits, oneshot::Sender<()>),
}

struct ShardHandle {
    commands: std_mpsc::Sender<ShardCommand>,
    stats: Arc<Mutex<ConferenceStats>>,
}

/// The handle the daemon uses.
#[derive(Clone)]
pub struct Conference {
    shards: Arc<[ShardHandle]>,
    next: Arc<AtomicUsize>,
    events: Events,
}

/// A call's media, as its call task sees it.
pub struct Leg {
    commands: std_mpsc::Sender<LegCommand>,
    pub events: mpsc::UnboundedReceiver<MediaEvent>,
}

impl Leg {
    pub fn send(&self, cmd: MediaCommand) {
        self.commands.send(LegCommand::Media(cmd)).ok();
    }

    /// Seat the call in a room: from now on the room sends, and received
    /// audio goes to it. Returns how many others were in the room.
    pub async fn join(&self, req: JoinRequest) -> Result<usize, JoinError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(LegCommand::Join(Box::new(req), tx))
            .map_err(|_| JoinError::Stopped)?;
        rx.await.unwrap_or(Err(JoinError::Stopped))
    }

    /// A keypad action for the room this call is seated in.
    pub async fn key(&self, action: KeyAction) -> KeyReply {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(LegCommand::Key(action, tx)).is_err() {
            return KeyReply::NotSeated;
        }
        rx.await.unwrap_or(KeyReply::NotSeated)
    }

    /// Leave the room (for `reason`), keeping the media for a last prompt.
    pub async fn leave(&self, reason: &'static str) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(LegCommand::Leave(reason, tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// End the call's media (leaving its room for `reason`) and collect its counters.
    pub async fn close(self, reason: &'static str) -> MediaStats {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(LegCommand::Close(reason, tx)).is_err() {
            return MediaStats::default();
        }
        rx.await.unwrap_or_default()
    }
}

/// Why a recording did not start or stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("no such room")]
    NoSuchRoom,
    #[error("the room is already being recorded")]
    AlreadyRecording,
    #[error("the room is not being recorded")]
    NotRecording,
    /// The file could not be made.
    #[error("{0}")]
    Failed(String),
}

/// A recording's writer finished: say how.
fn recording_ended(events: &Events, room: &str, taken: bool, outcome: recorder::Outcome) {
    if !taken {
        // Refused by the room before a frame was written: nothing to keep.
        let path = match &outcome {
            Ok(r) | Err((r, _)) => r.path.clone(),
        };
        std::fs::remove_file(path).ok();
        return;
    }
    let event = match outcome {
        Ok(r) => {
            info!(room, path = %r.path.display(), secs = r.duration.as_secs_f64(), "recording stopped");
            Event::RecordingStopped {
                room: room.to_owned(),
                path: r.path.display().to_string(),
                secs: r.duration.as_secs_f64(),
            }
        }
        Err((r, e)) => {
            warn!(room, path = %r.path.display(), error = %e, "recording failed");
            Event::RecordingFailed {
                room: room.to_owned(),
                path: r.path.display().to_string(),
                secs: r.duration.as_secs_f64(),
                reason: e.to_string(),
            }
        }
    };
    events.publish(event);
}

/// The media thread a room lives on.
fn shard_of(room: &str, shards: usize) -> usize {
    // SipHash with fixed keys: the same room maps to the same thread in
    // every handle and every run.
    let mut h = std::hash::DefaultHasher::new();
    room.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// How many media threads `threads = 0` means: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Conference {
    /// Start `threads` media threads; they end when `shutdown` is cancelled
    /// and their calls have closed (or a few seconds after).
    pub fn start(
        clips: Announcements,
        limits: Limits,
        events: Events,
        shutdown: CancellationToken,
        threads: usize,
    ) -> Conference {
        let threads = threads.max(1);
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..threads).map(|_| std_mpsc::channel()).unzip();
        let handles: Arc<[ShardHandle]> = senders
            .iter()
            .map(|s| ShardHandle {
                commands: s.clone(),
                stats: Arc::default(),
            })
            .collect();
        for (index, commands) in receivers.into_iter().enumerate() {
            let peers: Vec<_> = senders.clone();
            let stats = handles[index].stats.clone();
            let (clips, events, shutdown) = (clips.clone(), events.clone(), shutdown.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("confgate-media-{index}"))
                .spawn(move || {
                    match shard::Shard::new(index, peers, clips, limits, events, stats) {
                        Ok(shard) => shard.run(commands, shutdown),
                        Err(e) => warn!(error = %e, "media thread did not start"),
                    }
                });
            if let Err(e) = spawned {
                warn!(error = %e, "media thread did not start");
            }
        }
        info!(threads, io = "epoll+recvmmsg", "media engine started");
        Conference {
            shards: handles,
            next: Arc::default(),
            events,
        }
    }

    /// Start a call's media on its sockets.
    pub fn start_leg(&self, sockets: RtpSockets, setup: MediaSetup) -> std::io::Result<Leg> {
        let media = MediaSession::new(setup, Instant::now(), SystemTime::now());
        self.add_leg(sockets, Session::Rtp(media))
    }

    /// Start a browser member's media on its socket (the RTP one of the pair).
    pub fn start_web_leg(&self, sockets: RtpSockets, media: WebSession) -> std::io::Result<Leg> {
        self.add_leg(sockets, Session::Web(Box::new(media)))
    }

    fn add_leg(&self, sockets: RtpSockets, media: Session) -> std::io::Result<Leg> {
        for fd in [sockets.rtp.as_raw_fd(), sockets.rtcp.as_raw_fd()] {
            io::enable_timestamps(fd)?;
        }
        sockets.rtp.set_nonblocking(true)?;
        sockets.rtcp.set_nonblocking(true)?;
        let (commands, command_rx) = std_mpsc::channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let slot = shard::LegSlot::new(media, sockets, command_rx, event_tx, Instant::now());
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[k]
            .commands
            .send(ShardCommand::Add(Box::new(slot)))
            .map_err(|_| std::io::Error::other("the media engine has stopped"))?;
        Ok(Leg { commands, events })
    }

    /// Ask every media thread; `None` from one that has stopped.
    async fn ask_all<T>(&self, make: impl Fn(oneshot::Sender<T>) -> ShardCommand) -> Vec<T> {
        let mut replies = Vec::with_capacity(self.shards.len());
        for s in self.shards.iter() {
            let (tx, rx) = oneshot::channel();
            if s.commands.send(make(tx)).is_ok() {
                replies.push(rx);
            }
        }
        let mut out = Vec::with_capacity(replies.len());
        for rx in replies {
            if let Ok(v) = rx.await {
                out.push(v);
            }
        }
        out
    }

    /// Mute, deafen or kick the member that is call `call`; false if no such member.
    pub async fn control(&self, call: &str, control: Control) -> bool {
        self.ask_all(|tx| ShardCommand::Control(call.to_owned(), control, tx))
            .await
            .contains(&true)
    }

    /// Ask the media thread `room` lives on; `None` if it has stopped.
    async fn ask_room<T>(
        &self,
        room: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> ShardCommand,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let shard = &self.shards[shard_of(room, self.shards.len())];
        shard.commands.send(make(tx)).ok()?;
        rx.await.ok()
    }

    /// Play `clip` to a room or one member; false if there is no such room or member.
    pub async fn say(&self, audience: Audience, clip: Arc<[i16]>) -> bool {
        match &audience {
            Audience::Room(room) => self
                .ask_room(room, |tx| ShardCommand::Say(audience.clone(), clip, tx))
                .await
                .unwrap_or(false),
            Audience::Call(_) => self
                .ask_all(|tx| ShardCommand::Say(audience.clone(), clip.clone(), tx))
                .await
                .contains(&true),
        }
    }

    /// Close `room` to newcomers (`on`), or open it again; false if no
    /// such room is open. A room's lock ends with the room.
    pub async fn lock(&self, room: &str, on: bool) -> bool {
        self.ask_room(room, |tx| ShardCommand::Lock(room.to_owned(), on, tx))
            .await
            .unwrap_or(false)
    }

    /// Start recording `room` into a new WAV in `dir`; returns its path.
    pub async fn record(&self, room: &str, dir: &Path) -> Result<PathBuf, RecordError> {
        match self
            .ask_room(room, |tx| ShardCommand::Recorded(room.to_owned(), tx))
            .await
            .flatten()
        {
            None => return Err(RecordError::NoSuchRoom),
            Some(true) => return Err(RecordError::AlreadyRecording),
            Some(false) => {}
        }
        let name = recorder::file_name(room, SystemTime::now());
        // The file is made here, off the media threads; its writer reports
        // the end once the room has taken it.
        let taken = Arc::new(AtomicBool::new(false));
        let (events, room_name, was_taken) = (self.events.clone(), room.to_owned(), taken.clone());
        let dir = dir.to_owned();
        let recorder = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir).map_err(|source| RecordingError::Create {
                path: dir.clone(),
                source,
            })?;
            // A second recording within the same second gets its own file.
            let stem = name.trim_end_matches(".wav");
            let path = (0..)
                .map(|n| match n {
                    0 => dir.join(&name),
                    n => dir.join(format!("{stem}-{n}.wav")),
                })
                .find(|p| !p.exists())
                .unwrap_or_else(|| dir.join(&name));
            Recorder::start(path, crate::media::codec::ROOM_RATE, move |outcome| {
                recording_ended(
                    &events,
                    &room_name,
                    was_taken.load(Ordering::Acquire),
                    outcome,
                )
            })
        })
        .await
        .map_err(|e| RecordError::Failed(e.to_string()))?
        .map_err(|e| RecordError::Failed(e.to_string()))?;
        // Set before the room has it; a recorder it hands back ends unreported.
        taken.store(true, Ordering::Release);
        let took = self
            .ask_room(room, |tx| {
                ShardCommand::Record(room.to_owned(), Box::new(recorder), tx)
            })
            .await;
        let path = match took {
            Some(Ok(path)) => path,
            Some(Err(refused)) => {
                taken.store(false, Ordering::Release);
                drop(refused);
                // Another recording got there first, or the room closed.
                return Err(match self.rooms().await.iter().any(|r| r.room == room) {
                    true => RecordError::AlreadyRecording,
                    false => RecordError::NoSuchRoom,
                });
            }
            // The thread stopped: it dropped the recorder, whose end is reported.
            None => return Err(RecordError::NoSuchRoom),
        };
        Ok(path)
    }

    /// Stop recording `room`; returns the path of its WAV.
    pub async fn stop_recording(&self, room: &str) -> Result<PathBuf, RecordError> {
        match self
            .ask_room(room, |tx| ShardCommand::Recorded(room.to_owned(), tx))
            .await
            .flatten()
        {
            None => return Err(RecordError::NoSuchRoom),
            Some(false) => return Err(RecordError::NotRecording),
            Some(true) => {}
        }
        self.ask_room(room, |tx| ShardCommand::StopRecording(room.to_owned(), tx))
            .await
            .flatten()
            .ok_or(RecordError::NotRecording)
    }

    /// Clips and limits for what happens from now on (a reload).
    pub async fn update(&self, clips: Announcements, limits: Limits) {
        self.ask_all(|tx| ShardCommand::Update(Box::new(clips.clone()), limits, tx))
            .await;
    }

    /// Every open room and its members.
    pub async fn rooms(&self) -> Vec<RoomStatus> {
        let mut rooms: Vec<RoomStatus> = self
            .ask_all(ShardCommand::List)
            .await
            .into_iter()
            .flatten()
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        rooms
    }

    pub fn stats(&self) -> ConferenceStats {
        let mut total = ConferenceStats::default();
        for s in self.shards.iter() {
            // A poisoned lock only means a media thread panicked mid-copy.
            total.add(&s.stats.lock().unwrap_or_else(|e| e.into_inner()));
        }
        total
    }
}
