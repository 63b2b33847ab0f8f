//! The call core: every session rule of one call in one sans-IO object.
//!
//! A [`Call`] composes the call flow (inbound: answer, PIN, join; outbound:
//! ring, answer, join), the SDP session, the digit stream and the prompt
//! bookkeeping. Like str0m's `Rtc` it is fed inputs with the time
//! ([`Call::handle_input`], [`Call::handle_timeout`], and [`Call::reoffer`]
//! and [`Call::info`] for the requests that want an answer at once) and
//! drained of outputs ([`Call::poll_output`]): what to do on SIP, on the
//! media leg and in the room, which PIN to check, which events to publish.
//! [`Call::poll_timeout`] says when it next wants to be woken. The async
//! driver of a call only moves these.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dtmf::info::digit_from_info;
use crate::dtmf::{DigitCounters, DigitStream, Source};
use crate::events::Event;
use crate::ivr::inbound::{self, EndReason, InboundFlow, Prompt, Timers, Verdict};
use crate::ivr::keypad::{KeyBindings, Keypad};
use crate::ivr::outbound::{self, OutboundFlow};

use super::session::{MediaParams, SdpSession};

pub use super::exchange::{
    Clip, DigitPath, End, InboundCall, Input, MediaAction, OutboundCall, Output, Refused, Reply,
    RoomAction, SipAction,
};

/// How long before `calls.max_duration_secs` the caller is warned.
pub const TIME_WARNING: Duration = Duration::from_secs(60);

/// Audio before a dialled call's `dtmf` is keyed: 1 s.
const KEY_IN_LEAD_FRAMES: u32 = 50;

/// Relayed key presses kept for a bridge leg not yet in its room, at most
/// (the keyer takes 64 at once; a caller does not key this many while the
/// far end answers).
const MAX_RELAY_PENDING: usize = 32;

/// What a key press does once the call is in a room.
#[derive(Debug)]
enum RoomKeys {
    /// A control of the room here.
    Keypad(Keypad),
    /// The room is a bridge to the real one: the press is for that room's
    /// keypad, at the far end of the bridge.
    Relay,
}

