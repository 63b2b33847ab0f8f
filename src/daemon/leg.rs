//! One call's media leg: the RTP and RTCP sockets, the 20 ms send clock,
//! prompt playback, the DTMF receivers on what comes in, and RTCP reports
//! with the line's quality. It only moves bytes between the sockets and the
//! sans-IO parts (pacer, player, G.711, RTP packets, RFC 4733 receiver,
//! in-band detector, RTCP session, E-model).

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO parts

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::net::SocketAddr;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ports::{RtpSocket, RtpSockets};
pub use crate::call::session::MediaParams;
use crate::conference::{Conference, MediaIn, MemberKey, Quality};
use crate::dtmf::inband::{Detection, InbandDetector};
use crate::dtmf::rfc4733::{EventReceiver, Press};
use crate::dtmf::Source;
use crate::events::QualityState;
use crate::media::player::{Player, FRAME};
use crate::media::quality::{self, Change, QualityAlarm};
use crate::rtp::learning::{SourceLearning, Verdict};
use crate::rtp::pacer::Pacer;
use crate::rtp::packet::{self, RtpSender};
use crate::rtp::rtcp::{self, Figures, RtcpCounters, RtcpSession, Sent};

/// How long a member's MOS must stay below the threshold before the alarm.
const QUALITY_HOLD: Duration = Duration::from_secs(10);

pub enum LegCommand {
    /// Play a clip; `id` comes back in [`LegEvent::PlaybackDone`].
    Play {
        samples: Arc<[i16]>,
        looped: bool,
        id: u64,
    },
    Stop,
    Update(MediaParams),
    /// The call joined a room: from now on the conference sends, and
    /// received audio goes to it.
    Conferenced {
        conference: Conference,
        member: MemberKey,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// The clip `id`, asked for with `looped: false`, has been sent to its end.
    PlaybackDone(u64),
    /// A key press from the RTP stream (an event or a tone), not yet merged
    /// with the call's other sources.
    Digit {
        digit: char,
        source: Source,
        at: Instant,
    },
    /// No RTP for the configured timeout while not on hold.
    RtpTimeout,
}

/// Counters reported when the call ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct LegStats {
    pub sent: u64,
    pub received: u64,
    pub not_rtp: u64,
    /// Packets not from the learned media source (dropped, never answered).
    pub foreign: u64,
    pub late_ticks: u64,
    pub rtcp: RtcpCounters,
    /// The line as the last RTCP report saw it.
    pub figures: Figures,
    pub mos: Option<f64>,
}

impl LegStats {
    /// The round-trip time for the hang-up log, ms, or `-`.
    pub fn rtt_ms(&self) -> String {
        self.figures.rtt.map_or_else(
            || "-".into(),
            |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
        )
    }

    /// The last estimated MOS for the hang-up log, or `-`.
    pub fn mos(&self) -> String {
        self.mos.map_or_else(|| "-".into(), |m| format!("{m:.2}"))
    }

    /// Share of our packets the far end reported lost, or `-`.
    pub fn remote_lost(&self) -> String {
        self.figures
            .remote
            .map_or_else(|| "-".into(), |r| format!("{:.3}", r.fraction_lost))
    }
}

/// What a leg is started with.
pub struct LegSetup {
    pub sockets: RtpSockets,
    pub params: MediaParams,
    /// Run the tone detector on received audio.
    pub inband: bool,
    /// Numbers what is sent, here and later by the conference.
    pub rtp: Arc<Mutex<RtpSender>>,
    pub rtp_timeout: Duration,
    /// Judges who the caller's media (and RTCP) comes from.
    pub learning: SourceLearning,
    /// Our SDES CNAME.
    pub cname: String,
    pub quality_alarm_mos: f64,
}

/// The running leg, owned by the call task.
pub struct Leg {
    commands: mpsc::UnboundedSender<LegCommand>,
    pub events: mpsc::UnboundedReceiver<LegEvent>,
    task: tokio::task::JoinHandle<LegStats>,
    cancel: CancellationToken,
}

