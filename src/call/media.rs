//! One call's media session (sans-IO): who the caller's packets come from,
//! the RTP stream we send, prompt playback, the DTMF receivers on what comes
//! in, RTCP and the line's quality, and the RTP timeout. It is fed received
//! datagrams and the 20 ms tick with an `Instant`, and hands back packets to
//! send, audio for the room and events for the call; the media thread that
//! owns the sockets only moves them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use super::session::MediaParams;
use crate::dtmf::inband::{Detection, InbandDetector};
use crate::dtmf::keyer::Keyer;
use crate::dtmf::rfc4733::{EventReceiver, Press};
use crate::dtmf::Source;
use crate::events::QualityState;
use crate::media::codec::{Codec, Decoder, Encoder, MAX_PAYLOAD, NARROW_FRAME, ROOM_FRAME};
use crate::media::halfband::{Downsampler, Upsampler};
use crate::media::mixer::Output;
use crate::media::player::{Player, FRAME};
use crate::media::quality::{self, Change, QualityAlarm};
use crate::rtp::learning::{ForeignCounters, SourceLearning, Verdict};
use crate::rtp::packet::{self, RtpSender};
use crate::rtp::rtcp::{self, Figures, RtcpCounters, RtcpSession, Sent};
use crate::rtp::srtp::{SrtpKeys, SrtpSession};

/// How long a member's MOS must stay below the threshold before the alarm.
const QUALITY_HOLD: Duration = Duration::from_secs(10);

/// What the call asks of its media.
pub enum MediaCommand {
    /// Play a clip; `id` comes back in [`MediaEvent::PlaybackDone`].
    Play {
        /// 8 kHz.
        samples: Arc<[i16]>,
        /// The same at 16 kHz, for a wideband call.
        wide: Option<Arc<[i16]>>,
        looped: bool,
        id: u64,
    },
    Stop,
    Update(MediaParams),
    /// Send key presses as RFC 4733 events, after `lead_frames` of audio.
    Key {
        digits: String,
        lead_frames: u32,
    },
    /// Keep what the caller says for `frames` frames (its name); it comes
    /// back in [`MediaEvent::Captured`] with `id`.
    Capture {
        frames: u32,
        id: u64,
    },
}

/// What the media tells the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// What the caller said for [`MediaCommand::Capture`] `id` (8 kHz).
    Captured(u64, Arc<[i16]>),
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

/// Counters reported when the call ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaStats {
    pub sent: u64,
    pub received: u64,
    pub not_rtp: u64,
    /// Packets not from the learned media source (dropped, never answered).
    pub foreign: ForeignCounters,
    pub late_ticks: u64,
    /// SRTP/SRTCP packets that failed authentication or were replays (dropped).
    pub srtp_rejected: u64,
    pub rtcp: RtcpCounters,
    /// The line as the last RTCP report saw it.
    pub figures: Figures,
    pub mos: Option<f64>,
}

impl MediaStats {
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

/// Frames kept out of the mix after the last with key tones in it.
const KEYED_HANG: u8 = 1;

/// What a session is started with.
pub struct MediaSetup {
    pub params: MediaParams,
    /// Run the tone detector on received audio.
    pub inband: bool,
    pub rtp_timeout: Duration,
    /// Judges who the caller's media (and RTCP) comes from.
    pub learning: SourceLearning,
    /// Our SDES CNAME.
    pub cname: String,
    pub quality_alarm_mos: f64,
}

/// Which of the call's two sockets a datagram uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Rtp,
    /// The RTP port + 1.
    Rtcp,
}

/// A packet to send.
#[derive(Debug, PartialEq, Eq)]
pub struct Transmit<'a> {
    pub to: SocketAddr,
    pub via: Via,
    pub bytes: &'a [u8],
}

/// Received audio for the room: one RTP payload in the call's codec.
#[derive(Debug, Clone, Copy)]
pub struct Audio<'a> {
    pub ts: u32,
    pub payload: &'a [u8],
    /// Key tones were heard in it (or just before): keep it out of the mix.
    pub keyed: bool,
}

