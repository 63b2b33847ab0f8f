//! Drives one call's core: moves what the SIP side, the media leg, the room
//! and the control socket report into the [`Call`], and carries out what it
//! asks, until it ends. No session rule lives here; they are all in
//! `call::core`.

#![allow(clippy::disallowed_methods)] // an edge: reads the clock for the sans-IO core

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ports::RtpSockets;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::call::core::{
    Call, Clip, DigitPath, End, Input, MediaAction, Output, Reply, RoomAction, SipAction,
};
use crate::call::media::{MediaCommand, MediaEvent, MediaParams, MediaSetup, MediaStats};
use crate::call::CallId;
use crate::conference::{Audience, JoinError, JoinRequest, KeyReply, Leg, Notice};
use crate::dtmf::DigitCounters;
use crate::events::Direction;
use crate::ivr::inbound::{RoomRefusal, Verdict};
use crate::rtp::learning::SourceLearning;
use crate::sip::call::Responder;

use super::context::{listens, CallContext};
use super::prompts::participants_text;
use super::registry::CallCommand;

/// What the SIP side reported, owned.
pub(super) enum FromSip {
    /// A core input without a body.
    Input(Input<'static>),
    /// Inbound: the ACK, with its body.
    Acked(Vec<u8>),
    /// Outbound: the 200 OK's SDP answer.
    Answered(Vec<u8>),
    /// A re-INVITE or UPDATE to answer.
    Reoffer {
        offer: Vec<u8>,
        is_update: bool,
        reply: Responder,
    },
    /// An INFO to answer.
    Info {
        content_type: String,
        body: Vec<u8>,
        reply: Responder,
    },
    /// A NOTIFY (a REFER's progress) to answer; `status` its sipfrag's.
    Notify {
        status: Option<u16>,
        reply: Responder,
    },
}

/// One call's SIP dialog as the driver uses it.
pub(super) trait SipLeg {
    /// The next report; `None` when the dialog is gone.
    async fn next(&mut self) -> Option<FromSip>;
    /// Carry out a SIP action (but a BYE: see [`SipLeg::bye`]).
    async fn act(&self, action: SipAction);
    /// The BYE, to send while the call goes on ending: a far end that died
    /// never answers it, and waiting out its retransmissions (32 s) would
    /// keep the call, and a bridge it is part of, up that long.
    fn bye(&self) -> impl std::future::Future<Output = ()> + Send + 'static;
    /// A PIN to look up (inbound calls).
    fn check_pin(&self, _pin: &str) -> Verdict {
        Verdict::Wrong
    }
    /// Ask the far end to call `target` itself (REFER): the status it
    /// answered with; `None` if none came (or the leg cannot be moved).
    async fn refer(&self, _target: &str) -> Option<u16> {
        None
    }
}

/// Who the call is, for the room listing.
#[derive(Clone)]
pub(super) struct Party {
    pub call: String,
    pub sip_call_id: String,
    pub from: String,
    pub to: String,
    pub direction: Direction,
    pub direct: bool,
    /// Where the SIP request came from; a NAT'd caller's media is learned from it.
    pub signalling_ip: Option<IpAddr>,
}

/// What the call left behind, for the hang-up log.
pub(super) struct Outcome {
    pub end: End,
    pub leg: MediaStats,
    pub digits: DigitCounters,
}

/// Run `call` until it ends.
pub(super) async fn drive<S: SipLeg>(
    mut call: Call,
    mut sip: S,
    party: Party,
    sockets: RtpSockets,
    mut commands: mpsc::UnboundedReceiver<CallCommand>,
    ctx: Arc<CallContext>,
) -> Outcome {
    let mut track = ctx.events.metrics().call_started(party.direction);
    let mut duplicates = 0;
    let mut media = Media {
        sockets: Some(sockets),
        leg: None,
        relay_to: None,
        name: None,
        notices: mpsc::unbounded_channel(),
    };
    // An inbound call's leg opens at once (early media); an outbound one
    // when the answer comes.
    if party.direction == Direction::Inbound && !media.start(&party, call.media(), &ctx) {
        call.handle_input(Input::MediaFailed, Instant::now());
    }
    // Each of these fires once; a closed channel must not wake the loop again.
    let (mut stopping, mut sip_gone, mut leg_gone) = (false, false, false);
    let end = loop {
        while let Some(output) = call.poll_output() {
            let now = Instant::now();
            match output {
                Output::Sip(SipAction::Bye) => {
                    // Tracked: a shutdown still waits for it.
                    ctx.tasks.spawn(sip.bye());
                }
                Output::Sip(action) => sip.act(action).await,
                Output::Media(MediaAction::Start(params)) => {
                    if !media.start(&party, params, &ctx) {
                        call.handle_input(Input::MediaFailed, now);
                    }
                }
                Output::Media(action) => {
                    if let Some(done) = media.act(action, &ctx) {
                        call.handle_input(Input::PlaybackDone(done), now);
                    }
                }
                Output::Room(RoomAction::Join {
                    room, moderator, ..
                }) => {
                    // `cluster.refer`: the caller may move to the room's node
                    // itself, rather than be bridged there.
                    if let Some(target) = super::bridge::refer_target(&ctx, &room, moderator).await
                    {
                        match move_call(&mut call, &mut sip, &target).await {
                            Move::Moved => {
                                info!(%room, "moved to the room's node: hanging up");
                                call.handle_input(Input::Hangup, Instant::now());
                                continue;
                            }
                            Move::Gone { closed } => {
                                sip_gone |= closed;
                                continue;
                            }
                            Move::Stayed => {}
                        }
                    }
                    let (input, others) = media.join(room.clone(), moderator, &party, &ctx).await;
                    if matches!(input, Input::Joined) {
                        track.joined();
                    }
                    call.handle_input(input, Instant::now());
                    if let Some(others) = others {
                        if others == 0 && ctx.settings().directory.rules(&room).record {
                            record_from_the_start(&room, &ctx).await;
                        }
                        media.tell_count(&party.call, others, &ctx).await;
                    }
                }
                Output::Room(RoomAction::Leave(reason)) => {
                    if let Some(leg) = &media.leg {
                        leg.leave(reason).await;
                    }
                    call.handle_input(Input::Left, Instant::now());
                }
                Output::Room(RoomAction::Relay(digit)) => {
                    // To the bridge's far leg, which keys it to the room's node.
                    if let Some(far) = media.relay_to {
                        ctx.calls.send(far, CallCommand::Relay(digit.to_string()));
                    }
                }
                Output::Room(RoomAction::Say(prompt)) => {
                    if let Some(clip) = ctx.prompts().get(prompt.name()) {
                        ctx.conference
                            .say(Audience::Call(party.call.clone()), clip)
                            .await;
                    }
                }
                Output::Room(RoomAction::Key(action)) => {
                    let Some(leg) = &media.leg else { continue };
                    match leg.key(action).await {
                        KeyReply::Others(n) => media.tell_count(&party.call, n, &ctx).await,
                        KeyReply::Left => call.handle_input(Input::Left, Instant::now()),
                        KeyReply::Done | KeyReply::NotAllowed | KeyReply::NotSeated => {}
                    }
                }
                Output::CheckPin(pin) => {
                    let verdict = sip.check_pin(&pin);
                    call.handle_input(Input::PinVerdict(verdict), now);
                }
                Output::Event(event) => ctx.events.publish(event),
                Output::SendDigits { digits, path } => match path {
                    DigitPath::Rtp { lead_frames } => {
                        if let Some(leg) = &media.leg {
                            leg.send(MediaCommand::Key {
                                digits,
                                lead_frames,
                            });
                        }
                    }
                    DigitPath::Info => sip.act(SipAction::Info(digits)).await,
                },
            }
        }
        let counted = call.digit_counters().duplicates;
        if counted > duplicates {
            ctx.events
                .metrics()
                .digit_duplicates(u64::from(counted - duplicates));
            duplicates = counted;
        }
        if let Some(end) = call.ended() {
            break end;
        }
        let deadline = call
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            report = sip.next(), if !sip_gone => match report {
                Some(FromSip::Input(input)) => call.handle_input(input, Instant::now()),
                Some(FromSip::Acked(body)) => call.handle_input(Input::Acked { body: &body }, Instant::now()),
                Some(FromSip::Answered(sdp)) => call.handle_input(Input::Answered { sdp: &sdp }, Instant::now()),
                Some(FromSip::Reoffer { offer, is_update, reply }) => {
                    answer_reoffer(&mut call, &offer, is_update, reply).await
                }
                Some(FromSip::Info { content_type, body, reply }) => {
                    reply.status(call.info(&content_type, &body, Instant::now())).await
                }
                // No REFER of ours is waiting on it.
                Some(FromSip::Notify { reply, .. }) => reply.status(481).await,
                None => {
                    sip_gone = true;
                    call.handle_input(Input::DialogEnded, Instant::now())
                }
            },
            event = leg_event(&mut media.leg), if !leg_gone => match event {
                Some(MediaEvent::PlaybackDone(id)) => call.handle_input(Input::PlaybackDone(id), Instant::now()),
                Some(MediaEvent::Captured(id, name)) => {
                    // Said at 8 kHz, played in the room at 16: the media
                    // threads' own 2:1 filter, a few µs for the 2 s.
                    let mut wide = vec![0i16; name.len() * 2];
                    let mut up = crate::media::halfband::Upsampler::default();
                    for (i, o) in name.chunks(160).zip(wide.chunks_mut(320)) {
                        up.process(i, o);
                    }
                    media.name = Some(wide.into());
                    call.handle_input(Input::PlaybackDone(id), Instant::now())
                }
                Some(MediaEvent::Digit { digit, source, at }) => {
                    call.handle_input(Input::Digit { digit, source, at }, Instant::now())
                }
                Some(MediaEvent::RtpTimeout) => {
                    warn!(secs = ctx.settings().rtp_timeout.as_secs(), "no RTP");
                    call.handle_input(Input::RtpTimeout, Instant::now())
                }
                None => leg_gone = true,
            },
            Some(notice) = media.notices.1.recv() => call.handle_input(match notice {
                Notice::Kicked => Input::Kicked,
                Notice::RoomEnded => Input::RoomEnded,
            }, Instant::now()),
            Some(command) = commands.recv() => match command {
                CallCommand::Hangup => call.handle_input(Input::Hangup, Instant::now()),
                CallCommand::Dtmf(digits, reply) => {
                    reply.send(call.send_digits(&digits, 0)).ok();
                }
                CallCommand::Relay(digits) => call.relay_digits(&digits),
            },
            _ = tokio::time::sleep_until(deadline.into()) => call.handle_timeout(Instant::now()),
            // Once: the call may take a while to end (a CANCEL waiting for its 487).
            _ = ctx.shutdown.cancelled(), if !stopping => {
                stopping = true;
                call.handle_input(Input::Shutdown, Instant::now())
            }
        }
    };
    track.ended(end.reason);
    let leg = match media.leg {
        Some(leg) => leg.close(end.reason).await,
        None => MediaStats::default(),
    };
    Outcome {
        end,
        leg,
        digits: call.digit_counters(),
    }
}

