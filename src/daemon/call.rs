//! One inbound call's task: negotiates SDP, opens the media leg, and carries
//! out what the sans-IO [`InboundFlow`] asks, feeding it SIP and media events.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO parts

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::call::admission::Admission;
use crate::conference::{Conference, JoinError, JoinRequest, MemberKey, Notice};
use crate::config::Settings;
use crate::dtmf::info::digit_from_info;
use crate::dtmf::{DigitStream, DtmfMode, Source};
use crate::events::{Direction, Event, Events};
use crate::ivr::inbound::{Action, EndReason, Entry, InboundFlow, Input, Timers, Verdict};
use crate::ivr::throttle::{self, PinGuard};
use crate::rtp::learning::SourceLearning;
use crate::rtp::packet::RtpSender;
use crate::sip::call::{CallEvent, OfferedCall, Responder};

use super::leg::{Leg, LegCommand, LegEvent};
use super::ports::PortPool;
use super::prompts::PromptBook;
use super::registry::{CallCommand, CallRegistry, Listed};
use crate::call::session::{LocalMedia, SdpSession};

/// What every call shares.
pub struct CallContext {
    pub settings: Settings,
    pub prompts: PromptBook,
    pub ports: PortPool,
    pub advertised: IpAddr,
    pub shutdown: CancellationToken,
    pub events: Events,
    pub pin_guard: Mutex<PinGuard>,
    pub conference: Conference,
    pub calls: CallRegistry,
    pub admission: Admission,
    /// Every call task, inbound and outbound; shutdown waits for them.
    pub tasks: TaskTracker,
}

impl CallContext {
    /// A new call's SDP session for media on `port`. Without an events
    /// receiver telephone-event stays out of the SDP, so the phone sends
    /// tones (or INFO) instead.
    pub(super) fn sdp_session(&self, port: u16) -> SdpSession {
        SdpSession::new(LocalMedia {
            codecs: self.settings.codecs.clone(),
            events: listens(self.settings.dtmf_mode).0,
            address: self.advertised,
            port,
            session_id: u64::from(rand::random::<u32>()),
        })
    }
}

/// 64 × T1: how long a 200 OK is retransmitted waiting for the ACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(32);

/// Which DTMF receivers a mode turns on: (RFC 4733 events, in-band tones).
pub(super) fn listens(mode: DtmfMode) -> (bool, bool) {
    match mode {
        DtmfMode::Auto => (true, true),
        DtmfMode::Rfc4733 => (true, false),
        DtmfMode::Info => (false, false),
        DtmfMode::Inband => (false, true),
    }
}