/// The session.
pub struct MediaSession {
    params: MediaParams,
    sender: RtpSender,
    learning: SourceLearning,
    rtcp: RtcpSession,
    /// Where the far end's RTCP came from, when it is not where its SDP said
    /// (NAT): our reports follow it (symmetric RTCP, RFC 4961).
    rtcp_latched: Option<SocketAddr>,
    alarm: QualityAlarm,
    /// The latest quality and alarm change, for the room to take.
    quality: Option<(Quality, Option<QualityState>)>,
    rfc4733: Option<EventReceiver>,
    tones: Option<Box<InbandDetector>>,
    /// Frames still to keep out of the mix after the last one with key tones.
    keyed_hang: u8,
    presses: Vec<Press>,
    detections: Vec<Detection>,
    player: Player,
    playing: Option<u64>,
    /// The call's encoder (`None` only if libopus could not make one).
    encoder: Option<Encoder>,
    /// Received audio at 8 kHz, for the tone detector and name capture
    /// (G.711 needs none).
    narrow: Option<Decoder>,
    /// 8 kHz prompts into a wideband codec.
    up: Upsampler,
    /// The clip playing is at 16 kHz.
    wide_prompt: bool,
    /// The payload being sent.
    payload: Vec<u8>,
    /// Key presses to send.
    keyer: Keyer,
    /// What the caller says, kept: its id, frames still to wait, the audio.
    capture: Option<(u64, u32, Vec<i16>)>,
    events: Vec<MediaEvent>,
    rtp_timeout: Duration,
    last_rx: Instant,
    timed_out: bool,
    stats: MediaStats,
    /// The packet being sent.
    out: Vec<u8>,
    /// SRTP, when the call negotiated it.
    srtp: Option<SrtpSession>,
}

/// The SRTP session for `keys`; `Err` when keys were agreed and the
/// contexts could not be made (then nothing is sent or taken in plain).
fn srtp_session(keys: Option<SrtpKeys>) -> Result<Option<SrtpSession>, ()> {
    let Some(keys) = keys else { return Ok(None) };
    SrtpSession::new(keys).map(Some).map_err(|e| {
        tracing::error!(error = %e, "SRTP not set up: media dropped");
    })
}

impl MediaSession {
    pub fn new(setup: MediaSetup, now: Instant, wall: SystemTime) -> Self {
        let sender = RtpSender::random();
        let params = setup.params;
        MediaSession {
            rtcp: RtcpSession::new(
                sender.ssrc(),
                &setup.cname,
                params.codec.clock_rate(),
                now,
                wall,
                rand::random(),
            ),
            sender,
            learning: setup.learning,
            rtcp_latched: None,
            alarm: QualityAlarm::new(setup.quality_alarm_mos, QUALITY_HOLD),
            quality: None,
            rfc4733: params.dtmf_pt.map(EventReceiver::new),
            tones: setup.inband.then(|| Box::new(InbandDetector::new())),
            keyed_hang: 0,
            presses: Vec::with_capacity(4),
            detections: Vec::with_capacity(4),
            player: Player::new(),
            playing: None,
            encoder: make_encoder(&params),
            narrow: make_narrow(params.codec),
            up: Upsampler::default(),
            wide_prompt: false,
            // Room for the largest Opus payload: no allocation mid-call.
            payload: Vec::with_capacity(MAX_PAYLOAD),
            keyer: Keyer::new(),
            capture: None,
            events: Vec::with_capacity(4),
            rtp_timeout: setup.rtp_timeout,
            last_rx: now,
            timed_out: false,
            stats: MediaStats::default(),
            // A header, the largest payload and an SRTP tag.
            out: Vec::with_capacity(MAX_PAYLOAD + 64),
            srtp: srtp_session(params.srtp).unwrap_or(None),
            params,
        }
    }

    pub fn params(&self) -> &MediaParams {
        &self.params
    }