/// Answer a re-INVITE or UPDATE as the call's core says.
async fn answer_reoffer(call: &mut Call, offer: &[u8], is_update: bool, reply: Responder) {
    let Reply { status, sdp } = call.reoffer(offer, is_update);
    info!(status, update = is_update, "re-offer answered");
    match sdp {
        Some(body) if status == 200 => reply.sdp(body).await,
        _ => reply.status(status).await,
    }
}

/// How a REFER to move a caller went.
enum Move {
    /// The caller's side reports it reached the room's node.
    Moved,
    /// The caller hung up (its call moved, or it gave up); `closed`: the
    /// dialog's events are gone.
    Gone { closed: bool },
    /// Refused, failed or no word in time: bridge it.
    Stayed,
}

/// Send the caller a REFER to `target` and wait for its outcome: the
/// NOTIFY that the new call is answered, or the caller's BYE. The call's
/// other SIP events are handled meanwhile (a phone puts the old call on
/// hold while it moves).
async fn move_call<S: SipLeg>(call: &mut Call, sip: &mut S, target: &str) -> Move {
    match sip.refer(target).await {
        Some(status) if (200..300).contains(&status) => {
            info!(status, "REFER accepted: the caller moves")
        }
        status => {
            info!(?status, "REFER not accepted: bridging");
            return Move::Stayed;
        }
    }
    let deadline = tokio::time::Instant::now() + super::bridge::MOVE_WAIT;
    loop {
        let report = tokio::select! {
            report = sip.next() => report,
            _ = tokio::time::sleep_until(deadline) => {
                info!("no word of the move in time: bridging");
                return Move::Stayed;
            }
        };
        let now = Instant::now();
        match report {
            None => {
                call.handle_input(Input::DialogEnded, now);
                return Move::Gone { closed: true };
            }
            Some(FromSip::Input(input)) => {
                let gone = matches!(input, Input::Bye | Input::Cancelled | Input::DialogEnded);
                call.handle_input(input, now);
                if gone {
                    info!("the caller hung up while it moved");
                    return Move::Gone { closed: false };
                }
            }
            Some(FromSip::Notify { status, reply }) => {
                reply.status(200).await;
                match status {
                    Some(s) if (200..300).contains(&s) => return Move::Moved,
                    Some(s) if s >= 300 => {
                        info!(status = s, "the move failed: bridging");
                        return Move::Stayed;
                    }
                    _ => {}
                }
            }
            Some(FromSip::Reoffer {
                offer,
                is_update,
                reply,
            }) => answer_reoffer(call, &offer, is_update, reply).await,
            Some(FromSip::Info {
                content_type,
                body,
                reply,
            }) => reply.status(call.info(&content_type, &body, now)).await,
            Some(FromSip::Acked(body)) => call.handle_input(Input::Acked { body: &body }, now),
            Some(FromSip::Answered(sdp)) => call.handle_input(Input::Answered { sdp: &sdp }, now),
        }
    }
}

