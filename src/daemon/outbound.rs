//! One outbound call's task: dials through the SIP edge, and on answer
//! opens the media leg and joins the room, carrying out what the sans-IO
//! [`OutboundFlow`] asks.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO parts

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::call::session::SdpSession;
use crate::conference::{JoinError, JoinRequest, MemberKey, Notice};
use crate::dtmf::DigitStream;
use crate::events::{Direction, Event};
use crate::ivr::outbound::{Action, Input, OutboundFlow};
use crate::rtp::learning::SourceLearning;
use crate::rtp::packet::RtpSender;
use crate::sip::call::CallEvent;
use crate::sip::dial::{DialEvent, DialingCall};

use super::call::{info_digit, CallContext};
use super::leg::{Leg, LegCommand, LegEvent, MediaParams};
use super::registry::CallCommand;

/// What the call task needs besides the shared context.
pub struct OutboundCall {
    /// Our call id, as text.
    pub call_id: String,
    /// The Call-ID of our INVITE.
    pub sip_call_id: String,
    pub room: String,
    pub from: String,
    pub to: String,
    pub ring_timeout: Duration,
    pub socket: Arc<UdpSocket>,
    /// The SDP session, with our offer made.
    pub session: SdpSession,
    pub dialing: DialingCall,
    pub commands: tokio::sync::mpsc::UnboundedReceiver<CallCommand>,
}