    pub fn command(&mut self, cmd: MediaCommand, now: Instant) {
        match cmd {
            MediaCommand::Play {
                samples,
                wide,
                looped,
                id,
            } => {
                match wide.filter(|_| self.params.codec.wideband()) {
                    Some(wide) => {
                        self.player.play(wide, looped);
                        self.wide_prompt = true;
                    }
                    None => {
                        self.player.play(samples, looped);
                        self.wide_prompt = false;
                    }
                }
                self.playing = Some(id);
            }
            MediaCommand::Stop => self.player.stop(),
            MediaCommand::Capture { frames, id } => {
                let samples = Vec::with_capacity(frames as usize * FRAME);
                self.capture = Some((id, frames, samples));
            }
            MediaCommand::Key {
                digits,
                lead_frames,
            } => {
                if let Err(e) = self.keyer.key(&digits, lead_frames) {
                    tracing::warn!(error = %e, "digits not sent");
                }
            }
            MediaCommand::Update(p) => {
                if self.rfc4733.as_ref().map(EventReceiver::payload_type) != p.dtmf_pt {
                    self.rfc4733 = p.dtmf_pt.map(EventReceiver::new);
                }
                if p.send && !self.params.send {
                    self.sender.start_talkspurt();
                    self.last_rx = now;
                }
                if p.remote != self.params.remote {
                    self.learning.renegotiated(p.remote);
                }
                if p.codec != self.params.codec || p.opus != self.params.opus {
                    self.encoder = make_encoder(&p);
                    self.narrow = make_narrow(p.codec);
                    self.rtcp.set_rate(p.codec.clock_rate());
                }
                if p.srtp != self.params.srtp {
                    self.rekey(p.srtp);
                }
                self.params = p;
            }
        }
    }

    /// The call joined a room: the room's mix replaces prompts, and the
    /// stream starts a talkspurt.
    pub fn seated(&mut self) {
        self.player.stop();
        self.sender.start_talkspurt();
    }

    /// New SRTP keys from a renegotiation: contexts whose key did not
    /// change keep their state.
    fn rekey(&mut self, keys: Option<SrtpKeys>) {
        match (keys, self.srtp.as_mut()) {
            (Some(k), Some(s)) => {
                if let Err(e) = s.rekey(k) {
                    tracing::error!(error = %e, "SRTP not rekeyed: media dropped");
                    self.srtp = None;
                }
            }
            (k, _) => self.srtp = srtp_session(k).unwrap_or(None),
        }
    }