#[derive(Debug)]
enum Flow {
    Inbound {
        flow: InboundFlow,
        /// The INVITE had no SDP: our offer went in the 200, the answer comes in the ACK.
        late_offer: bool,
        answered: bool,
    },
    Outbound {
        flow: OutboundFlow,
        room: String,
        to: String,
        stopping: bool,
        /// Keys to send once in the room.
        key_in: Option<String>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Limit {
    warn_at: Option<Instant>,
    end_at: Instant,
}

/// One call's whole session.
#[derive(Debug)]
pub struct Call {
    call: String,
    flow: Flow,
    session: SdpSession,
    digits: DigitStream,
    /// Ids of clips asked for; the flow waits only for the end of `waiting_for`.
    plays: u64,
    waiting_for: Option<u64>,
    keys: Arc<KeyBindings>,
    /// In a room: key presses are controls, or relayed across a bridge.
    room_keys: Option<RoomKeys>,
    max_duration: Option<Duration>,
    /// From the answer: when to warn, and when to end the call.
    limit: Option<Limit>,
    /// The time of the input being handled.
    clock: Instant,
    outputs: VecDeque<Output>,
}

impl Call {
    /// An inbound call offered at `now` (100 Trying already sent): the
    /// offer is answered, or the call is refused with the returned status.
    pub fn inbound(
        offered: InboundCall<'_>,
        mut session: SdpSession,
        now: Instant,
    ) -> Result<Call, Refused> {
        let late_offer = offered.offer.is_empty();
        if late_offer {
            session.offer();
        } else {
            session.answer(offered.offer).map_err(Refused)?;
        }
        // RFC 3261 §13.2.1: no early media without an answer of ours out.
        let timers = Timers {
            early_media: offered.timers.early_media.filter(|_| !late_offer),
            ..offered.timers
        };
        let mut call = Call {
            call: offered.call,
            flow: Flow::Inbound {
                flow: InboundFlow::new(now, timers, offered.entry),
                late_offer,
                answered: false,
            },
            session,
            digits: DigitStream::new(offered.dtmf),
            plays: 0,
            waiting_for: None,
            keys: offered.keys,
            room_keys: None,
            max_duration: offered.max_duration,
            limit: None,
            clock: now,
            outputs: VecDeque::new(),
        };
        call.drain_flow();
        Ok(call)
    }

    /// An outbound call whose INVITE (with `session`'s offer) went out at `now`.
    pub fn outbound(dialled: OutboundCall, session: SdpSession, now: Instant) -> Call {
        Call {
            call: dialled.call,
            flow: Flow::Outbound {
                flow: OutboundFlow::new(now, dialled.ring_timeout),
                room: dialled.room,
                to: dialled.to,
                stopping: false,
                key_in: dialled.key_in,
            },
            session,
            digits: DigitStream::new(dialled.dtmf),
            plays: 0,
            waiting_for: None,
            keys: dialled.keys,
            room_keys: None,
            max_duration: dialled.max_duration,
            limit: None,
            clock: now,
            outputs: VecDeque::new(),
        }
    }

    /// The media to open the leg with: negotiated, or provisional until
    /// the answer comes (late offer).
    pub fn media(&self) -> MediaParams {
        self.session
            .media()
            .unwrap_or_else(|| self.session.provisional_media())
    }

    /// Feed one input at `now`.
    pub fn handle_input(&mut self, input: Input<'_>, now: Instant) {
        self.clock = now;
        match input {
            Input::Digit { digit, source, at } => self.digit(digit, source, at, now),
            Input::PlaybackDone(id) => {
                if self.waiting_for == Some(id) {
                    self.waiting_for = None;
                    self.inbound_input(inbound::Input::PlaybackDone, now);
                }
            }
            Input::PinVerdict(verdict) => self.verdict(verdict),
            Input::Acked { body } => self.acked(body, now),
            Input::Answered { sdp } => {
                self.answered(sdp, now);
                self.start_limit(now);
            }
            Input::Joined | Input::JoinedBridge => {
                self.session.lock_codec();
                self.waiting_for = None;
                self.room_keys = Some(match input {
                    Input::JoinedBridge => RoomKeys::Relay,
                    _ => RoomKeys::Keypad(Keypad::new()),
                });
                if let Flow::Outbound { flow, key_in, .. } = &mut self.flow {
                    flow.joined(Ok(()));
                    if let Some(digits) = key_in.take() {
                        // A second for the far end's own prompt to start listening.
                        self.send_digits(&digits, KEY_IN_LEAD_FRAMES);
                    }
                }
            }
            Input::RoomRefused(why) => match &mut self.flow {
                Flow::Inbound { flow, .. } => flow.handle(inbound::Input::RoomRefused(why), now),
                Flow::Outbound { flow, .. } => flow.joined(Err(why.reason())),
            },
            Input::JoinStopped => match &mut self.flow {
                Flow::Inbound { flow, .. } => flow.handle(inbound::Input::Shutdown, now),
                Flow::Outbound { flow, .. } => flow.joined(Err("shutdown")),
            },
            // Gone without a word: before an answer it failed, after one it hung up.
            Input::DialogEnded => match &mut self.flow {
                Flow::Inbound { flow, .. } => flow.handle(inbound::Input::DialogEnded, now),
                Flow::Outbound { flow, .. } => {
                    flow.handle(outbound::Input::Failed(None), now);
                    flow.handle(outbound::Input::Bye, now);
                }
            },
            Input::Shutdown => match &mut self.flow {
                Flow::Inbound { flow, .. } => flow.handle(inbound::Input::Shutdown, now),
                // Once: a CANCEL or BYE is under way and must not be sent again.
                Flow::Outbound { flow, stopping, .. } if !*stopping => {
                    *stopping = true;
                    flow.handle(outbound::Input::Shutdown, now)
                }
                Flow::Outbound { .. } => {}
            },
            other => {
                let (inbound_input, outbound_input) = match other {
                    Input::Cancelled => (Some(inbound::Input::Cancel), None),
                    Input::Bye => (Some(inbound::Input::Bye), Some(outbound::Input::Bye)),
                    Input::Progress => (None, Some(outbound::Input::Progress)),
                    Input::DialFailed { status } => (None, Some(outbound::Input::Failed(status))),
                    Input::RtpTimeout => (
                        Some(inbound::Input::RtpTimeout),
                        Some(outbound::Input::RtpTimeout),
                    ),
                    Input::MediaFailed => (
                        Some(inbound::Input::MediaFailed),
                        Some(outbound::Input::MediaFailed),
                    ),
                    Input::Kicked => (Some(inbound::Input::Kicked), Some(outbound::Input::Kicked)),
                    Input::Left => (Some(inbound::Input::Left), Some(outbound::Input::Left)),
                    Input::RoomEnded => (
                        Some(inbound::Input::RoomEnded),
                        Some(outbound::Input::RoomEnded),
                    ),
                    Input::Hangup => (Some(inbound::Input::Hangup), Some(outbound::Input::Hangup)),
                    _ => (None, None),
                };
                match &mut self.flow {
                    Flow::Inbound { flow, .. } => {
                        if let Some(i) = inbound_input {
                            flow.handle(i, now)
                        }
                    }
                    Flow::Outbound { flow, .. } => {
                        if let Some(i) = outbound_input {
                            flow.handle(i, now)
                        }
                    }
                }
            }
        }
        self.drain_flow();
    }

    /// A re-INVITE or UPDATE: answer it now. An offer is answered within
    /// the room's codec once joined (488 otherwise); a re-INVITE without
    /// SDP asks for our offer (RFC 3261 §14.2), which offers the media the
    /// call has, so the answer in its ACK (which the stack does not hand
    /// on) cannot move it; an UPDATE without SDP is a session refresh.
    pub fn reoffer(&mut self, offer: &[u8], is_update: bool) -> Reply {
        if offer.is_empty() {
            return match is_update {
                true => Reply {
                    status: 200,
                    sdp: None,
                },
                false => Reply {
                    status: 200,
                    sdp: Some(self.session.offer_current()),
                },
            };
        }
        match self.session.answer(offer) {
            Ok((answer, media)) => {
                self.outputs
                    .push_back(Output::Media(MediaAction::Update(media)));
                Reply {
                    status: 200,
                    sdp: Some(answer),
                }
            }
            Err(e) => Reply {
                status: e.sip_status(),
                sdp: None,
            },
        }
    }

    /// A mid-dialog INFO: the status to answer it with. A DTMF body is a
    /// key press; an empty one is a keep-alive.
    pub fn info(&mut self, content_type: &str, body: &[u8], now: Instant) -> u16 {
        self.clock = now;
        let mime = content_type.split(';').next().unwrap_or("").trim();
        let dtmf_type = mime.eq_ignore_ascii_case("application/dtmf-relay")
            || mime.eq_ignore_ascii_case("application/dtmf");
        match digit_from_info(content_type, body) {
            Some(d) => {
                self.digit(d, Source::Info, now, now);
                self.drain_flow();
                200
            }
            None if body.iter().all(u8::is_ascii_whitespace) => 200,
            None if dtmf_type => 400,
            None => 415,
        }
    }

    /// Fire whatever deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = now;
        match &mut self.flow {
            Flow::Inbound { flow, .. } => flow.handle_timeout(now),
            Flow::Outbound { flow, .. } => flow.handle_timeout(now),
        }
        if let Some(limit) = &mut self.limit {
            if limit.warn_at.is_some_and(|t| now >= t) {
                limit.warn_at = None;
                if self.room_keys.is_some() {
                    self.outputs
                        .push_back(Output::Room(RoomAction::Say(Prompt::TimeWarning)));
                }
            }
            if now >= limit.end_at {
                self.limit = None;
                match &mut self.flow {
                    Flow::Inbound { flow, .. } => flow.handle(inbound::Input::TimeUp, now),
                    Flow::Outbound { flow, .. } => flow.handle(outbound::Input::TimeUp, now),
                }
            }
        }
        self.drain_flow();
    }

    /// When [`Call::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let flow = match &self.flow {
            Flow::Inbound { flow, .. } => flow.next_deadline(),
            Flow::Outbound { flow, .. } => flow.next_deadline(),
        };
        let limit = self
            .limit
            .map(|l| l.warn_at.map_or(l.end_at, |w| w.min(l.end_at)));
        match (flow, limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The call was answered at `now`: its time limit starts.
    fn start_limit(&mut self, now: Instant) {
        if let (Some(max), None) = (self.max_duration, self.limit) {
            self.limit = Some(Limit {
                warn_at: max.checked_sub(TIME_WARNING).map(|d| now + d),
                end_at: now + max,
            });
        }
    }

    /// The next thing to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// `Some` once the call is over.
    pub fn ended(&self) -> Option<End> {
        match &self.flow {
            Flow::Inbound { flow, .. } => flow.ended().map(|r| End {
                reason: r.as_str(),
                joined: false,
            }),
            Flow::Outbound { flow, .. } => {
                flow.ended().map(|(reason, joined)| End { reason, joined })
            }
        }
    }

    /// Key `digits` into the far end, after `lead_frames` of audio: as
    /// telephone-events when the call has them, else as SIP INFO. False
    /// when the call has no answered media to carry them.
    pub fn send_digits(&mut self, digits: &str, lead_frames: u32) -> bool {
        let answered = match &self.flow {
            Flow::Inbound { answered, .. } => *answered,
            Flow::Outbound { flow, .. } => flow.answered(),
        };
        let Some(media) = self
            .session
            .media()
            .filter(|_| answered && self.ended().is_none())
        else {
            return false;
        };
        let path = match media.dtmf_pt {
            Some(_) => DigitPath::Rtp { lead_frames },
            None => DigitPath::Info,
        };
        self.outputs.push_back(Output::SendDigits {
            digits: digits.to_owned(),
            path,
        });
        true
    }

    /// Key presses relayed from the other member of a bridge room (its
    /// [`RoomAction::Relay`]), for this call's far end: sent at once in
    /// the room, or, for a dialled leg not in it yet (the far end has not
    /// answered), kept and sent once it is, like its own keys.
    pub fn relay_digits(&mut self, digits: &str) {
        if self.ended().is_some() {
            return;
        }
        if self.room_keys.is_some() {
            self.send_digits(digits, 0);
            return;
        }
        if let Flow::Outbound { key_in, .. } = &mut self.flow {
            let pending = key_in.get_or_insert_with(String::new);
            let room = MAX_RELAY_PENDING.saturating_sub(pending.chars().count());
            pending.extend(digits.chars().take(room));
        }
    }

    /// How many key presses came from each source.
    pub fn digit_counters(&self) -> DigitCounters {
        self.digits.counters()
    }

    fn inbound_input(&mut self, input: inbound::Input, now: Instant) {
        if let Flow::Inbound { flow, .. } = &mut self.flow {
            flow.handle(input, now);
        }
    }

    fn digit(&mut self, digit: char, source: Source, at: Instant, now: Instant) {
        let Some(press) = self.digits.offer(digit, source, at) else {
            return;
        };
        self.outputs.push_back(Output::Event(Event::Digit {
            call: self.call.clone(),
            digit: press.digit,
            source: press.source,
        }));
        match &mut self.room_keys {
            Some(RoomKeys::Keypad(pad)) => {
                if let Some(action) = pad.press(&self.keys, press.digit, at) {
                    self.outputs
                        .push_back(Output::Room(RoomAction::Key(action)));
                }
            }
            // Each press once, after the de-duplication above: the far
            // end's keypad makes the sequences.
            Some(RoomKeys::Relay) => self
                .outputs
                .push_back(Output::Room(RoomAction::Relay(press.digit))),
            None => self.inbound_input(inbound::Input::Digit(press.digit), now),
        }
    }

    fn verdict(&mut self, verdict: Verdict) {
        let Flow::Inbound { flow, .. } = &mut self.flow else {
            return;
        };
        if verdict == Verdict::Wrong {
            self.outputs.push_back(Output::Event(Event::PinRejected {
                call: self.call.clone(),
                failures: flow.pin_failures() + 1,
            }));
        }
        flow.verdict(verdict);
    }

    fn acked(&mut self, body: &[u8], now: Instant) {
        let Flow::Inbound {
            flow, late_offer, ..
        } = &mut self.flow
        else {
            return;
        };
        if !*late_offer {
            flow.handle(inbound::Input::Acked, now);
            return;
        }
        // §13.2.1: the answer to our late offer is in the ACK; an unusable
        // one ends the call with BYE.
        match self.session.take_answer(body) {
            Ok(media) => {
                self.outputs
                    .push_back(Output::Media(MediaAction::Update(media)));
                flow.handle(inbound::Input::Acked, now);
            }
            Err(_) => flow.handle(inbound::Input::BadAnswer, now),
        }
    }

    fn answered(&mut self, sdp: &[u8], now: Instant) {
        let Flow::Outbound { flow, .. } = &mut self.flow else {
            return;
        };
        match self.session.take_answer(sdp) {
            Ok(media) => {
                self.outputs
                    .push_back(Output::Media(MediaAction::Start(media)));
                flow.handle(outbound::Input::Answered, now);
            }
            Err(_) => flow.handle(outbound::Input::AnswerUnusable, now),
        }
    }

    fn play(&mut self, clip: Clip, looped: bool) -> u64 {
        self.plays += 1;
        let id = self.plays;
        self.outputs
            .push_back(Output::Media(MediaAction::Play { clip, looped, id }));
        id
    }

    /// Turn what the flow asks into outputs.
    fn drain_flow(&mut self) {
        loop {
            match &mut self.flow {
                Flow::Inbound { flow, answered, .. } => {
                    let Some(action) = flow.poll_action() else {
                        return;
                    };
                    let answered = *answered;
                    self.inbound_action(action, answered);
                }
                Flow::Outbound { flow, .. } => {
                    let Some(action) = flow.poll_action() else {
                        return;
                    };
                    self.outbound_action(action);
                }
            }
        }
    }

    fn inbound_action(&mut self, action: inbound::Action, answered: bool) {
        use inbound::Action;
        match action {
            Action::EarlyMedia => {
                let body = self.session.description().to_vec();
                self.outputs
                    .push_back(Output::Sip(SipAction::Progress(body)));
                self.play(Clip::EarlyMedia, true);
            }
            Action::Ring => self.outputs.push_back(Output::Sip(SipAction::Ringing)),
            Action::Answer => {
                if let Flow::Inbound { answered, .. } = &mut self.flow {
                    *answered = true;
                }
                self.start_limit(self.clock);
                self.outputs.push_back(Output::Media(MediaAction::Stop));
                let body = self.session.description().to_vec();
                self.outputs.push_back(Output::Sip(SipAction::Answer(body)));
            }
            Action::Play(prompt) => {
                let id = self.play(Clip::Prompt(prompt), false);
                self.waiting_for = Some(id);
            }
            Action::StopPrompt => {
                self.waiting_for = None;
                self.outputs.push_back(Output::Media(MediaAction::Stop));
            }
            Action::CheckPin(pin) => self.outputs.push_back(Output::CheckPin(pin)),
            Action::CaptureName(d) => {
                self.plays += 1;
                let id = self.plays;
                let frames = (d.as_millis() / 20).max(1) as u32;
                self.outputs
                    .push_back(Output::Media(MediaAction::Capture { frames, id }));
                self.waiting_for = Some(id);
            }
            Action::LeaveRoom => self
                .outputs
                .push_back(Output::Room(RoomAction::Leave("max_duration"))),
            Action::Join(admission) => {
                let media = self.media();
                self.outputs.push_back(Output::Room(RoomAction::Join {
                    room: admission.room,
                    moderator: admission.moderator,
                    media,
                }));
            }
            // The caller's own BYE or CANCEL was already answered by the stack.
            Action::Hangup(
                EndReason::CallerHungUp
                | EndReason::CallerCancelled
                | EndReason::NoAck
                | EndReason::DialogEnded,
            ) => {}
            Action::Hangup(_) if answered => self.outputs.push_back(Output::Sip(SipAction::Bye)),
            Action::Hangup(_) => self.outputs.push_back(Output::Sip(SipAction::Reject(503))),
        }
    }

    fn outbound_action(&mut self, action: outbound::Action) {
        use outbound::Action;
        let Flow::Outbound { room, to, .. } = &self.flow else {
            return;
        };
        let (call, room, to) = (self.call.clone(), room.clone(), to.clone());
        let output = match action {
            Action::Ringing => Output::Event(Event::CallRinging { call, room, to }),
            Action::Answered => Output::Event(Event::CallAnswered { call, room, to }),
            Action::Join => match self.session.media() {
                Some(media) => Output::Room(RoomAction::Join {
                    room,
                    moderator: false,
                    media,
                }),
                None => {
                    if let Flow::Outbound { flow, .. } = &mut self.flow {
                        flow.joined(Err("no_common_codec"));
                    }
                    return;
                }
            },
            Action::Cancel => Output::Sip(SipAction::Cancel),
            Action::Bye => Output::Sip(SipAction::Bye),
            Action::Failed { status, reason } => Output::Event(Event::DialFailed {
                call,
                room,
                to,
                status,
                reason: reason.to_owned(),
            }),
        };
        self.outputs.push_back(output);
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