/// A room with `record = true` that this call opened: its recording starts.
async fn record_from_the_start(room: &str, ctx: &CallContext) {
    let dir = ctx.settings().recordings_dir.clone();
    if let Err(e) = ctx.conference.record(room, &dir).await {
        warn!(%room, error = %e, "recording did not start");
    }
}

/// The call's media: its sockets until the leg starts, then the leg.
struct Media {
    sockets: Option<RtpSockets>,
    leg: Option<Leg>,
    /// In a bridge room: the bridge's far leg, which the member's key
    /// presses are relayed to.
    relay_to: Option<CallId>,
    /// What the caller said its name was, for the room to announce.
    name: Option<Arc<[i16]>>,
    notices: (
        mpsc::UnboundedSender<Notice>,
        mpsc::UnboundedReceiver<Notice>,
    ),
}

impl Media {
    /// Start the call's media; `false` when it could not be (the call ends).
    fn start(&mut self, party: &Party, params: MediaParams, ctx: &CallContext) -> bool {
        let (_, inband) = listens(ctx.settings().dtmf_mode);
        // A NAT'd far end is learned from the signalling IP, else from the
        // address its SDP names.
        let signalling_ip = party
            .signalling_ip
            .or(params.remote.map(|r| r.ip()))
            .unwrap_or(ctx.advertised);
        let learning = SourceLearning::new(params.remote, signalling_ip, ctx.settings().rtp_strict);
        let Some(sockets) = self.sockets.take() else {
            // Started already (a second answer): nothing to do.
            return self.leg.is_some();
        };
        let setup = MediaSetup {
            params,
            inband,
            rtp_timeout: ctx.settings().rtp_timeout,
            learning,
            cname: format!("{}@confgate", party.call),
            quality_alarm_mos: ctx.settings().quality_alarm_mos,
        };
        match ctx.conference.start_leg(sockets, setup) {
            Ok(leg) => {
                self.leg = Some(leg);
                true
            }
            Err(e) => {
                warn!(error = %e, "media did not start");
                false
            }
        }
    }