    /// The plain text of a received datagram (decrypted in place when the
    /// call uses SRTP); `None`: it failed authentication or was a replay,
    /// and is counted and dropped before anything else sees it.
    fn unprotect<'a>(&mut self, bytes: &'a mut [u8], rtcp: bool) -> Option<&'a [u8]> {
        if self.params.srtp.is_none() {
            return Some(bytes);
        }
        let plain = match self.srtp.as_mut() {
            Some(s) if rtcp => s.unprotect_rtcp(bytes),
            Some(s) => s.unprotect_rtp(bytes),
            None => Err(crate::rtp::srtp::SrtpError::Keys("no context".into())),
        };
        match plain {
            Ok(n) => Some(&bytes[..n]),
            Err(_) => {
                self.stats.srtp_rejected += 1;
                None
            }
        }
    }

    /// Protect the packet in `out` when the call uses SRTP; `false`: it
    /// must not be sent.
    fn protect(&mut self, rtcp: bool) -> bool {
        if self.params.srtp.is_none() {
            return true;
        }
        let sealed = match self.srtp.as_mut() {
            Some(s) if rtcp => s.protect_rtcp(&mut self.out),
            Some(s) => s.protect_rtp(&mut self.out),
            None => return false,
        };
        sealed
            .map_err(|e| tracing::debug!(error = %e, "packet not sent"))
            .is_ok()
    }

    /// The RTP packet in `out`, protected, for `to`.
    fn rtp_transmit(&mut self, to: SocketAddr) -> Option<Transmit<'_>> {
        self.protect(false).then_some(Transmit {
            to,
            via: Via::Rtp,
            bytes: &self.out,
        })
    }

    /// A datagram on the RTP socket, received at `at`. Returns the audio
    /// for the room when it is the caller's and in the call's codec. An
    /// SRTP packet is decrypted in place in `bytes`.
    pub fn on_rtp<'a>(
        &mut self,
        bytes: &'a mut [u8],
        from: SocketAddr,
        at: Instant,
    ) -> Option<Audio<'a>> {
        let muxed_rtcp = rtcp::is_rtcp(bytes);
        let bytes = self.unprotect(bytes, muxed_rtcp)?;
        if muxed_rtcp {
            self.on_rtcp_datagram(bytes, from, true, at);
            return None;
        }
        let Ok(rtp) = packet::parse(bytes) else {
            self.stats.not_rtp += 1;
            return None;
        };
        if let Verdict::Foreign(_) = self.learning.on_packet(from, rtp.ssrc, rtp.seq, at) {
            // Not the caller's: not mixed, not digits, not answered.
            return None;
        }
        self.stats.received += 1;
        self.last_rx = at;
        let audio = rtp.pt == self.params.payload_type;
        self.rtcp
            .on_rtp(rtp.ssrc, rtp.seq, rtp.timestamp, audio, at);
        if let Some(rx) = self
            .rfc4733
            .as_mut()
            .filter(|_| Some(rtp.pt) == self.params.dtmf_pt)
        {
            rx.on_packet(
                rtp.pt,
                rtp.ssrc,
                rtp.seq,
                rtp.timestamp,
                rtp.marker,
                rtp.payload,
                at,
                &mut self.presses,
            );
        } else if let Some(det) = self.tones.as_mut().filter(|_| audio) {
            let hits = det.hit_blocks();
            let detections = &mut self.detections;
            narrow_pcm(self.params.codec, &mut self.narrow, rtp.payload, |pcm| {
                det.feed(pcm, detections)
            });
            // A tone's tail after its last full block lies in the next frame.
            self.keyed_hang = match det.hit_blocks() > hits {
                true => KEYED_HANG + 1,
                false => self.keyed_hang.saturating_sub(1),
            };
        }
        self.report_digits(at);
        if let Some((_, _, kept)) = self.capture.as_mut().filter(|_| audio) {
            narrow_pcm(self.params.codec, &mut self.narrow, rtp.payload, |pcm| {
                let room = kept.capacity() - kept.len();
                kept.extend_from_slice(&pcm[..pcm.len().min(room)]);
            });
        }
        audio.then_some(Audio {
            ts: rtp.timestamp,
            payload: rtp.payload,
            keyed: self.keyed_hang > 0,
        })
    }

    /// A datagram on the RTCP socket (SRTCP decrypted in place).
    pub fn on_rtcp(&mut self, bytes: &mut [u8], from: SocketAddr, at: Instant) {
        if let Some(bytes) = self.unprotect(bytes, true) {
            self.on_rtcp_datagram(bytes, from, false, at);
        }
    }

    /// RTCP is taken only from the media source's IP (or, before any media,
    /// the SDP's); the session then checks its SSRC.
    fn on_rtcp_datagram(&mut self, bytes: &[u8], from: SocketAddr, muxed: bool, at: Instant) {
        let source = self.learning.destination().or(self.params.remote);
        if source.is_none_or(|m| m.ip() != from.ip()) {
            return;
        }
        if self.rtcp.on_rtcp(bytes, at).is_ok() && !muxed && !self.params.rtcp_mux {
            self.rtcp_latched = Some(from);
        }
    }

    fn report_digits(&mut self, at: Instant) {
        let events_heard = self.presses.drain(..).map(|p| (p.digit, Source::Rfc4733));
        let tones_heard = self.detections.drain(..).map(|d| (d.digit, Source::Inband));
        for (digit, source) in events_heard.chain(tones_heard) {
            self.events.push(MediaEvent::Digit { digit, source, at });
        }
    }

    /// Where media goes: the learned source, while the far end receives.
    fn media_destination(&self) -> Option<SocketAddr> {
        self.learning.destination().filter(|_| self.params.send)
    }

    /// The next 20 ms of prompt (a call not in a room). `None`: nothing to
    /// send (no destination yet, or on hold); the RTP clock still advances.
    pub fn prompt_frame(&mut self) -> Option<Transmit<'_>> {
        if let Some((id, left, _)) = &mut self.capture {
            *left = left.saturating_sub(1);
            if *left == 0 {
                let id = *id;
                let kept = self.capture.take().map(|c| c.2).unwrap_or_default();
                self.events.push(MediaEvent::Captured(id, kept.into()));
            }
        }
        let wideband = self.params.codec.wideband();
        let mut wide = [0i16; ROOM_FRAME];
        let mut pcm = [0i16; FRAME];
        match (self.wide_prompt, wideband) {
            (true, true) => {
                self.player.next_frame(&mut wide);
            }
            (false, true) => {
                self.player.next_frame(&mut pcm);
                self.up.process(&pcm, &mut wide);
            }
            // A call moved to narrowband while a 16 kHz clip played.
            (true, false) => {
                self.player.next_frame(&mut wide);
                Downsampler::default().process(&wide, &mut pcm);
            }
            (false, false) => {
                self.player.next_frame(&mut pcm);
            }
        }
        if self.player.take_finished() {
            if let Some(id) = self.playing.take() {
                self.events.push(MediaEvent::PlaybackDone(id));
            }
        }
        if wideband {
            self.audio_frame(Some(Output::Pcm(&wide)))
        } else {
            self.audio_frame(Some(Output::Pcm(&pcm)))
        }
    }

    /// Send one 20 ms frame (the room's mix): encoded in the call's codec,
    /// or audio at its sample rate to encode. `None` skips the frame in RTP
    /// time.
    pub fn audio_frame(&mut self, frame: Option<Output<'_>>) -> Option<Transmit<'_>> {
        let frame_ts = self.params.codec.frame_ts();
        let (Some(to), Some(frame)) = (self.media_destination(), frame) else {
            self.sender.skip(frame_ts);
            return None;
        };
        if let Some(pt) = self.params.dtmf_pt {
            if let Some(event) = self.keyer.next_frame(self.sender.timestamp(), frame_ts) {
                // In the audio's place; its RTP time runs on underneath.
                self.sender.packetize_at(
                    pt,
                    &event.payload,
                    event.timestamp,
                    event.marker,
                    &mut self.out,
                );
                self.sender.skip(frame_ts);
                self.stats.sent += 1;
                return self.rtp_transmit(to);
            }
        }
        match frame {
            Output::Encoded(bytes) => {
                self.payload.clear();
                self.payload.extend_from_slice(bytes);
            }
            Output::Pcm(pcm) => {
                let encoded = self
                    .encoder
                    .as_mut()
                    .map(|e| e.encode(pcm, &mut self.payload));
                if !matches!(encoded, Some(Ok(()))) {
                    self.sender.skip(frame_ts);
                    return None;
                }
            }
        }
        self.sender.packetize(
            self.params.payload_type,
            &self.payload,
            frame_ts,
            &mut self.out,
        );
        self.stats.sent += 1;
        self.rtp_transmit(to)
    }

    /// The media thread fell `frames` ticks behind: leave a gap in RTP time
    /// rather than send a flood of packets.
    pub fn skip(&mut self, frames: u64) {
        self.stats.late_ticks += frames;
        let frame_ts = u64::from(self.params.codec.frame_ts());
        self.sender.skip((frames * frame_ts) as u32);
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.rtcp.poll_timeout();
        if let Some(d) = self.rfc4733.as_ref().and_then(EventReceiver::next_deadline) {
            at = at.min(d);
        }
        if self.params.send && !self.timed_out {
            at = at.min(self.last_rx + self.rtp_timeout);
        }
        at
    }

    /// Timers: an RFC 4733 press whose end was lost, the RTP timeout, and
    /// RTCP reports (returned to send).
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Transmit<'_>> {
        if let Some(rx) = self.rfc4733.as_mut() {
            rx.on_timeout(now, &mut self.presses);
            self.report_digits(now);
        }
        if self.params.send && !self.timed_out && now >= self.last_rx + self.rtp_timeout {
            self.timed_out = true;
            self.events.push(MediaEvent::RtpTimeout);
        }
        if now < self.rtcp.poll_timeout() {
            return None;
        }
        let sent = self.sent();
        if !self.rtcp.handle_timeout(now, sent, &mut self.out) {
            return None;
        }
        self.score(now);
        self.rtcp_transmit()
    }

    /// Score the line after a report.
    fn score(&mut self, now: Instant) {
        let figures = self.rtcp.figures();
        // Nothing heard yet either way (a silent or held phone): nothing to score.
        if figures.remote.is_none() && !self.rtcp.receiving() {
            return;
        }
        let mos = quality::mos(&figures.conditions());
        self.stats.mos = Some(mos);
        let change = self.alarm.update(mos, now).map(|c| match c {
            Change::Degraded => QualityState::Degraded,
            Change::Recovered => QualityState::Recovered,
        });
        let q = Quality {
            rtt_ms: figures.rtt.map(|d| d.as_secs_f64() * 1000.0),
            remote_lost: figures.remote.map(|r| r.fraction_lost),
            remote_jitter_ms: figures.remote.map(|r| r.jitter_ms),
            mos: Some(mos),
        };
        // An alarm change not yet taken is kept.
        let change = change.or(self.quality.and_then(|(_, c)| c));
        self.quality = Some((q, change));
    }

    /// Where reports go and on which socket: muxed to the learned media
    /// source, else to the latched RTCP source, the SDP's `a=rtcp` or the
    /// media source's port + 1. SRTCP when the call uses SRTP.
    fn rtcp_transmit(&mut self) -> Option<Transmit<'_>> {
        let media = self.learning.destination();
        let p = &self.params;
        let (to, via) = if p.rtcp_mux {
            (media?, Via::Rtp)
        } else {
            let to = match (self.rtcp_latched, media, p.rtcp) {
                (Some(l), _, _) => l,
                // The media source is where the SDP said: so is its RTCP.
                (None, Some(m), Some(r)) if Some(m) == p.remote => r,
                // Learned elsewhere (NAT): the same address, the next port.
                (None, Some(m), _) => SocketAddr::new(m.ip(), m.port().wrapping_add(1)),
                (None, None, r) => r?,
            };
            (to, Via::Rtcp)
        };
        self.protect(true).then_some(Transmit {
            to,
            via,
            bytes: &self.out,
        })
    }

    /// The call ends: a last report with BYE.
    pub fn bye(&mut self, now: Instant) -> Option<Transmit<'_>> {
        let sent = self.sent();
        self.rtcp.bye(now, sent, &mut self.out);
        self.rtcp_transmit()
    }

    fn sent(&self) -> Sent {
        let (packets, octets) = self.sender.counts();
        Sent {
            packets,
            octets,
            rtp_timestamp: self.sender.timestamp(),
        }
    }

    /// The next event for the call.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    /// The latest quality, once per report, with the alarm's change if it moved.
    pub fn take_quality(&mut self) -> Option<(Quality, Option<QualityState>)> {
        self.quality.take()
    }

    /// Counters so far.
    pub fn stats(&self) -> MediaStats {
        MediaStats {
            foreign: self.learning.counters(),
            rtcp: self.rtcp.counters(),
            figures: self.rtcp.figures(),
            ..self.stats
        }
    }
}

