//! The inbound call flow as a state machine (sans-IO): what to send the
//! caller and when, given what happened and the time. The call task feeds
//! it inputs and carries out its actions.
//!
//! Offered → (early media) → answered, waiting for the ACK → the PIN is
//! collected (or the room was named by a trusted source) → in the room →
//! ended.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::directory::Admission;
use super::pin::{PinAction, PinCollector, PinPrompt, PinRules};

/// Prompts the flow asks to play, by name in the prompt store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// The greeting that asks for the PIN.
    Welcome,
    InvalidPin,
    Goodbye,
    TryLater,
    ConferenceFull,
    ConferenceLocked,
    /// The room ended (its moderator left, or its time ran out).
    ConferenceEnded,
    /// A minute before `calls.max_duration_secs`.
    TimeWarning,
    /// `rooms.announce_names`: asks for the caller's name after the PIN.
    SayYourName,
    /// The beep after which the name is recorded.
    NameTone,
}

impl Prompt {
    pub fn name(self) -> &'static str {
        match self {
            Prompt::Welcome => "welcome",
            Prompt::InvalidPin => "invalid_pin",
            Prompt::Goodbye => "goodbye",
            Prompt::TryLater => "try_later",
            Prompt::ConferenceFull => "conference_full",
            Prompt::ConferenceLocked => "conference_locked",
            Prompt::ConferenceEnded => "conference_ended",
            Prompt::TimeWarning => "time_warning",
            Prompt::SayYourName => "say_your_name",
            Prompt::NameTone => "louder",
        }
    }
}

/// Why a room did not take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRefusal {
    /// `rooms.max_members` are in it.
    Full,
    /// A controller locked it.
    Locked,
}

impl RoomRefusal {
    /// As a dialled call's `dial_failed` reason names it.
    pub fn reason(self) -> &'static str {
        match self {
            RoomRefusal::Full => "room_full",
            RoomRefusal::Locked => "room_locked",
        }
    }
}

/// How the caller gets into a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// Ask for the PIN.
    Pin(PinRules),
    /// A trusted source named the room (and said whether the caller is
    /// one of its moderators).
    Direct(Admission),
}

/// What the call task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// 183 Session Progress with SDP, and start the early-media loop.
    EarlyMedia,
    /// 180 Ringing.
    Ring,
    /// 200 OK with SDP (stops the early-media loop).
    Answer,
    /// Play a prompt (replacing what plays).
    Play(Prompt),
    /// Barge-in: stop the prompt.
    StopPrompt,
    /// Look this PIN up (and check the lockout), then call [`InboundFlow::verdict`].
    CheckPin(String),
    /// The caller enters this room.
    Join(Admission),
    /// Let the caller out of its room; the room answers with [`Input::Left`].
    LeaveRoom,
    /// Record what the caller says for this long (its name); its end comes
    /// back as [`Input::PlaybackDone`].
    CaptureName(Duration),
    /// End the call (BYE when answered); the reason goes to the log.
    Hangup(EndReason),
}

/// The answer to [`Action::CheckPin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Room(Admission),
    Wrong,
    /// Too many failures from this caller or to this number.
    LockedOut,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CallerHungUp,
    CallerCancelled,
    IdleTimeout,
    NoAck,
    /// The ACK's SDP answer to our late offer could not be used (BYE sent).
    BadAnswer,
    /// The stack ended the dialog (no ACK, a transport error): nothing to send.
    DialogEnded,
    Shutdown,
    /// Attempts used up; goodbye was played.
    PinAttempts,
    /// Throttled; try-later was played.
    LockedOut,
    /// The room was full; conference-full was played.
    RoomFull,
    /// The room was locked; conference-locked was played.
    RoomLocked,
    /// Removed from the room by a controller.
    Kicked,
    /// Hung up from the control socket.
    ControlHangup,
    /// Left the room from the keypad; goodbye was played.
    Left,
    /// The room ended around the caller; conference-ended was played.
    RoomEnded,
    /// `calls.max_duration_secs` ran out; goodbye was played.
    MaxDuration,
    /// No RTP for the configured timeout.
    RtpTimeout,
    /// The call's media could not be set up (503 before the answer, BYE after).
    MediaFailed,
}

