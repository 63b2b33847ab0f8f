//! One inbound call's task: binds its RTP port, builds the call core from
//! the offer, and drives it (see `driver`). It holds no session state of
//! its own.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO core

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::call::core::{Call, InboundCall, Input, SipAction};
use crate::events::Direction;
use crate::ivr::inbound::{Entry, Timers, Verdict};
use crate::ivr::throttle;
use crate::sip::call::{CallEvent, CallHandle, OfferedCall};

use super::context::CallContext;
use super::driver::{drive, FromSip, Party, SipLeg};
use super::registry::{CallCommand, Listed};

/// How long a caller has to say its name (`rooms.announce_names`).
const NAME_TIME: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(
    offered: OfferedCall,
    listed: Listed,
    commands: tokio::sync::mpsc::UnboundedReceiver<CallCommand>,
    ctx: Arc<CallContext>,
) {
    let started = Instant::now();
    let id = listed.id().to_string();
    info!(from = %offered.from, to = %offered.to, source = %offered.source,
          sip_call_id = %offered.sip_call_id, "call offered");
    let sockets = match ctx.ports.bind(ctx.settings().sip_listen.ip()) {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "no RTP port");
            ctx.events.metrics().setup_answered(503);
            offered.handle.reject(503);
            return;
        }
    };
    let port = sockets.port();
    let entry = ctx.entry(&offered);
    let party = Party {
        call: id.clone(),
        sip_call_id: offered.sip_call_id.clone(),
        from: offered.from.clone(),
        to: offered.to.clone(),
        direction: Direction::Inbound,
        direct: matches!(entry, Entry::Direct(_)),
        signalling_ip: Some(offered.source.ip()),
    };
    let setup = InboundCall {
        call: id.clone(),
        offer: &offered.offer,
        timers: Timers {
            early_media: ctx.settings().early_media,
            idle: ctx.settings().idle_timeout,
            // 64·T1: how long the stack retransmits a 200 OK waiting for the ACK.
            ack: ctx.settings().sip_timers.t1 * 64,
            name: ctx.settings().announce_names.then_some(NAME_TIME),
        },
        entry,
        dtmf: ctx.settings().dtmf_mode,
        keys: ctx.settings().keys.clone(),
        max_duration: ctx.settings().max_call,
    };
    let call = match Call::inbound(
        setup,
        ctx.sdp_session(port, ctx.settings().srtp),
        Instant::now(),
    ) {
        Ok(call) => call,
        Err(e) => {
            warn!(error = %e, "offer refused");
            ctx.events.metrics().setup_answered(e.sip_status());
            offered.handle.reject(e.sip_status());
            return;
        }
    };
    let (caller, number) = throttle::keys(
        super::context::uri_user(&offered.from),
        offered.source.ip(),
        offered.request_user.as_deref().unwrap_or(""),
    );
    let sip = Inbound {
        offered,
        ctx: ctx.clone(),
        id,
        caller,
        number,
    };
    let done = drive(call, sip, party, sockets, commands, ctx).await;
    info!(
        reason = done.end.reason,
        secs = started.elapsed().as_secs_f32(),
        rtp_sent = done.leg.sent,
        rtp_received = done.leg.received,
        rtp_foreign = done.leg.foreign.total(),
        srtp_rejected = done.leg.srtp_rejected,
        rtcp_sent = done.leg.rtcp.sent,
        rtcp_received = done.leg.rtcp.received,
        rtcp_dropped = done.leg.rtcp.malformed + done.leg.rtcp.foreign,
        rtt_ms = %done.leg.rtt_ms(),
        remote_lost = %done.leg.remote_lost(),
        mos = %done.leg.mos(),
        late_ticks = done.leg.late_ticks,
        dtmf_rfc4733 = done.digits.rfc4733,
        dtmf_info = done.digits.info,
        dtmf_inband = done.digits.inband,
        dtmf_duplicates = done.digits.duplicates,
        dtmf_inband_suppressed = done.digits.inband_suppressed,
        "call ended"
    );
    drop(listed);
}

/// The inbound dialog and what the PIN check needs.
struct Inbound {
    offered: OfferedCall,
    ctx: Arc<CallContext>,
    id: String,
    /// Lockout keys: the caller, and the number dialled.
    caller: String,
    number: String,
}

impl SipLeg for Inbound {
    async fn next(&mut self) -> Option<FromSip> {
        Some(match self.offered.events.recv().await? {
            CallEvent::Confirmed => FromSip::Acked(self.offered.handle.ack_body()),
            CallEvent::Cancelled => {
                // The stack has answered the INVITE 487 already.
                self.ctx.events.metrics().setup_answered(487);
                FromSip::Input(Input::Cancelled)
            }
            CallEvent::Bye => FromSip::Input(Input::Bye),
            CallEvent::Ended(why) => {
                warn!(%why, "dialog ended");
                FromSip::Input(Input::DialogEnded)
            }
            CallEvent::Reoffer {
                offer,
                is_update,
                reply,
            } => FromSip::Reoffer {
                offer,
                is_update,
                reply,
            },
            CallEvent::Notify { status, reply } => FromSip::Notify { status, reply },
            CallEvent::Info {
                content_type,
                body,
                reply,
            } => FromSip::Info {
                content_type,
                body,
                reply,
            },
        })
    }

    fn bye(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let handle = self.offered.handle.clone();
        async move { handle.hangup().await }
    }

    async fn act(&self, action: SipAction) {
        match action {
            SipAction::Answer(_) => self.ctx.events.metrics().setup_answered(200),
            SipAction::Reject(code) => self.ctx.events.metrics().setup_answered(code),
            _ => {}
        }
        act(&self.offered.handle, action).await
    }

    fn check_pin(&self, pin: &str) -> Verdict {
        self.ctx
            .check_pin(&self.id, pin, &self.caller, &self.number)
    }

    async fn refer(&self, target: &str) -> Option<u16> {
        self.offered
            .handle
            .refer(target, super::bridge::REFER_ANSWER)
            .await
    }
}

async fn act(handle: &CallHandle, action: SipAction) {
    match action {
        SipAction::Progress(sdp) => handle.progress(sdp),
        SipAction::Ringing => handle.ringing(),
        SipAction::Answer(sdp) => {
            handle.answer(sdp);
            info!("answered");
        }
        SipAction::Reject(code) => handle.reject(code),
        SipAction::Bye => handle.hangup().await,
        // An inbound call has no INVITE of ours to cancel.
        SipAction::Cancel => {}
        SipAction::Info(digits) => handle.send_digits(digits),
    }
}
