//! One inbound call's task: negotiates SDP, opens the media leg, and carries
//! out what the sans-IO [`InboundFlow`] asks, feeding it SIP and media events.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO parts

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;
use crate::ivr::inbound::{Action, EndReason, InboundFlow, Input, Timers};
use crate::sip::call::{CallEvent, OfferedCall};
use crate::sip::sdp::{self, Negotiated};

use super::leg::{Leg, LegCommand, LegEvent, MediaParams};
use super::ports::PortPool;
use super::prompts::PromptBook;

/// What every call shares.
pub struct CallContext {
    pub settings: Settings,
    pub prompts: PromptBook,
    pub ports: PortPool,
    pub advertised: IpAddr,
    pub shutdown: CancellationToken,
}

/// 64 × T1: how long a 200 OK is retransmitted waiting for the ACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(32);

pub async fn run(mut call: OfferedCall, ctx: Arc<CallContext>) {
    let started = Instant::now();
    info!(from = %call.from, to = %call.to, source = %call.source, "call offered");
    // RFC 3261 §13.2.1: an INVITE without SDP (late offer) gets our offer in
    // the 200 OK and the answer comes in the ACK; there is no early media then.
    let late_offer = call.offer.is_empty();
    let neg = if late_offer {
        None
    } else {
        match sdp::negotiate(&call.offer, &ctx.settings.codecs) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(error = %e, "offer refused");
                call.handle.reject(e.sip_status());
                return;
            }
        }
    };
    let socket = match ctx.ports.bind(ctx.settings.sip_listen.ip()).await {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port");
            call.handle.reject(503);
            return;
        }
    };
    let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
    let session_id = u64::from(rand::random::<u32>());
    let mut sdp_version = session_id;
    let (local_sdp, params) = match &neg {
        Some(n) => (
            sdp::answer(n, ctx.advertised, port, session_id, sdp_version),
            media_params(n),
        ),
        None => {
            let codec = ctx.settings.codecs[0]; // validated non-empty
            let params = MediaParams {
                codec,
                payload_type: codec.payload_type(),
                remote: None,
                send: true,
            };
            (
                sdp::offer(
                    &ctx.settings.codecs,
                    ctx.advertised,
                    port,
                    session_id,
                    sdp_version,
                ),
                params,
            )
        }
    };
    // Our side of the session: the answer (or late offer) now, replaced by
    // each re-INVITE's answer.
    let mut current = local_sdp.into_bytes();
    let mut leg = Leg::start(socket, params);

    let timers = Timers {
        early_media: ctx.settings.early_media.filter(|_| !late_offer),
        idle: ctx.settings.idle_timeout,
        ack: ACK_TIMEOUT,
    };
    let mut flow = InboundFlow::new(Instant::now(), timers);
    let mut answered = false;
    let reason = loop {
        while let Some(action) = flow.poll_action() {
            match action {
                Action::EarlyMedia => {
                    call.handle.progress(current.clone());
                    leg.send(LegCommand::Play {
                        samples: ctx.prompts.early_media(),
                        looped: true,
                    });
                }
                Action::Ring => call.handle.ringing(),
                Action::Answer => {
                    answered = true;
                    leg.send(LegCommand::Stop);
                    call.handle.answer(current.clone());
                    info!(after_ms = started.elapsed().as_millis() as u64, "answered");
                }
                Action::Play(prompt) => match ctx.prompts.get(prompt.name()) {
                    Some(samples) => leg.send(LegCommand::Play {
                        samples,
                        looped: false,
                    }),
                    None => flow.handle(Input::PlaybackDone, Instant::now()),
                },
                // The caller's own BYE or CANCEL was already answered by the stack.
                Action::Hangup(
                    EndReason::CallerHungUp | EndReason::CallerCancelled | EndReason::NoAck,
                ) => {}
                Action::Hangup(EndReason::IdleTimeout | EndReason::Shutdown) if answered => {
                    call.handle.hangup().await
                }
                Action::Hangup(_) => call.handle.reject(503),
            }
        }
        if let Some(reason) = flow.ended() {
            break reason;
        }
        let deadline = flow
            .next_deadline()
            .unwrap_or_else(|| Instant::now() + timers.idle);
        tokio::select! {
            ev = call.events.recv() => match ev {
                Some(CallEvent::Confirmed) if late_offer => {
                    match sdp::parse_answer(&call.handle.ack_body()) {
                        Ok(n) => {
                            leg.send(LegCommand::Update(media_params(&n)));
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
                    reply.sdp(current.clone()).await
                }
                Some(CallEvent::Reoffer { offer, reply, .. }) => {
                    match sdp::negotiate(&offer, &ctx.settings.codecs) {
                        Ok(n) => {
                            sdp_version += 1;
                            info!(hold = n.on_hold(), codec = ?n.codec, "re-INVITE");
                            leg.send(LegCommand::Update(media_params(&n)));
                            current = sdp::answer(&n, ctx.advertised, port, session_id, sdp_version).into_bytes();
                            reply.sdp(current.clone()).await;
                        }
                        Err(e) => reply.status(e.sip_status()).await,
                    }
                }
                Some(CallEvent::Info { reply, .. }) => reply.status(200).await,
                Some(CallEvent::Ended(why)) => {
                    warn!(%why, "dialog ended");
                    break EndReason::NoAck;
                }
                None => break EndReason::CallerHungUp,
            },
            ev = leg.events.recv() => if let Some(LegEvent::PlaybackDone) = ev {
                flow.handle(Input::PlaybackDone, Instant::now());
            },
            _ = tokio::time::sleep_until(deadline.into()) => flow.handle_timeout(Instant::now()),
            _ = ctx.shutdown.cancelled() => flow.handle(Input::Shutdown, Instant::now()),
        }
    };
    let stats = leg.close().await;
    info!(
        ?reason,
        secs = started.elapsed().as_secs_f32(),
        rtp_sent = stats.sent,
        rtp_received = stats.received,
        rtp_foreign = stats.foreign,
        late_ticks = stats.late_ticks,
        "call ended"
    );
}

fn media_params(n: &Negotiated) -> MediaParams {
    MediaParams {
        codec: n.codec,
        payload_type: n.codec_pt,
        remote: n.remote,
        send: n.answer_direction.sends(),
    }
}