fn make_encoder(params: &MediaParams) -> Option<Encoder> {
    Encoder::new(params.codec, params.opus)
        .map_err(|e| tracing::error!(error = %e, codec = %params.codec, "no encoder"))
        .ok()
}

fn make_narrow(codec: Codec) -> Option<Decoder> {
    if codec.g711().is_some() {
        return None;
    }
    Decoder::new(codec, 8000)
        .map_err(|e| tracing::error!(error = %e, %codec, "no decoder"))
        .ok()
}

/// A received payload as 8 kHz audio, handed to `f` in frames: G.711
/// directly (whatever its packet time), other codecs through `narrow`.
fn narrow_pcm(
    codec: Codec,
    narrow: &mut Option<Decoder>,
    payload: &[u8],
    mut f: impl FnMut(&[i16]),
) {
    if let Some(law) = codec.g711() {
        let mut pcm = [0i16; NARROW_FRAME];
        for chunk in payload.chunks(NARROW_FRAME) {
            let pcm = &mut pcm[..chunk.len()];
            law.decode(chunk, pcm);
            f(pcm);
        }
    } else if let Some(dec) = narrow.as_mut() {
        // Up to 120 ms of Opus in one packet.
        let mut long = [0i16; 6 * NARROW_FRAME];
        if let Ok(n) = dec.decode_packet(payload, &mut long) {
            for frame in long[..n.min(long.len())].chunks(NARROW_FRAME) {
                f(frame);
            }
        }
    }
}