impl EndReason {
    /// The reason as events and logs name it.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::CallerHungUp => "hangup",
            EndReason::CallerCancelled => "cancelled",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::NoAck => "no_ack",
            EndReason::BadAnswer => "bad_answer",
            EndReason::DialogEnded => "dialog_ended",
            EndReason::Shutdown => "shutdown",
            EndReason::PinAttempts => "pin_attempts",
            EndReason::LockedOut => "locked_out",
            EndReason::RoomFull => "room_full",
            EndReason::RoomLocked => "room_locked",
            EndReason::Kicked => "kicked",
            EndReason::ControlHangup => "control_hangup",
            EndReason::Left => "left",
            EndReason::RoomEnded => "room_ended",
            EndReason::MaxDuration => "max_duration",
            EndReason::RtpTimeout => "rtp_timeout",
            EndReason::MediaFailed => "media_failed",
        }
    }
}

/// What happened to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The ACK for our 200 OK arrived.
    Acked,
    /// The ACK arrived with an SDP answer we cannot use.
    BadAnswer,
    /// The stack ended the dialog by itself.
    DialogEnded,
    /// The prompt we asked for played to its end.
    PlaybackDone,
    /// A key press (already merged across DTMF sources).
    Digit(char),
    /// The caller sent BYE.
    Bye,
    /// The caller sent CANCEL before the answer.
    Cancel,
    /// The daemon is stopping.
    Shutdown,
    /// The room refused the join.
    RoomRefused(RoomRefusal),
    /// A controller removed the caller from its room.
    Kicked,
    /// A controller hung the call up.
    Hangup,
    /// The caller left the room from the keypad (the room let it go).
    Left,
    /// The room ended with the caller in it (the room let it go).
    RoomEnded,
    /// The call has lasted `calls.max_duration_secs`.
    TimeUp,
    /// The caller's RTP stopped.
    RtpTimeout,
    /// The call's media could not be set up.
    MediaFailed,
}

/// Timing knobs.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Early media before answering; `None` answers at once after 180.
    pub early_media: Option<Duration>,
    /// Hang up when nothing moves the call on for this long before it
    /// reaches a room.
    pub idle: Duration,
    /// How long to wait for the ACK after our 200 OK (64·T1).
    pub ack: Duration,
    /// How long a caller who keyed a PIN has to say its name, for the room
    /// to announce; `None`: names are not asked.
    pub name: Option<Duration>,
}

#[derive(Debug)]
enum State {
    /// 183 sent, early media playing until `answer_at`.
    EarlyMedia {
        answer_at: Instant,
    },
    /// 200 OK sent; the stack retransmits it until the ACK or `give_up_at`.
    /// Keys pressed meanwhile wait in `early` for the PIN prompt: the phone
    /// takes the call as answered on our 200, and its first INFO or event
    /// may overtake its ACK.
    ExpectAck {
        give_up_at: Instant,
        early: String,
    },
    /// The PIN is being collected.
    Pin {
        collector: PinCollector,
        idle_at: Instant,
    },
    /// A last prompt plays (try-later, conference-full), then the call ends.
    Refusing(EndReason),
    /// Asking for the caller's name (prompt, tone, recording), then the room.
    Naming(Admission, NameStep),
    /// In the room.
    Joined,
    /// Asked the room to let the caller go, to end the call for this reason.
    Leaving(EndReason),
    Ended(EndReason),
}

/// Where a caller is in saying its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameStep {
    Prompt,
    Tone,
    Recording,
}

/// Keys kept from before the ACK.
const EARLY_DIGITS: usize = 32;

/// One inbound call's flow.
#[derive(Debug)]
pub struct InboundFlow {
    state: State,
    entry: Entry,
    timers: Timers,
    actions: VecDeque<Action>,
}

