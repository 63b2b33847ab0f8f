//! A browser member's media (sans-IO): WebRTC through str0m's `Rtc`, which
//! does ICE (lite: we only answer the browser's checks, on our one host
//! candidate), DTLS-SRTP and RTCP. We take the browser's Opus frames for
//! the room and hand it the room's mix, Opus at 48 kHz RTP time. It is fed
//! datagrams and the 20 ms tick with an `Instant`, like [`MediaSession`]
//! (crate::call::media::MediaSession), and queues the datagrams to send.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::SdpOffer;
use str0m::format::Codec as WebCodec;
use str0m::media::{MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use super::media::{MediaEvent, MediaParams, MediaStats};
use crate::media::codec::{Codec, Encoder, OpusParams, MAX_PAYLOAD};
use crate::media::mixer;

/// Frames heard but not yet taken by the mixer, at most (a burst after a
/// stall is cut here rather than kept without bound).
const HEARD_MAX: usize = 16;
/// Datagrams waiting to be sent, at most.
const SEND_MAX: usize = 64;

/// Why a browser's offer was refused.
#[derive(Debug, thiserror::Error)]
pub enum OfferError {
    #[error("not an SDP offer: {0}")]
    Sdp(String),
    #[error("the offer has no audio with Opus")]
    NoOpus,
    #[error("{0}")]
    Refused(String),
}

/// One browser's media.
pub struct WebSession {
    rtc: Rtc,
    /// Our socket, the one host candidate.
    local: SocketAddr,
    mid: Option<Mid>,
    pt: Option<Pt>,
    params: MediaParams,
    encoder: Option<Encoder>,
    payload: Vec<u8>,
    /// RTP time of the next frame we send (48 kHz).
    media_time: u64,
    /// The browser's Opus frames for the room: RTP time and payload.
    heard: VecDeque<(u32, Arc<[u8]>)>,
    /// Datagrams to send, with their destination.
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: Vec<MediaEvent>,
    /// str0m's next deadline.
    timeout: Instant,
    rtp_timeout: Duration,
    last_rx: Instant,
    connected: bool,
    timed_out: bool,
    stats: MediaStats,
}

impl WebSession {
    /// Take a browser's offer for media on `local`; returns the session and
    /// its SDP answer.
    pub fn accept(
        offer: &str,
        local: SocketAddr,
        rtp_timeout: Duration,
        now: Instant,
    ) -> Result<(WebSession, String), OfferError> {
        let audio_mid = audio_mid(offer).ok_or(OfferError::NoOpus);
        let offer = SdpOffer::from_sdp_string(offer).map_err(|e| OfferError::Sdp(e.to_string()))?;
        let audio_mid = audio_mid?;
        let mut rtc = Rtc::builder()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            // The room's jitter buffer orders frames: hand them over as they come.
            .set_reordering_size_audio(0)
            .set_stats_interval(None)
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| OfferError::Refused(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| OfferError::Refused(e.to_string()))?;
        let mut session = WebSession {
            rtc,
            local,
            mid: None,
            pt: None,
            params: MediaParams {
                codec: Codec::Opus,
                payload_type: 0,
                remote: None,
                send: true,
                dtmf_pt: None,
                rtcp_mux: true,
                rtcp: None,
                opus: OpusParams {
                    max_playback_rate: None,
                    inband_fec: true,
                },
                srtp: None,
            },
            encoder: None,
            payload: Vec::with_capacity(MAX_PAYLOAD),
            media_time: u64::from(rand::random::<u16>()),
            heard: VecDeque::with_capacity(HEARD_MAX),
            transmits: VecDeque::with_capacity(8),
            events: Vec::with_capacity(2),
            timeout: now,
            rtp_timeout,
            last_rx: now,
            connected: false,
            timed_out: false,
            stats: MediaStats::default(),
        };
        session.drain();
        let pt = session.rtc.writer(audio_mid).and_then(|w| {
            w.payload_params()
                .find(|p| p.spec().codec == WebCodec::Opus)
                .map(|p| p.pt())
        });
        let (mid, Some(pt)) = (audio_mid, pt) else {
            return Err(OfferError::NoOpus);
        };
        session.mid = Some(mid);
        session.pt = Some(pt);
        session.params.payload_type = *pt;
        session.encoder = Encoder::new(Codec::Opus, session.params.opus)
            .map_err(|e| OfferError::Refused(e.to_string()))
            .map(Some)?;
        tracing::debug!(mid = %mid, pt = *pt, "browser media accepted");
        Ok((session, answer.to_sdp_string()))
    }

    /// Everything str0m has to say after an input: datagrams to send,
    /// media heard, state changes, its next deadline.
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if self.transmits.len() < SEND_MAX {
                        self.transmits.push_back((t.destination, t.contents.into()));
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    tracing::debug!(error = %e, "browser media failed");
                    self.end();
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::MediaData(d) if Some(d.mid) == self.mid && Some(d.pt) == self.pt => {
                self.stats.received += 1;
                self.last_rx = d.network_time;
                if self.heard.len() == HEARD_MAX {
                    self.heard.pop_front();
                }
                // The RTP timestamp: str0m extends it to 64 bits.
                self.heard.push_back((d.time.numer() as u32, d.data));
            }
            Event::Connected => {
                self.connected = true;
                tracing::info!("browser media connected");
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                tracing::info!("browser media disconnected");
                self.end();
            }
            _ => {}
        }
    }

    /// The browser is gone: the call ends as if its RTP had stopped.
    fn end(&mut self) {
        if !self.timed_out {
            self.timed_out = true;
            self.events.push(MediaEvent::RtpTimeout);
        }
    }

    /// The media's parameters as the room reads them (Opus, sending).
    pub fn params(&self) -> &MediaParams {
        &self.params
    }

    /// A datagram on our socket, received at `at`: STUN, DTLS or SRTP.
    pub fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, at: Instant) {
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, bytes) else {
            self.stats.not_rtp += 1;
            return;
        };
        let input = Input::Receive(at, receive);
        if !self.rtc.accepts(&input) {
            self.stats.foreign.wrong_ip += 1;
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(error = %e, "browser datagram refused");
        }
        self.drain();
    }

    /// The next frame heard, for the room: its RTP time and Opus payload.
    pub fn next_heard(&mut self) -> Option<(u32, Arc<[u8]>)> {
        self.heard.pop_front()
    }

    /// The next datagram to send.
    pub fn next_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// One 20 ms frame of the room's mix for the browser: 16 kHz audio to
    /// encode, or an Opus payload.
    pub fn audio_frame(&mut self, frame: Option<mixer::Output<'_>>, now: Instant) {
        let time = self.media_time;
        self.media_time += u64::from(Codec::Opus.frame_ts());
        let (Some(mid), Some(pt), true) = (self.mid, self.pt, self.connected) else {
            return;
        };
        match frame {
            Some(mixer::Output::Pcm(pcm)) => {
                let encoded = self
                    .encoder
                    .as_mut()
                    .map(|e| e.encode(pcm, &mut self.payload));
                if !matches!(encoded, Some(Ok(()))) {
                    return;
                }
            }
            // Already Opus.
            Some(mixer::Output::Encoded(bytes)) => {
                self.payload.clear();
                self.payload.extend_from_slice(bytes);
            }
            None => return,
        }
        let Some(writer) = self.rtc.writer(mid) else {
            return;
        };
        let rtp_time = MediaTime::new(time, str0m::media::Frequency::FORTY_EIGHT_KHZ);
        match writer.write(pt, now, rtp_time, self.payload.as_slice()) {
            Ok(()) => self.stats.sent += 1,
            Err(e) => tracing::debug!(error = %e, "frame not sent"),
        }
        self.drain();
        // str0m's pacer lets the packet go once its clock reaches `now`:
        // this tick, not when the session's timers are next looked at.
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(error = %e, "browser media timer");
        }
        self.drain();
    }

    /// The media thread fell `frames` ticks behind: a gap in RTP time.
    pub fn skip(&mut self, frames: u64) {
        self.stats.late_ticks += frames;
        self.media_time += frames * u64::from(Codec::Opus.frame_ts());
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work.
    pub fn poll_timeout(&self) -> Instant {
        match self.timed_out {
            true => self.timeout,
            false => self.timeout.min(self.last_rx + self.rtp_timeout),
        }
    }

    /// str0m's timers (ICE consent, DTLS retransmits, RTCP) and ours: no
    /// media for the RTP timeout ends the call.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.timed_out && now >= self.last_rx + self.rtp_timeout {
            tracing::info!("no media from the browser");
            self.end();
        }
        if now >= self.timeout {
            if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(error = %e, "browser media timer");
            }
            self.drain();
        }
    }

    /// The call ends: str0m forgets the peer (nothing more is sent).
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.transmits.clear();
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        (!self.events.is_empty()).then(|| self.events.remove(0))
    }

    pub fn stats(&self) -> MediaStats {
        self.stats
    }

    /// DTLS is done and media may flow.
    pub fn connected(&self) -> bool {
        self.connected
    }
}

/// The `a=mid` of the offer's first audio section (str0m names its media
/// only once DTLS is up; the room needs it at once).
fn audio_mid(sdp: &str) -> Option<Mid> {
    let mut in_audio = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
        } else if let Some(mid) = line.strip_prefix("a=mid:").filter(|_| in_audio) {
            return Some(Mid::from(mid));
        }
    }
    None
}
