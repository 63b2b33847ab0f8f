//! One outbound call's task: dialled through the SIP edge with the offer its
//! SDP session made, it drives the call core (see `driver`) until it ends.
//! It holds no session state of its own.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO core

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ports::RtpSockets;
use tracing::{info, warn};

use crate::call::core::{Call, Input, OutboundCall as Dialled, SipAction};
use crate::call::session::SdpSession;
use crate::events::Direction;
use crate::sip::call::CallEvent;
use crate::sip::dial::{DialEvent, DialHandle, DialingCall};

use super::context::CallContext;
use super::driver::{drive, FromSip, Party, SipLeg};
use super::registry::CallCommand;

/// What the call task needs besides the shared context.
pub struct OutboundCall {
    /// Our call id, as text.
    pub call_id: String,
    /// The Call-ID of our INVITE.
    pub sip_call_id: String,
    pub room: String,
    /// The IP the call's signalling goes to (the trunk proxy or the URI's
    /// host), when it is an IP literal: a NAT'd callee's media is learned from it.
    pub signalling_ip: Option<std::net::IpAddr>,
    pub from: String,
    pub to: String,
    pub ring_timeout: Duration,
    pub sockets: RtpSockets,
    /// The SDP session, with our offer made.
    pub session: SdpSession,
    pub dialing: DialingCall,
    /// Keys to send once the callee is in the room.
    pub key_in: Option<String>,
    pub commands: tokio::sync::mpsc::UnboundedReceiver<CallCommand>,
}

pub async fn run(call: OutboundCall, ctx: Arc<CallContext>) {
    let started = Instant::now();
    let core = Call::outbound(
        Dialled {
            call: call.call_id.clone(),
            room: call.room,
            to: call.to.clone(),
            ring_timeout: call.ring_timeout,
            dtmf: ctx.settings().dtmf_mode,
            keys: ctx.settings().keys.clone(),
            key_in: call.key_in,
            max_duration: ctx.settings().max_call,
        },
        call.session,
        started,
    );
    let party = Party {
        call: call.call_id,
        sip_call_id: call.sip_call_id,
        from: call.from,
        to: call.to,
        direction: Direction::Outbound,
        direct: false,
        signalling_ip: call.signalling_ip,
    };
    let DialingCall { handle, events } = call.dialing;
    let sip = Outbound { handle, events };
    let done = drive(core, sip, party, call.sockets, call.commands, ctx).await;
    info!(
        reason = done.end.reason,
        joined = done.end.joined,
        secs = started.elapsed().as_secs_f32(),
        rtp_sent = done.leg.sent,
        rtp_received = done.leg.received,
        rtp_foreign = done.leg.foreign.total(),
        rtcp_sent = done.leg.rtcp.sent,
        rtcp_received = done.leg.rtcp.received,
        rtcp_dropped = done.leg.rtcp.malformed + done.leg.rtcp.foreign,
        rtt_ms = %done.leg.rtt_ms(),
        remote_lost = %done.leg.remote_lost(),
        mos = %done.leg.mos(),
        dtmf_rfc4733 = done.digits.rfc4733,
        dtmf_inband = done.digits.inband,
        "outbound call ended"
    );
}

/// The outbound dialog.
struct Outbound {
    handle: DialHandle,
    events: tokio::sync::mpsc::UnboundedReceiver<DialEvent>,
}

impl SipLeg for Outbound {
    async fn next(&mut self) -> Option<FromSip> {
        loop {
            return Some(match self.events.recv().await? {
                DialEvent::Progress { .. } => FromSip::Input(Input::Progress),
                DialEvent::Answered { sdp } => FromSip::Answered(sdp),
                DialEvent::Failed { status, detail } => {
                    info!(?status, %detail, "INVITE ended");
                    FromSip::Input(Input::DialFailed { status })
                }
                DialEvent::InDialog(CallEvent::Bye) => FromSip::Input(Input::Bye),
                DialEvent::InDialog(CallEvent::Ended(why)) => {
                    warn!(%why, "dialog ended");
                    FromSip::Input(Input::DialogEnded)
                }
                DialEvent::InDialog(CallEvent::Reoffer {
                    offer,
                    is_update,
                    reply,
                }) => FromSip::Reoffer {
                    offer,
                    is_update,
                    reply,
                },
                DialEvent::InDialog(CallEvent::Info {
                    content_type,
                    body,
                    reply,
                }) => FromSip::Info {
                    content_type,
                    body,
                    reply,
                },
                DialEvent::InDialog(CallEvent::Notify { status, reply }) => {
                    FromSip::Notify { status, reply }
                }
                // The ACK and CANCEL belong to the other direction: not for us.
                DialEvent::InDialog(CallEvent::Confirmed | CallEvent::Cancelled) => continue,
            });
        }
    }

    fn bye(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let handle = self.handle.clone();
        async move { handle.hangup().await }
    }

    async fn act(&self, action: SipAction) {
        match action {
            SipAction::Cancel => self.handle.cancel().await,
            SipAction::Bye => self.handle.hangup().await,
            SipAction::Info(digits) => self.handle.send_digits(digits),
            // The answer and refusals belong to inbound calls.
            SipAction::Progress(_)
            | SipAction::Ringing
            | SipAction::Answer(_)
            | SipAction::Reject(_) => {}
        }
    }
}