pub async fn run(call: OutboundCall, ctx: Arc<CallContext>) {
    let started = Instant::now();
    let OutboundCall {
        call_id,
        sip_call_id,
        room,
        from,
        to,
        ring_timeout,
        socket,
        mut session,
        dialing: DialingCall { handle, mut events },
        mut commands,
    } = call;
    let rtp = Arc::new(Mutex::new(RtpSender::random()));
    let mut flow = OutboundFlow::new(started, ring_timeout);
    let mut leg: Option<Leg> = None;
    let mut media: Option<MediaParams> = None;
    let mut member: Option<MemberKey> = None;
    let (notice_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let mut digits = DigitStream::new(ctx.settings.dtmf_mode);
    let (_, inband_on) = super::call::listens(ctx.settings.dtmf_mode);
    let mut stopping = false;
    let report = |event: Event| ctx.events.publish(event);
    let (reason, joined) = loop {
        while let Some(action) = flow.poll_action() {
            match action {
                Action::Ringing => report(Event::CallRinging {
                    call: call_id.clone(),
                    room: room.clone(),
                    to: to.clone(),
                }),
                Action::Answered => {
                    info!(after_ms = started.elapsed().as_millis() as u64, "answered");
                    report(Event::CallAnswered {
                        call: call_id.clone(),
                        room: room.clone(),
                        to: to.clone(),
                    });
                }
                Action::Join => {
                    let Some(params) = media else {
                        flow.joined(Err("no_common_codec"));
                        continue;
                    };
                    let joined = ctx
                        .conference
                        .join(JoinRequest {
                            room: room.clone(),
                            call: call_id.clone(),
                            sip_call_id: sip_call_id.clone(),
                            from: from.clone(),
                            to: to.clone(),
                            direction: Direction::Outbound,
                            direct: false,
                            codec: params.codec,
                            payload_type: params.payload_type,
                            socket: socket.clone(),
                            dest: params.remote,
                            rtp: rtp.clone(),
                            notices: notice_tx.clone(),
                        })
                        .await;
                    match joined {
                        Ok(key) => {
                            member = Some(key);
                            session.lock_codec();
                            if let Some(leg) = &leg {
                                leg.send(LegCommand::Conferenced {
                                    conference: ctx.conference.clone(),
                                    member: key,
                                });
                            }
                            flow.joined(Ok(()));
                        }
                        Err(JoinError::Full) => flow.joined(Err("room_full")),
                        Err(JoinError::Stopped) => flow.joined(Err("shutdown")),
                    }
                }
                Action::Cancel => handle.cancel().await,
                Action::Bye => handle.hangup().await,
                Action::Failed { status, reason } => {
                    warn!(?status, reason, "dial failed");
                    report(Event::DialFailed {
                        call: call_id.clone(),
                        room: room.clone(),
                        to: to.clone(),
                        status,
                        reason: reason.to_owned(),
                    });
                }
            }
        }
        if let Some(end) = flow.ended() {
            break end;
        }
        let deadline = flow
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let mut digit = None;
        tokio::select! {
            ev = events.recv() => match ev {
                Some(DialEvent::Progress { .. }) => flow.handle(Input::Progress, Instant::now()),
                Some(DialEvent::Answered { sdp }) => match session.take_answer(&sdp) {
                    Ok(params) => {
                        // The far end's media is expected from the address its answer names;
                        // a NAT'd callee is learned from that address's IP.
                        let signalling_ip = params.remote.map_or(ctx.advertised, |r| r.ip());
                        let learning = SourceLearning::new(params.remote, signalling_ip, ctx.settings.rtp_strict);
                        leg = Some(Leg::start(socket.clone(), params, inband_on, rtp.clone(), ctx.settings.rtp_timeout, learning));
                        media = Some(params);
                        flow.handle(Input::Answered, Instant::now());
                    }
                    Err(e) => {
                        warn!(error = %e, "no usable SDP answer");
                        flow.handle(Input::AnswerUnusable, Instant::now());
                    }
                },
                Some(DialEvent::Failed { status, detail }) => {
                    info!(?status, %detail, "INVITE ended");
                    flow.handle(Input::Failed(status), Instant::now());
                }
                Some(DialEvent::InDialog(CallEvent::Bye)) => flow.handle(Input::Bye, Instant::now()),
                // A session refresh by UPDATE without SDP: nothing changes.
                Some(DialEvent::InDialog(CallEvent::Reoffer { offer, is_update: true, reply })) if offer.is_empty() => {
                    reply.status(200).await
                }
                // A re-INVITE without SDP asks for our offer (RFC 3261 §14.2).
                Some(DialEvent::InDialog(CallEvent::Reoffer { offer, reply, .. })) if offer.is_empty() => {
                    reply.sdp(session.offer()).await
                }
                Some(DialEvent::InDialog(CallEvent::Reoffer { offer, reply, .. })) => match session.answer(&offer) {
                    Ok((answer, params)) => {
                        if let Some(leg) = &leg {
                            leg.send(LegCommand::Update(params));
                        }
                        media = Some(params);
                        reply.sdp(answer).await;
                    }
                    Err(e) => {
                        info!(error = %e, "re-INVITE refused");
                        reply.status(e.sip_status()).await
                    }
                },
                Some(DialEvent::InDialog(CallEvent::Info { content_type, body, reply })) => {
                    digit = info_digit(&content_type, &body, reply).await;
                }
                Some(DialEvent::InDialog(CallEvent::Ended(why))) => {
                    warn!(%why, "dialog ended");
                    flow.handle(Input::Bye, Instant::now());
                }
                Some(DialEvent::InDialog(_)) => {}
                None => flow.handle(Input::Failed(None), Instant::now()),
            },
            ev = async { match leg.as_mut() { Some(l) => l.events.recv().await, None => std::future::pending().await } } => match ev {
                Some(LegEvent::Digit { digit: d, source, at }) => digit = Some((d, source, at)),
                Some(LegEvent::RtpTimeout) => flow.handle(Input::RtpTimeout, Instant::now()),
                _ => {}
            },
            Some(cmd) = commands.recv() => match cmd {
                CallCommand::Hangup => flow.handle(Input::Hangup, Instant::now()),
            },
            Some(Notice::Kicked) = notices.recv() => flow.handle(Input::Kicked, Instant::now()),
            _ = tokio::time::sleep_until(deadline.into()) => flow.handle_timeout(Instant::now()),
            _ = ctx.shutdown.cancelled(), if !stopping => {
                stopping = true;
                flow.handle(Input::Shutdown, Instant::now())
            }
        }
        if let Some((d, source, at)) = digit {
            if let Some(press) = digits.offer(d, source, at) {
                report(Event::Digit {
                    call: call_id.clone(),
                    digit: press.digit,
                    source: press.source,
                });
            }
        }
    };
    if let Some(key) = member {
        ctx.conference.leave(key, reason);
    }
    let stats = match leg {
        Some(leg) => leg.close().await,
        None => Default::default(),
    };
    let dtmf = digits.counters();
    info!(
        reason,
        joined,
        secs = started.elapsed().as_secs_f32(),
        rtp_sent = stats.sent,
        rtp_received = stats.received,
        dtmf_rfc4733 = dtmf.rfc4733,
        dtmf_inband = dtmf.inband,
        "outbound call ended"
    );
}