impl InboundFlow {
    /// A call was offered at `now` (100 Trying already went out).
    pub fn new(now: Instant, timers: Timers, entry: Entry) -> Self {
        let mut flow = InboundFlow {
            state: State::Ended(EndReason::Shutdown),
            entry,
            timers,
            actions: VecDeque::new(),
        };
        match timers.early_media {
            Some(d) => {
                flow.actions.push_back(Action::EarlyMedia);
                flow.state = State::EarlyMedia { answer_at: now + d };
            }
            None => {
                flow.actions.push_back(Action::Ring);
                flow.answer(now);
            }
        }
        flow
    }

    fn answer(&mut self, now: Instant) {
        self.actions.push_back(Action::Answer);
        self.state = State::ExpectAck {
            give_up_at: now + self.timers.ack,
            early: String::new(),
        };
    }

    fn end(&mut self, reason: EndReason) {
        if !matches!(self.state, State::Ended(_)) {
            self.actions.push_back(Action::Hangup(reason));
            self.state = State::Ended(reason);
        }
    }

    fn join(&mut self, admission: Admission) {
        self.actions.push_back(Action::Join(admission));
        self.state = State::Joined;
    }

    /// Carry out what the PIN collector asks.
    fn drain_collector(&mut self) {
        let State::Pin { collector, .. } = &mut self.state else {
            return;
        };
        let mut hangup = false;
        while let Some(a) = collector.poll_action() {
            self.actions.push_back(match a {
                PinAction::Play(p) => Action::Play(match p {
                    PinPrompt::EnterPin => Prompt::Welcome,
                    PinPrompt::InvalidPin => Prompt::InvalidPin,
                    PinPrompt::Goodbye => Prompt::Goodbye,
                }),
                PinAction::StopPrompt => Action::StopPrompt,
                PinAction::Submit(pin) => Action::CheckPin(pin),
                PinAction::Hangup => {
                    hangup = true;
                    continue;
                }
            });
        }
        if hangup {
            self.end(EndReason::PinAttempts);
        }
    }