    /// Carry out a media action; `Some(id)` when a clip could not be played
    /// (a prompt that is missing ends at once).
    fn act(&self, action: MediaAction, ctx: &CallContext) -> Option<u64> {
        let leg = self.leg.as_ref()?;
        match action {
            MediaAction::Play { clip, looped, id } => {
                let book = ctx.prompts();
                let (samples, wide) = match clip {
                    Clip::EarlyMedia => (Some(book.early_media()), Some(book.early_media_wide())),
                    Clip::Prompt(prompt) => (book.get(prompt.name()), book.get_wide(prompt.name())),
                };
                match samples {
                    Some(samples) => leg.send(MediaCommand::Play {
                        samples,
                        wide,
                        looped,
                        id,
                    }),
                    None => return Some(id),
                }
            }
            MediaAction::Stop => leg.send(MediaCommand::Stop),
            MediaAction::Update(params) => leg.send(MediaCommand::Update(params)),
            MediaAction::Capture { frames, id } => leg.send(MediaCommand::Capture { frames, id }),
            MediaAction::Start(_) => {}
        }
        None
    }

    /// Join `room`: the core's next input, and how many others are there.
    async fn join(
        &mut self,
        room: String,
        moderator: bool,
        party: &Party,
        ctx: &Arc<CallContext>,
    ) -> (Input<'static>, Option<usize>) {
        let Some(leg) = &self.leg else {
            return (Input::JoinStopped, None);
        };
        // A room another node holds is reached through a bridge room here.
        let Some(seat) = super::bridge::route(ctx, room, moderator, party).await else {
            return (Input::JoinStopped, None);
        };
        let room = seat.room;
        let rules = ctx.settings().directory.rules(&room);
        let joined = leg
            .join(JoinRequest {
                room: room.clone(),
                moderator,
                rules,
                name: self.name.take(),
                call: party.call.clone(),
                sip_call_id: party.sip_call_id.clone(),
                from: party.from.clone(),
                to: party.to.clone(),
                direction: party.direction,
                direct: party.direct,
                notices: self.notices.0.clone(),
            })
            .await;
        let input = match joined {
            // Across a bridge the owner counts the others, and the
            // caller's keys are for the owner's keypad.
            Ok(_) if rules.bridge => {
                return match seat.far_leg {
                    Some(far) => {
                        self.relay_to = Some(far);
                        (Input::JoinedBridge, None)
                    }
                    // The bridge's own leg.
                    None => (Input::Joined, None),
                };
            }
            Ok(others) => return (Input::Joined, Some(others)),
            Err(JoinError::Full) => {
                warn!(%room, "room full");
                Input::RoomRefused(RoomRefusal::Full)
            }
            Err(JoinError::Locked) => {
                info!(%room, "room locked: caller refused");
                Input::RoomRefused(RoomRefusal::Locked)
            }
            Err(JoinError::Stopped) => Input::JoinStopped,
        };
        (input, None)
    }

    /// Tell the member how many others are in its room.
    async fn tell_count(&self, call: &str, others: usize, ctx: &CallContext) {
        let settings = ctx.settings();
        let Some(text) = participants_text(&settings, others) else {
            return;
        };
        match ctx.speaker.kept(&settings, text).await {
            Ok(clip) => {
                ctx.conference
                    .say(Audience::Call(call.to_owned()), clip)
                    .await;
            }
            Err(e) => warn!(error = %e, "participant count not spoken"),
        }
    }
}

/// The leg's next event; never, while there is no leg.
async fn leg_event(leg: &mut Option<Leg>) -> Option<MediaEvent> {
    match leg.as_mut() {
        Some(leg) => leg.events.recv().await,
        None => std::future::pending().await,
    }
}
