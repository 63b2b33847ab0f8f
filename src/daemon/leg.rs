//! One call's media leg: the RTP socket, the 20 ms send clock and prompt
//! playback. It only moves bytes between the socket and the sans-IO parts
//! (pacer, player, G.711, RTP packets).

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO parts

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::media::g711::Codec;
use crate::media::player::{Player, FRAME};
use crate::rtp::pacer::Pacer;
use crate::rtp::packet::{self, RtpSender};

/// How media flows, from the negotiated SDP.
#[derive(Debug, Clone, Copy)]
pub struct MediaParams {
    pub codec: Codec,
    pub payload_type: u8,
    /// Where the SDP says to send; replaced by where packets come from.
    pub remote: Option<SocketAddr>,
    /// False while the caller holds the call (sendonly/inactive/0.0.0.0).
    pub send: bool,
}

pub enum LegCommand {
    Play { samples: Arc<[i16]>, looped: bool },
    Stop,
    Update(MediaParams),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// The clip asked for with `looped: false` has been sent to its end.
    PlaybackDone,
}

/// Counters reported when the call ends.
#[derive(Debug, Default, Clone, Copy)]
pub struct LegStats {
    pub sent: u64,
    pub received: u64,
    pub not_rtp: u64,
    pub foreign: u64,
    pub late_ticks: u64,
}

/// The running leg, owned by the call task.
pub struct Leg {
    commands: mpsc::UnboundedSender<LegCommand>,
    pub events: mpsc::UnboundedReceiver<LegEvent>,
    task: tokio::task::JoinHandle<LegStats>,
    cancel: CancellationToken,
}

impl Leg {
    pub fn start(socket: UdpSocket, params: MediaParams) -> Leg {
        let (commands, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(socket, params, cmd_rx, ev_tx, cancel.clone()));
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

async fn run(
    socket: UdpSocket,
    mut params: MediaParams,
    mut commands: mpsc::UnboundedReceiver<LegCommand>,
    events: mpsc::UnboundedSender<LegEvent>,
    cancel: CancellationToken,
) -> LegStats {
    let mut stats = LegStats::default();
    let mut pacer = Pacer::new(Instant::now(), Duration::from_millis(20));
    let mut sender = RtpSender::random();
    let mut player = Player::new();
    let mut latched: Option<SocketAddr> = None;
    let mut pcm = [0i16; FRAME];
    let mut payload = [0u8; FRAME];
    let mut out = Vec::with_capacity(12 + FRAME);
    let mut buf = vec![0u8; 2048];
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            cmd = commands.recv() => match cmd {
                None => break,
                Some(LegCommand::Play { samples, looped }) => player.play(samples, looped),
                Some(LegCommand::Stop) => player.stop(),
                Some(LegCommand::Update(p)) => {
                    if p.send && !params.send {
                        sender.start_talkspurt();
                    }
                    if p.remote != params.remote {
                        latched = None;
                    }
                    params = p;
                }
            },
            r = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = r else { continue };
                match packet::parse(&buf[..len]) {
                    Ok(_) => {
                        stats.received += 1;
                        match latched {
                            None => latched = Some(from),
                            Some(addr) if addr != from => stats.foreign += 1,
                            Some(_) => {}
                        }
                    }
                    Err(_) => stats.not_rtp += 1,
                }
            }
            _ = tokio::time::sleep_until(pacer.next_deadline().into()) => {
                let due = pacer.poll(Instant::now());
                if due.skipped > 0 {
                    // Starved for longer than a burst may catch up: leave a gap
                    // in RTP time rather than send a flood of packets.
                    stats.late_ticks += due.skipped;
                    sender.skip((due.skipped * FRAME as u64) as u32);
                }
                for _ in 0..due.frames {
                    player.next_frame(&mut pcm);
                    if player.take_finished() {
                        events.send(LegEvent::PlaybackDone).ok();
                    }
                    let dest = latched.or(params.remote);
                    match dest {
                        Some(dest) if params.send => {
                            params.codec.encode(&pcm, &mut payload);
                            sender.packetize(params.payload_type, &payload, FRAME as u32, &mut out);
                            if socket.send_to(&out, dest).await.is_ok() {
                                stats.sent += 1;
                            }
                        }
                        _ => sender.skip(FRAME as u32),
                    }
                }
            }
        }
    }
    stats
}