    /// Feed one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match (&mut self.state, input) {
            (State::Ended(_), _) => {}
            (_, Input::Bye) => self.end(EndReason::CallerHungUp),
            (_, Input::DialogEnded) => self.end(EndReason::DialogEnded),
            (_, Input::Shutdown) => self.end(EndReason::Shutdown),
            (_, Input::Kicked) => self.end(EndReason::Kicked),
            (_, Input::Hangup) => self.end(EndReason::ControlHangup),
            (_, Input::RtpTimeout) => self.end(EndReason::RtpTimeout),
            (_, Input::MediaFailed) => self.end(EndReason::MediaFailed),
            (State::Joined, Input::RoomRefused(why)) => {
                let (prompt, reason) = match why {
                    RoomRefusal::Full => (Prompt::ConferenceFull, EndReason::RoomFull),
                    RoomRefusal::Locked => (Prompt::ConferenceLocked, EndReason::RoomLocked),
                };
                self.actions.push_back(Action::Play(prompt));
                self.state = State::Refusing(reason);
            }
            (State::Joined, Input::Left) => {
                self.actions.push_back(Action::Play(Prompt::Goodbye));
                self.state = State::Refusing(EndReason::Left);
            }
            (State::Leaving(reason), Input::Left) => {
                let reason = *reason;
                self.actions.push_back(Action::Play(Prompt::Goodbye));
                self.state = State::Refusing(reason);
            }
            (State::Joined, Input::TimeUp) => {
                self.actions.push_back(Action::LeaveRoom);
                self.state = State::Leaving(EndReason::MaxDuration);
            }
            (State::Refusing(_) | State::Leaving(_), Input::TimeUp) => {}
            (_, Input::TimeUp) => self.end(EndReason::MaxDuration),
            (State::Joined, Input::RoomEnded) => {
                self.actions
                    .push_back(Action::Play(Prompt::ConferenceEnded));
                self.state = State::Refusing(EndReason::RoomEnded);
            }
            (State::EarlyMedia { .. } | State::ExpectAck { .. }, Input::Cancel) => {
                self.end(EndReason::CallerCancelled)
            }
            (State::ExpectAck { .. }, Input::BadAnswer) => self.end(EndReason::BadAnswer),
            // Bounded: more than this is no PIN anyone keys before an ACK.
            (State::ExpectAck { early, .. }, Input::Digit(d)) if early.len() < EARLY_DIGITS => {
                early.push(d)
            }
            (State::ExpectAck { early, .. }, Input::Acked) => {
                let early = std::mem::take(early);
                match self.entry.clone() {
                    Entry::Direct(admission) => self.join(admission),
                    Entry::Pin(rules) => {
                        let mut collector = PinCollector::new(rules);
                        for d in early.chars() {
                            collector.on_digit(d, now);
                        }
                        self.state = State::Pin {
                            collector,
                            idle_at: now + self.timers.idle,
                        };
                        self.drain_collector();
                    }
                }
            }
            (State::Pin { collector, .. }, Input::PlaybackDone) => {
                collector.on_prompt_done(now);
                self.drain_collector();
            }
            (State::Pin { collector, idle_at }, Input::Digit(d)) => {
                *idle_at = now + self.timers.idle;
                collector.on_digit(d, now);
                self.drain_collector();
            }
            (State::Naming(_, step @ NameStep::Prompt), Input::PlaybackDone) => {
                *step = NameStep::Tone;
                self.actions.push_back(Action::Play(Prompt::NameTone));
            }
            (State::Naming(_, step @ NameStep::Tone), Input::PlaybackDone) => {
                *step = NameStep::Recording;
                let d = self.timers.name.unwrap_or_default();
                self.actions.push_back(Action::CaptureName(d));
            }
            (State::Naming(admission, NameStep::Recording), Input::PlaybackDone) => {
                let admission = admission.clone();
                self.join(admission);
            }
            (State::Refusing(reason), Input::PlaybackDone) => {
                let reason = *reason;
                self.end(reason)
            }
            _ => {}
        }
    }

    /// The answer to the last [`Action::CheckPin`].
    pub fn verdict(&mut self, verdict: Verdict) {
        let State::Pin { collector, .. } = &mut self.state else {
            return;
        };
        match verdict {
            Verdict::Room(admission) => {
                collector.accept();
                match self.timers.name {
                    Some(_) => {
                        self.actions.push_back(Action::Play(Prompt::SayYourName));
                        self.state = State::Naming(admission, NameStep::Prompt);
                    }
                    None => self.join(admission),
                }
            }
            Verdict::Wrong => {
                collector.reject();
                self.drain_collector();
            }
            Verdict::LockedOut => {
                self.actions.push_back(Action::Play(Prompt::TryLater));
                self.state = State::Refusing(EndReason::LockedOut);
            }
        }
    }

    /// Fire whatever deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::EarlyMedia { answer_at } if now >= *answer_at => self.answer(now),
            State::ExpectAck { give_up_at, .. } if now >= *give_up_at => self.end(EndReason::NoAck),
            State::Pin { idle_at, .. } if now >= *idle_at => self.end(EndReason::IdleTimeout),
            State::Pin { collector, .. } => {
                collector.on_timeout(now);
                self.drain_collector();
            }
            _ => {}
        }
    }

    /// The next moment [`Self::handle_timeout`] must be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::EarlyMedia { answer_at } => Some(*answer_at),
            State::ExpectAck { give_up_at, .. } => Some(*give_up_at),
            State::Pin { collector, idle_at } => Some(
                collector
                    .next_deadline()
                    .map_or(*idle_at, |d| d.min(*idle_at)),
            ),
            State::Refusing(_)
            | State::Naming(..)
            | State::Joined
            | State::Leaving(_)
            | State::Ended(_) => None,
        }
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// `Some(reason)` once the call is over.
    pub fn ended(&self) -> Option<EndReason> {
        match self.state {
            State::Ended(r) => Some(r),
            _ => None,
        }
    }

    /// Failed PIN attempts so far.
    pub fn pin_failures(&self) -> u32 {
        match &self.state {
            State::Pin { collector, .. } => collector.failures().0,
            _ => 0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    const TIMERS: Timers = Timers {
        early_media: Some(Duration::from_millis(1000)),
        idle: Duration::from_secs(300),
        ack: Duration::from_secs(32),
        name: None,
    };

    const RULES: PinRules = PinRules {
        min_len: 4,
        max_len: 8,
        attempts: 3,
        first_digit: Duration::from_secs(10),
        inter_digit: Duration::from_secs(5),
    };

    fn admit(room: &str) -> Admission {
        Admission {
            room: room.into(),
            moderator: false,
        }
    }

    #[test]
    fn with_names_the_caller_hears_a_prompt_and_a_tone_then_its_name_is_kept_then_it_joins() {
        let t0 = Instant::now();
        let timers = Timers {
            name: Some(Duration::from_secs(2)),
            ..TIMERS
        };
        let mut f = InboundFlow::new(t0, timers, pin_entry());
        f.handle_timeout(t0 + Duration::from_secs(1));
        f.handle(Input::Acked, t0 + Duration::from_secs(1));
        drain(&mut f);
        for d in "1234#".chars() {
            f.handle(Input::Digit(d), t0 + Duration::from_secs(2));
        }
        drain(&mut f);
        f.verdict(Verdict::Room(admit("1234")));
        assert_eq!(drain(&mut f), [Action::Play(Prompt::SayYourName)]);
        f.handle(Input::PlaybackDone, t0 + Duration::from_secs(4));
        assert_eq!(drain(&mut f), [Action::Play(Prompt::NameTone)]);
        f.handle(Input::PlaybackDone, t0 + Duration::from_secs(4));
        assert_eq!(drain(&mut f), [Action::CaptureName(Duration::from_secs(2))]);
        // Keys while it speaks change nothing.
        f.handle(Input::Digit('5'), t0 + Duration::from_secs(5));
        assert!(drain(&mut f).is_empty());
        f.handle(Input::PlaybackDone, t0 + Duration::from_secs(6));
        assert_eq!(drain(&mut f), [Action::Join(admit("1234"))]);
    }

    fn pin_entry() -> Entry {
        Entry::Pin(RULES)
    }

    fn drain(f: &mut InboundFlow) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    /// Answered and acked at `t0 + 1 s`, the welcome prompt requested.
    fn acked(t0: Instant, entry: Entry) -> InboundFlow {
        let mut f = InboundFlow::new(t0, TIMERS, entry);
        f.handle_timeout(t0 + Duration::from_secs(1));
        f.handle(Input::Acked, t0 + Duration::from_secs(1));
        drain(&mut f);
        f
    }

    fn keys(f: &mut InboundFlow, s: &str, at: Instant) {
        for d in s.chars() {
            f.handle(Input::Digit(d), at);
        }
    }

    #[test]
    fn a_pin_with_barge_in_reaches_the_room() {
        let t0 = Instant::now();
        let mut f = acked(t0, pin_entry());
        let t = t0 + Duration::from_secs(2);
        keys(&mut f, "1234#", t);
        assert_eq!(
            drain(&mut f),
            [Action::StopPrompt, Action::CheckPin("1234".into())]
        );
        f.verdict(Verdict::Room(admit("1234")));
        assert_eq!(drain(&mut f), [Action::Join(admit("1234"))]);
        assert_eq!(f.next_deadline(), None, "no idle timeout in a room");
        f.handle(Input::PlaybackDone, t);
        keys(&mut f, "9#", t);
        assert!(drain(&mut f).is_empty() && f.ended().is_none());
    }

    #[test]
    fn keys_that_overtake_the_ack_are_kept_for_the_pin() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        let answered = t0 + Duration::from_secs(1);
        f.handle_timeout(answered);
        drain(&mut f);
        // The phone's first INFO is handled before its ACK.
        keys(&mut f, "8", answered);
        assert!(drain(&mut f).is_empty(), "nothing to do before the ACK");
        f.handle(Input::Acked, answered);
        assert_eq!(
            drain(&mut f),
            [Action::Play(Prompt::Welcome), Action::StopPrompt]
        );
        keys(&mut f, "642#", answered + Duration::from_secs(5));
        assert_eq!(drain(&mut f), [Action::CheckPin("8642".into())]);
    }

    #[test]
    fn a_trusted_direct_entry_skips_the_pin() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, Entry::Direct(admit("42")));
        f.handle_timeout(t0 + Duration::from_secs(1));
        f.handle(Input::Acked, t0 + Duration::from_secs(1));
        assert_eq!(
            drain(&mut f),
            [
                Action::EarlyMedia,
                Action::Answer,
                Action::Join(admit("42"))
            ]
        );
    }

    #[test]
    fn a_direct_entry_as_moderator_joins_as_one() {
        let t0 = Instant::now();
        let moderator = Admission {
            room: "42".into(),
            moderator: true,
        };
        let mut f = InboundFlow::new(t0, TIMERS, Entry::Direct(moderator.clone()));
        f.handle_timeout(t0 + Duration::from_secs(1));
        f.handle(Input::Acked, t0 + Duration::from_secs(1));
        assert_eq!(drain(&mut f).last(), Some(&Action::Join(moderator)));
    }

    #[test]
    fn a_full_or_locked_room_plays_its_prompt_then_hangs_up() {
        let t0 = Instant::now();
        for (why, prompt, reason) in [
            (
                RoomRefusal::Full,
                Prompt::ConferenceFull,
                EndReason::RoomFull,
            ),
            (
                RoomRefusal::Locked,
                Prompt::ConferenceLocked,
                EndReason::RoomLocked,
            ),
        ] {
            let mut f = acked(t0, Entry::Direct(admit("42")));
            f.handle(Input::RoomRefused(why), t0 + Duration::from_secs(2));
            assert_eq!(drain(&mut f), [Action::Play(prompt)]);
            // Keys pressed meanwhile change nothing.
            f.handle(Input::Digit('1'), t0 + Duration::from_secs(3));
            f.handle(Input::PlaybackDone, t0 + Duration::from_secs(5));
            assert_eq!(drain(&mut f), [Action::Hangup(reason)]);
            assert_eq!(reason.as_str(), why.reason());
        }
    }

    #[test]
    fn kicks_and_dead_media_end_a_joined_call() {
        let t0 = Instant::now();
        for (input, reason) in [
            (Input::Kicked, EndReason::Kicked),
            (Input::RtpTimeout, EndReason::RtpTimeout),
            (Input::MediaFailed, EndReason::MediaFailed),
        ] {
            let mut f = acked(t0, Entry::Direct(admit("42")));
            f.handle(input, t0 + Duration::from_secs(2));
            assert_eq!(drain(&mut f), [Action::Hangup(reason)]);
        }
    }

    #[test]
    fn digits_before_the_answer_are_ignored() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        drain(&mut f);
        keys(&mut f, "1234#", t0);
        assert!(drain(&mut f).is_empty());
    }

    #[test]
    fn wrong_pins_then_goodbye_and_hangup() {
        let t0 = Instant::now();
        let mut f = acked(t0, pin_entry());
        let t = t0 + Duration::from_secs(2);
        for attempt in 1..=3 {
            f.handle(Input::PlaybackDone, t);
            keys(&mut f, "0000#", t);
            assert_eq!(drain(&mut f), [Action::CheckPin("0000".into())]);
            f.verdict(Verdict::Wrong);
            let want = if attempt < 3 {
                Prompt::InvalidPin
            } else {
                Prompt::Goodbye
            };
            assert_eq!(drain(&mut f), [Action::Play(want)]);
        }
        f.handle(Input::PlaybackDone, t);
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::PinAttempts)]);
    }

    #[test]
    fn a_locked_out_caller_hears_try_later_then_is_hung_up() {
        let t0 = Instant::now();
        let mut f = acked(t0, pin_entry());
        let t = t0 + Duration::from_secs(2);
        keys(&mut f, "4321#", t);
        drain(&mut f);
        f.verdict(Verdict::LockedOut);
        assert_eq!(drain(&mut f), [Action::Play(Prompt::TryLater)]);
        keys(&mut f, "4321#", t);
        assert!(drain(&mut f).is_empty(), "no more digits are taken");
        f.handle(Input::PlaybackDone, t);
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::LockedOut)]);
    }

    #[test]
    fn silence_reprompts_until_attempts_are_used() {
        let t0 = Instant::now();
        let mut f = acked(t0, pin_entry());
        let mut t = t0 + Duration::from_secs(2);
        f.handle(Input::PlaybackDone, t);
        for _ in 0..2 {
            assert_eq!(f.next_deadline(), Some(t + RULES.first_digit));
            t += RULES.first_digit;
            f.handle_timeout(t);
            assert_eq!(drain(&mut f), [Action::Play(Prompt::Welcome)]);
            f.handle(Input::PlaybackDone, t);
        }
        t += RULES.first_digit;
        f.handle_timeout(t);
        assert_eq!(drain(&mut f), [Action::Play(Prompt::Goodbye)]);
        f.handle(Input::PlaybackDone, t);
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::PinAttempts)]);
    }

    #[test]
    fn early_media_then_answer_then_prompt() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        assert_eq!(drain(&mut f), [Action::EarlyMedia]);
        assert_eq!(f.next_deadline(), Some(t0 + Duration::from_millis(1000)));
        f.handle_timeout(t0 + Duration::from_millis(999));
        assert!(drain(&mut f).is_empty(), "not before the deadline");
        f.handle_timeout(t0 + Duration::from_millis(1000));
        assert_eq!(drain(&mut f), [Action::Answer]);
        f.handle(Input::Acked, t0 + Duration::from_millis(1010));
        assert_eq!(drain(&mut f), [Action::Play(Prompt::Welcome)]);
        f.handle(Input::PlaybackDone, t0 + Duration::from_secs(7));
        assert!(
            drain(&mut f).is_empty() && f.ended().is_none(),
            "stays up listening"
        );
    }

    #[test]
    fn without_early_media_rings_and_answers_at_once() {
        let t0 = Instant::now();
        let timers = Timers {
            early_media: None,
            ..TIMERS
        };
        let mut f = InboundFlow::new(t0, timers, pin_entry());
        assert_eq!(drain(&mut f), [Action::Ring, Action::Answer]);
    }

    #[test]
    fn cancel_during_early_media_ends_without_answer() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        drain(&mut f);
        f.handle(Input::Cancel, t0 + Duration::from_millis(300));
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::CallerCancelled)]);
        assert_eq!(f.next_deadline(), None);
        f.handle_timeout(t0 + Duration::from_secs(2));
        assert!(drain(&mut f).is_empty(), "no answer after the cancel");
    }

    #[test]
    fn idle_timeout_counts_from_the_ack() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        f.handle_timeout(t0 + Duration::from_secs(1));
        let acked = t0 + Duration::from_secs(1);
        f.handle(Input::Acked, acked);
        drain(&mut f);
        f.handle_timeout(acked + Duration::from_secs(299));
        assert!(f.ended().is_none());
        f.handle_timeout(acked + Duration::from_secs(300));
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::IdleTimeout)]);
        assert_eq!(f.ended(), Some(EndReason::IdleTimeout));
    }

    #[test]
    fn missing_ack_gives_up_after_64_t1() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        f.handle_timeout(t0 + Duration::from_secs(1));
        drain(&mut f);
        f.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::NoAck)]);
    }

    #[test]
    fn bye_ends_once() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS, pin_entry());
        f.handle_timeout(t0 + Duration::from_secs(1));
        f.handle(Input::Acked, t0 + Duration::from_secs(1));
        drain(&mut f);
        f.handle(Input::Bye, t0 + Duration::from_secs(3));
        f.handle(Input::Bye, t0 + Duration::from_secs(3));
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::CallerHungUp)]);
    }
}