pub async fn run(
    mut call: OfferedCall,
    listed: Listed,
    mut commands: tokio::sync::mpsc::UnboundedReceiver<CallCommand>,
    ctx: Arc<CallContext>,
) {
    let started = Instant::now();
    let call_id = listed.id().to_string();
    info!(from = %call.from, to = %call.to, source = %call.source, sip_call_id = %call.sip_call_id, "call offered");
    let (_, inband_on) = listens(ctx.settings.dtmf_mode);
    let socket = match ctx.ports.bind(ctx.settings.sip_listen.ip()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port");
            call.handle.reject(503);
            return;
        }
    };
    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let socket = Arc::new(socket);
    let rtp = Arc::new(Mutex::new(RtpSender::random()));
    let mut session = ctx.sdp_session(port);
    // RFC 3261 §13.2.1: an INVITE without SDP (late offer) gets our offer in
    // the 200 OK and the answer comes in the ACK; there is no early media then.
    let late_offer = call.offer.is_empty();
    let (_, params) = if late_offer {
        (session.offer(), session.provisional_media())
    } else {
        match session.answer(&call.offer) {
            Ok(answered) => answered,
            Err(e) => {
                warn!(error = %e, "offer refused");
                call.handle.reject(e.sip_status());
                return;
            }
        }
    };
    let mut media = params;
    let mut leg = Leg::start(
        socket.clone(),
        params,
        inband_on,
        rtp.clone(),
        ctx.settings.rtp_timeout,
        SourceLearning::new(params.remote, call.source.ip(), ctx.settings.rtp_strict),
    );
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let mut member: Option<MemberKey> = None;

    let timers = Timers {
        early_media: ctx.settings.early_media.filter(|_| !late_offer),
        idle: ctx.settings.idle_timeout,
        ack: ACK_TIMEOUT,
    };
    let entry = entry(&call, &ctx.settings);
    let direct = matches!(entry, Entry::Direct(_));
    let mut flow = InboundFlow::new(Instant::now(), timers, entry);
    let mut digits = DigitStream::new(ctx.settings.dtmf_mode);
    let from_user = uri_user(&call.from);
    let (caller_key, number_key) = throttle::keys(
        from_user,
        call.source.ip(),
        call.request_user.as_deref().unwrap_or(""),
    );
    let mut answered = false;
    // The prompt whose end the flow waits for; ends of replaced prompts are stale.
    let mut plays = 0u64;
    let mut waiting_for: Option<u64> = None;
    let reason = loop {
        while let Some(action) = flow.poll_action() {
            match action {
                Action::EarlyMedia => {
                    call.handle.progress(session.description().to_vec());
                    plays += 1;
                    leg.send(LegCommand::Play {
                        samples: ctx.prompts.early_media(),
                        looped: true,
                        id: plays,
                    });
                }
                Action::Ring => call.handle.ringing(),
                Action::Answer => {
                    answered = true;
                    leg.send(LegCommand::Stop);
                    call.handle.answer(session.description().to_vec());
                    info!(after_ms = started.elapsed().as_millis() as u64, "answered");
                }
                Action::Play(prompt) => match ctx.prompts.get(prompt.name()) {
                    Some(samples) => {
                        plays += 1;
                        waiting_for = Some(plays);
                        leg.send(LegCommand::Play {
                            samples,
                            looped: false,
                            id: plays,
                        });
                    }
                    None => flow.handle(Input::PlaybackDone, Instant::now()),
                },
                Action::StopPrompt => {
                    waiting_for = None;
                    leg.send(LegCommand::Stop);
                }
                Action::CheckPin(pin) => {
                    let verdict = check_pin(&ctx, &call_id, &pin, &caller_key, &number_key);
                    match &verdict {
                        Verdict::Room(room) => info!(%room, "PIN accepted"),
                        Verdict::Wrong => {
                            let failures = flow.pin_failures() + 1;
                            info!(pin = %throttle::redact(&pin), failures, "PIN rejected");
                            ctx.events.publish(Event::PinRejected {
                                call: call_id.clone(),
                                failures,
                            });
                        }
                        Verdict::LockedOut => {}
                    }
                    flow.verdict(verdict);
                }
                Action::Join(room) => {
                    let joined = ctx
                        .conference
                        .join(JoinRequest {
                            room: room.clone(),
                            call: call_id.clone(),
                            sip_call_id: call.sip_call_id.clone(),
                            from: call.from.clone(),
                            to: call.to.clone(),
                            direction: Direction::Inbound,
                            direct,
                            codec: media.codec,
                            payload_type: media.payload_type,
                            socket: socket.clone(),
                            dest: media.remote,
                            rtp: rtp.clone(),
                            notices: notice_tx.clone(),
                        })
                        .await;
                    match joined {
                        Ok(key) => {
                            member = Some(key);
                            session.lock_codec();
                            waiting_for = None;
                            leg.send(LegCommand::Conferenced {
                                conference: ctx.conference.clone(),
                                member: key,
                            });
                        }
                        Err(JoinError::Full) => {
                            warn!(%room, "room full");
                            flow.handle(Input::RoomFull, Instant::now());
                        }
                        Err(JoinError::Stopped) => flow.handle(Input::Shutdown, Instant::now()),
                    }
                }
                // The caller's own BYE or CANCEL was already answered by the stack.
                Action::Hangup(
                    EndReason::CallerHungUp | EndReason::CallerCancelled | EndReason::NoAck,
                ) => {}
                Action::Hangup(_) if answered => call.handle.hangup().await,
                Action::Hangup(_) => call.handle.reject(503),
            }
        }
        if let Some(reason) = flow.ended() {
            break reason;
        }
        let deadline = flow
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut digit = None;
        tokio::select! {
            ev = call.events.recv() => match ev {
                Some(CallEvent::Confirmed) if late_offer => {
                    match session.take_answer(&call.handle.ack_body()) {
                        Ok(params) => {
                            media = params;
                            leg.send(LegCommand::Update(media));
                            flow.handle(Input::Acked, Instant::now());
                        }
                        Err(e) => {
                            // §13.2.1: an unusable answer in the ACK ends the call with BYE.
                            warn!(error = %e, "no usable SDP answer in the ACK");
                            call.handle.hangup().await;
                            break EndReason::NoAck;
                        }
                    }
                }
                Some(CallEvent::Confirmed) => flow.handle(Input::Acked, Instant::now()),
                Some(CallEvent::Bye) => flow.handle(Input::Bye, Instant::now()),
                Some(CallEvent::Cancelled) => flow.handle(Input::Cancel, Instant::now()),
                // A session refresh without SDP: nothing changes.
                Some(CallEvent::Reoffer { offer, is_update: true, reply }) if offer.is_empty() => {
                    reply.status(200).await
                }
                // A re-INVITE without SDP asks for our offer: the current session.
                Some(CallEvent::Reoffer { offer, reply, .. }) if offer.is_empty() => {
                    reply.sdp(session.offer()).await
                }
                Some(CallEvent::Reoffer { offer, reply, .. }) => match session.answer(&offer) {
                    Ok((answer, params)) => {
                        info!(hold = !params.send, codec = ?params.codec, "re-INVITE");
                        media = params;
                        leg.send(LegCommand::Update(media));
                        reply.sdp(answer).await;
                    }
                    Err(e) => {
                        info!(error = %e, "re-INVITE refused");
                        reply.status(e.sip_status()).await
                    }
                },
                Some(CallEvent::Info { content_type, body, reply }) => {
                    digit = info_digit(&content_type, &body, reply).await;
                }
                Some(CallEvent::Ended(why)) => {
                    warn!(%why, "dialog ended");
                    break EndReason::NoAck;
                }
                None => break EndReason::CallerHungUp,
            },
            ev = leg.events.recv() => match ev {
                Some(LegEvent::PlaybackDone(id)) if waiting_for == Some(id) => {
                    waiting_for = None;
                    flow.handle(Input::PlaybackDone, Instant::now());
                }
                Some(LegEvent::Digit { digit: d, source, at }) => digit = Some((d, source, at)),
                Some(LegEvent::RtpTimeout) => {
                    warn!(secs = ctx.settings.rtp_timeout.as_secs(), "no RTP");
                    flow.handle(Input::RtpTimeout, Instant::now());
                }
                _ => {}
            },
            Some(Notice::Kicked) = notices.recv() => flow.handle(Input::Kicked, Instant::now()),
            Some(CallCommand::Hangup) = commands.recv() => flow.handle(Input::Hangup, Instant::now()),
            _ = tokio::time::sleep_until(deadline.into()) => flow.handle_timeout(Instant::now()),
            _ = ctx.shutdown.cancelled() => flow.handle(Input::Shutdown, Instant::now()),
        }
        if let Some((d, source, at)) = digit {
            if let Some(press) = digits.offer(d, source, at) {
                ctx.events.publish(Event::Digit {
                    call: call_id.clone(),
                    digit: press.digit,
                    source: press.source,
                });
                flow.handle(Input::Digit(press.digit), Instant::now());
            }
        }
    };
    if let Some(key) = member {
        ctx.conference.leave(key, reason.as_str());
    }
    let stats = leg.close().await;
    let dtmf = digits.counters();
    info!(
        ?reason,
        secs = started.elapsed().as_secs_f32(),
        rtp_sent = stats.sent,
        rtp_received = stats.received,
        rtp_foreign = stats.foreign,
        late_ticks = stats.late_ticks,
        dtmf_rfc4733 = dtmf.rfc4733,
        dtmf_info = dtmf.info,
        dtmf_inband = dtmf.inband,
        dtmf_duplicates = dtmf.duplicates,
        dtmf_inband_suppressed = dtmf.inband_suppressed,
        "call ended"
    );
}