impl Leg {
    /// Start the leg.
    pub fn start(setup: LegSetup) -> Leg {
        let (commands, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let params = setup.params;
        let dtmf = Dtmf {
            events: params.dtmf_pt.map(EventReceiver::new),
            tones: setup.inband.then(|| Box::new(InbandDetector::new())),
            presses: Vec::new(),
            detections: Vec::new(),
        };
        let now = Instant::now();
        let ssrc = lock(&setup.rtp).ssrc();
        let rtcp = Rtcp {
            session: RtcpSession::new(
                ssrc,
                &setup.cname,
                8000, // G.711's clock
                now,
                std::time::SystemTime::now(),
                rand::random(),
            ),
            socket: setup.sockets.rtcp,
            latched: None,
            alarm: QualityAlarm::new(setup.quality_alarm_mos, QUALITY_HOLD),
            mos: None,
            buf: Vec::with_capacity(256),
        };
        let io = Io {
            socket: setup.sockets.rtp,
            rtp: setup.rtp,
            rtp_timeout: setup.rtp_timeout,
            learning: setup.learning,
        };
        let task = tokio::spawn(run(io, rtcp, params, dtmf, cmd_rx, ev_tx, cancel.clone()));
        Leg {
            commands,
            events,
            task,
            cancel,
        }
    }

    pub fn send(&self, cmd: LegCommand) {
        self.commands.send(cmd).ok();
    }

    /// Stop the leg and collect its counters.
    pub async fn close(self) -> LegStats {
        self.cancel.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// The DTMF receivers that listen to the RTP stream.
struct Dtmf {
    events: Option<EventReceiver>,
    tones: Option<Box<InbandDetector>>,
    presses: Vec<Press>,
    detections: Vec<Detection>,
}

impl Dtmf {
    /// Feed one received packet; key presses go to `events`.
    fn on_packet(
        &mut self,
        rtp: &packet::RtpView<'_>,
        params: &MediaParams,
        now: Instant,
        events: &mpsc::UnboundedSender<LegEvent>,
    ) {
        if let Some(rx) = self
            .events
            .as_mut()
            .filter(|_| Some(rtp.pt) == params.dtmf_pt)
        {
            rx.on_packet(
                rtp.pt,
                rtp.ssrc,
                rtp.seq,
                rtp.timestamp,
                rtp.marker,
                rtp.payload,
                now,
                &mut self.presses,
            );
        } else if let Some(det) = self
            .tones
            .as_mut()
            .filter(|_| rtp.pt == params.payload_type)
        {
            let mut pcm = [0i16; FRAME];
            for chunk in rtp.payload.chunks(FRAME) {
                let pcm = &mut pcm[..chunk.len()];
                params.codec.decode(chunk, pcm);
                det.feed(pcm, &mut self.detections);
            }
        }
        self.report(now, events);
    }

    fn on_timeout(&mut self, now: Instant, events: &mpsc::UnboundedSender<LegEvent>) {
        if let Some(rx) = self.events.as_mut() {
            rx.on_timeout(now, &mut self.presses);
        }
        self.report(now, events);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.events.as_ref().and_then(EventReceiver::next_deadline)
    }

    fn report(&mut self, at: Instant, events: &mpsc::UnboundedSender<LegEvent>) {
        let events_heard = self.presses.drain(..).map(|p| (p.digit, Source::Rfc4733));
        let tones_heard = self.detections.drain(..).map(|d| (d.digit, Source::Inband));
        for (digit, source) in events_heard.chain(tones_heard) {
            events.send(LegEvent::Digit { digit, source, at }).ok();
        }
    }

    /// The telephone-event payload type changed (a re-INVITE).
    fn renegotiated(&mut self, dtmf_pt: Option<u8>) {
        if self.events.as_ref().map(EventReceiver::payload_type) != dtmf_pt {
            self.events = dtmf_pt.map(EventReceiver::new);
        }
    }
}

/// The leg's socket and sending state.
struct Io {
    socket: Arc<RtpSocket>,
    rtp: Arc<Mutex<RtpSender>>,
    rtp_timeout: Duration,
    learning: SourceLearning,
}

/// The leg's RTCP: the session, where reports go, and the quality alarm.
struct Rtcp {
    session: RtcpSession,
    /// The RTCP port + 1 socket (unused when muxed).
    socket: Arc<UdpSocket>,
    /// Where the far end's RTCP came from, when it is not where its SDP said
    /// (NAT): our reports follow it (symmetric RTCP, RFC 4961).
    latched: Option<SocketAddr>,
    alarm: QualityAlarm,
    mos: Option<f64>,
    buf: Vec<u8>,
}

impl Rtcp {
    /// Where reports go and on which socket: muxed to the learned media
    /// source, else to the latched RTCP source, the SDP's `a=rtcp` or the
    /// media source's port + 1.
    fn destination(&self, params: &MediaParams, learning: &SourceLearning) -> Option<SocketAddr> {
        let media = learning.destination();
        if params.rtcp_mux {
            return media;
        }
        if let Some(l) = self.latched {
            return Some(l);
        }
        match (media, params.rtcp) {
            // The media source is where the SDP said: so is its RTCP.
            (Some(m), Some(r)) if Some(m) == params.remote => Some(r),
            // Learned elsewhere (NAT): the same address, the next port.
            (Some(m), _) => Some(SocketAddr::new(m.ip(), m.port().wrapping_add(1))),
            (None, r) => r,
        }
    }

    /// RTCP is taken only from the media source's IP (or, before any media,
    /// the SDP's); the session then checks its SSRC.
    fn from_media_source(
        from: SocketAddr,
        params: &MediaParams,
        learning: &SourceLearning,
    ) -> bool {
        learning
            .destination()
            .or(params.remote)
            .is_some_and(|m| m.ip() == from.ip())
    }

    /// A datagram from `from`, on the RTCP socket (`muxed` false) or the RTP one.
    fn on_datagram(
        &mut self,
        bytes: &[u8],
        from: SocketAddr,
        muxed: bool,
        params: &MediaParams,
        learning: &SourceLearning,
        now: Instant,
    ) {
        if !Self::from_media_source(from, params, learning) {
            return;
        }
        if self.session.on_rtcp(bytes, now).is_ok() && !muxed && !params.rtcp_mux {
            self.latched = Some(from);
        }
    }

    /// Send a report when one is due, and score the line.
    async fn on_timeout(
        &mut self,
        now: Instant,
        io: (&UdpSocket, &Mutex<RtpSender>),
        params: &MediaParams,
        learning: &SourceLearning,
        conferenced: Option<&(Conference, MemberKey)>,
    ) {
        let sent = sent(io.1);
        if !self.session.handle_timeout(now, sent, &mut self.buf) {
            return;
        }
        if let Some(dest) = self.destination(params, learning) {
            let socket = if params.rtcp_mux { io.0 } else { &*self.socket };
            socket.send_to(&self.buf, dest).await.ok();
        }
        let figures = self.session.figures();
        // Nothing heard yet either way (a silent or held phone): nothing to score.
        if figures.remote.is_none() && !self.session.receiving() {
            return;
        }
        let mos = quality::mos(&figures.conditions());
        self.mos = Some(mos);
        if let Some((conf, member)) = conferenced {
            let change = self.alarm.update(mos, now).map(|c| match c {
                Change::Degraded => QualityState::Degraded,
                Change::Recovered => QualityState::Recovered,
            });
            let quality = Quality {
                rtt_ms: figures.rtt.map(|d| d.as_secs_f64() * 1000.0),
                remote_lost: figures.remote.map(|r| r.fraction_lost),
                remote_jitter_ms: figures.remote.map(|r| r.jitter_ms),
                mos: Some(mos),
            };
            conf.set_quality(*member, quality, change);
        }
    }

    /// The call ends: a last report with BYE.
    async fn bye(
        &mut self,
        rtp_socket: &UdpSocket,
        rtp: &Mutex<RtpSender>,
        params: &MediaParams,
        learning: &SourceLearning,
    ) {
        let Some(dest) = self.destination(params, learning) else {
            return;
        };
        self.session.bye(Instant::now(), sent(rtp), &mut self.buf);
        let socket = if params.rtcp_mux {
            rtp_socket
        } else {
            &*self.socket
        };
        socket.send_to(&self.buf, dest).await.ok();
    }
}

/// What the stream's sender has sent, for a sender report.
fn sent(rtp: &Mutex<RtpSender>) -> Sent {
    let rtp = lock(rtp);
    let (packets, octets) = rtp.counts();
    Sent {
        packets,
        octets,
        rtp_timestamp: rtp.timestamp(),
    }
}

/// Received audio for the conference, split into 20 ms frames.
fn to_conference(conf: &Conference, member: MemberKey, rtp: &packet::RtpView<'_>, at: Instant) {
    for (k, chunk) in rtp.payload.chunks(FRAME).enumerate() {
        let mut payload = [0u8; FRAME];
        payload[..chunk.len()].copy_from_slice(chunk);
        conf.media(MediaIn {
            member,
            ts: rtp.timestamp.wrapping_add((k * FRAME) as u32),
            len: chunk.len() as u16,
            payload,
            at,
        });
    }
}

async fn run(
    io: Io,
    mut rtcp: Rtcp,
    mut params: MediaParams,
    mut dtmf: Dtmf,
    mut commands: mpsc::UnboundedReceiver<LegCommand>,
    events: mpsc::UnboundedSender<LegEvent>,
    cancel: CancellationToken,
) -> LegStats {
    let mut stats = LegStats::default();
    let mut pacer = Pacer::new(Instant::now(), Duration::from_millis(20));
    let Io {
        socket,
        rtp: sender,
        rtp_timeout,
        mut learning,
    } = io;
    let mut player = Player::new();
    let mut conferenced: Option<(Conference, MemberKey)> = None;
    let mut last_rx = Instant::now();
    let mut timed_out = false;
    let mut pcm = [0i16; FRAME];
    let mut payload = [0u8; FRAME];
    let mut out = Vec::with_capacity(12 + FRAME);
    let mut buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 2048];
    let mut playing: Option<u64> = None;
    loop {
        let dtmf_deadline = dtmf.next_deadline();
        let rtcp_deadline = rtcp.session.poll_timeout();
        let watch_rtp = params.send && !timed_out;
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            cmd = commands.recv() => match cmd {
                None => break,
                Some(LegCommand::Play { samples, looped, id }) => {
                    player.play(samples, looped);
                    playing = Some(id);
                }
                Some(LegCommand::Stop) => player.stop(),
                Some(LegCommand::Update(p)) => {
                    dtmf.renegotiated(p.dtmf_pt);
                    if p.send && !params.send {
                        lock(&sender).start_talkspurt();
                        last_rx = Instant::now();
                    }
                    if p.remote != params.remote {
                        learning.renegotiated(p.remote);
                        if let (Some((conf, member)), Some(dest)) = (&conferenced, learning.destination()) {
                            conf.set_dest(*member, dest);
                        }
                    }
                    if let Some((conf, member)) = &conferenced {
                        if p.send != params.send {
                            conf.set_held(*member, !p.send);
                        }
                    }
                    params = p;
                }
                Some(LegCommand::Conferenced { conference, member }) => {
                    player.stop();
                    if let Some(dest) = learning.destination() {
                        conference.set_dest(member, dest);
                    }
                    if !params.send {
                        conference.set_held(member, true);
                    }
                    conferenced = Some((conference, member));
                }
            },
            r = rtcp.socket.recv_from(&mut rtcp_buf) => {
                let Ok((len, from)) = r else { continue };
                rtcp.on_datagram(&rtcp_buf[..len], from, false, &params, &learning, Instant::now());
            }
            r = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                if rtcp::is_rtcp(&buf[..len]) {
                    rtcp.on_datagram(&buf[..len], from, true, &params, &learning, Instant::now());
                    continue;
                }
                match packet::parse(&buf[..len]) {
                    Ok(rtp) => {
                        let now = Instant::now();
                        match learning.on_packet(from, rtp.ssrc, rtp.seq, now) {
                            // Not the caller's: not mixed, not digits, not answered.
                            Verdict::Foreign(_) => continue,
                            Verdict::Accept { switched: true } => {
                                if let Some((conf, member)) = &conferenced {
                                    conf.set_dest(*member, from);
                                }
                            }
                            Verdict::Accept { switched: false } => {}
                        }
                        stats.received += 1;
                        last_rx = now;
                        let audio = rtp.pt == params.payload_type;
                        rtcp.session.on_rtp(rtp.ssrc, rtp.seq, rtp.timestamp, audio, now);
                        dtmf.on_packet(&rtp, &params, now, &events);
                        if let Some((conf, member)) = &conferenced {
                            if rtp.pt == params.payload_type {
                                to_conference(conf, *member, &rtp, now);
                            }
                        }
                    }
                    Err(_) => stats.not_rtp += 1,
                }
            }
            _ = tokio::time::sleep_until(rtcp_deadline.into()) => {
                rtcp.on_timeout(Instant::now(), (&socket, &sender), &params, &learning, conferenced.as_ref()).await;
            }
            _ = sleep_until_some(dtmf_deadline), if dtmf_deadline.is_some() => {
                dtmf.on_timeout(Instant::now(), &events);
            }
            _ = tokio::time::sleep_until((last_rx + rtp_timeout).into()), if watch_rtp => {
                timed_out = true;
                events.send(LegEvent::RtpTimeout).ok();
            }
            _ = tokio::time::sleep_until(pacer.next_deadline().into()), if conferenced.is_none() => {
                let due = pacer.poll(Instant::now());
                if due.skipped > 0 {
                    // Starved for longer than a burst may catch up: leave a gap
                    // in RTP time rather than send a flood of packets.
                    stats.late_ticks += due.skipped;
                    lock(&sender).skip((due.skipped * FRAME as u64) as u32);
                }
                for _ in 0..due.frames {
                    player.next_frame(&mut pcm);
                    if player.take_finished() {
                        if let Some(id) = playing.take() {
                            events.send(LegEvent::PlaybackDone(id)).ok();
                        }
                    }
                    let dest = learning.destination();
                    match dest {
                        Some(dest) if params.send => {
                            params.codec.encode(&pcm, &mut payload);
                            lock(&sender).packetize(params.payload_type, &payload, FRAME as u32, &mut out);
                            if socket.send_to(&out, dest).await.is_ok() {
                                stats.sent += 1;
                            }
                        }
                        _ => lock(&sender).skip(FRAME as u32),
                    }
                }
            }
        }
    }
    rtcp.bye(&socket, &sender, &params, &learning).await;
    stats.foreign = learning.counters().total();
    stats.rtcp = rtcp.session.counters();
    stats.figures = rtcp.session.figures();
    stats.mos = rtcp.mos;
    stats
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The shared RTP numbering; a poisoned lock still holds valid counters.
fn lock(rtp: &Mutex<RtpSender>) -> std::sync::MutexGuard<'_, RtpSender> {
    rtp.lock().unwrap_or_else(|e| e.into_inner())
}