/// A trusted source may name the room; everyone else is asked for the PIN.
fn entry(call: &OfferedCall, settings: &Settings) -> Entry {
    let named = call.header("X-Conference-Id");
    let dir = &settings.directory;
    match dir.direct(call.source.ip(), call.request_user.as_deref(), named) {
        Some(room) => Entry::Direct(room),
        None => {
            if named.is_some() && !dir.trusts(call.source.ip()) {
                info!("X-Conference-Id from an untrusted source ignored");
            }
            Entry::Pin(settings.pin)
        }
    }
}

/// Look a PIN up behind the lockout: a locked-out caller is refused even
/// with the right PIN, and a wrong PIN counts against caller and number.
fn check_pin(ctx: &CallContext, call: &str, pin: &str, caller: &str, number: &str) -> Verdict {
    let now = Instant::now();
    // A poisoned lock only means another call panicked mid-update; the
    // counts are still usable.
    let mut guard = ctx.pin_guard.lock().unwrap_or_else(|e| e.into_inner());
    let locked = match guard.locked(caller, number, now) {
        Some(key) => Some(key),
        None => match ctx.settings.directory.by_pin(pin) {
            Some(admission) => return Verdict::Room(admission.room),
            None => match guard.failed(caller, number, now) {
                None => return Verdict::Wrong,
                locked => locked,
            },
        },
    };
    drop(guard);
    if let Some(key) = locked {
        warn!(%key, "PIN lockout");
        ctx.events.publish(Event::PinLockout {
            call: call.to_owned(),
            key,
        });
    }
    Verdict::LockedOut
}

/// Answer an INFO; a DTMF body becomes a digit.
pub(super) async fn info_digit(
    content_type: &str,
    body: &[u8],
    reply: Responder,
) -> Option<(char, Source, Instant)> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    let dtmf_type = mime.eq_ignore_ascii_case("application/dtmf-relay")
        || mime.eq_ignore_ascii_case("application/dtmf");
    match digit_from_info(content_type, body) {
        Some(d) => {
            reply.status(200).await;
            Some((d, Source::Info, Instant::now()))
        }
        // An empty INFO is a keep-alive.
        None if body.iter().all(u8::is_ascii_whitespace) => {
            reply.status(200).await;
            None
        }
        None if dtmf_type => {
            reply.status(400).await;
            None
        }
        None => {
            reply.status(415).await;
            None
        }
    }
}

/// The user part of a SIP URI (`sip:alice@host` → `alice`), or "" if none.
fn uri_user(uri: &str) -> &str {
    let rest = uri.split_once(':').map_or(uri, |(_, r)| r);
    rest.split_once('@').map_or("", |(user, _)| user)
}
