//! The inbound call flow as a state machine (sans-IO): what to send the
//! caller and when, given what happened and the time. The call task feeds
//! it inputs and carries out its actions.
//!
//! Offered → (early media) → answered, waiting for the ACK → greeting (the
//! welcome/PIN prompt) → listening → ended.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Prompts the flow asks to play, by name in the prompt store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Welcome,
    Goodbye,
}

impl Prompt {
    pub fn name(self) -> &'static str {
        match self {
            Prompt::Welcome => "welcome",
            Prompt::Goodbye => "goodbye",
        }
    }
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
    /// End the call (BYE when answered); the reason goes to the log.
    Hangup(EndReason),
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    CallerHungUp,
    CallerCancelled,
    IdleTimeout,
    NoAck,
    Shutdown,
}

/// What happened to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The ACK for our 200 OK arrived.
    Acked,
    /// The prompt we asked for played to its end.
    PlaybackDone,
    /// The caller sent BYE.
    Bye,
    /// The caller sent CANCEL before the answer.
    Cancel,
    /// The daemon is stopping.
    Shutdown,
}

/// Timing knobs.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Early media before answering; `None` answers at once after 180.
    pub early_media: Option<Duration>,
    /// Hang up when nothing moves the call on for this long.
    pub idle: Duration,
    /// How long to wait for the ACK after our 200 OK (64·T1).
    pub ack: Duration,
}

#[derive(Debug)]
enum State {
    /// 183 sent, early media playing until `answer_at`.
    EarlyMedia {
        answer_at: Instant,
    },
    /// 200 OK sent; the stack retransmits it until the ACK or `give_up_at`.
    ExpectAck {
        give_up_at: Instant,
    },
    /// The prompt plays.
    Greeting {
        idle_at: Instant,
    },
    /// Prompt done; the call stays up, listening.
    Listening {
        idle_at: Instant,
    },
    Ended(EndReason),
}

/// One inbound call's flow.
#[derive(Debug)]
pub struct InboundFlow {
    state: State,
    timers: Timers,
    actions: VecDeque<Action>,
}

impl InboundFlow {
    /// A call was offered at `now` (100 Trying already went out).
    pub fn new(now: Instant, timers: Timers) -> Self {
        let mut flow = InboundFlow {
            state: State::Ended(EndReason::Shutdown),
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
        };
    }

    fn end(&mut self, reason: EndReason) {
        if !matches!(self.state, State::Ended(_)) {
            self.actions.push_back(Action::Hangup(reason));
            self.state = State::Ended(reason);
        }
    }

    /// Feed one input.
    pub fn handle(&mut self, input: Input, now: Instant) {
        match (&self.state, input) {
            (State::Ended(_), _) => {}
            (_, Input::Bye) => self.end(EndReason::CallerHungUp),
            (_, Input::Shutdown) => self.end(EndReason::Shutdown),
            (State::EarlyMedia { .. } | State::ExpectAck { .. }, Input::Cancel) => {
                self.end(EndReason::CallerCancelled)
            }
            (State::ExpectAck { .. }, Input::Acked) => {
                self.actions.push_back(Action::Play(Prompt::Welcome));
                self.state = State::Greeting {
                    idle_at: now + self.timers.idle,
                };
            }
            (State::Greeting { idle_at }, Input::PlaybackDone) => {
                self.state = State::Listening { idle_at: *idle_at };
            }
            _ => {}
        }
    }

    /// Fire whatever deadline has passed at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::EarlyMedia { answer_at } if now >= answer_at => self.answer(now),
            State::ExpectAck { give_up_at } if now >= give_up_at => self.end(EndReason::NoAck),
            State::Greeting { idle_at } | State::Listening { idle_at } if now >= idle_at => {
                self.end(EndReason::IdleTimeout)
            }
            _ => {}
        }
    }

    /// The next moment [`Self::handle_timeout`] must be called.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::EarlyMedia { answer_at } => Some(answer_at),
            State::ExpectAck { give_up_at } => Some(give_up_at),
            State::Greeting { idle_at } | State::Listening { idle_at } => Some(idle_at),
            State::Ended(_) => None,
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
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    const TIMERS: Timers = Timers {
        early_media: Some(Duration::from_millis(1000)),
        idle: Duration::from_secs(300),
        ack: Duration::from_secs(32),
    };

    fn drain(f: &mut InboundFlow) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    #[test]
    fn early_media_then_answer_then_prompt() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS);
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
        let mut f = InboundFlow::new(t0, timers);
        assert_eq!(drain(&mut f), [Action::Ring, Action::Answer]);
    }

    #[test]
    fn cancel_during_early_media_ends_without_answer() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS);
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
        let mut f = InboundFlow::new(t0, TIMERS);
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
        let mut f = InboundFlow::new(t0, TIMERS);
        f.handle_timeout(t0 + Duration::from_secs(1));
        drain(&mut f);
        f.handle_timeout(t0 + Duration::from_secs(33));
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::NoAck)]);
    }

    #[test]
    fn bye_ends_once() {
        let t0 = Instant::now();
        let mut f = InboundFlow::new(t0, TIMERS);
        f.handle_timeout(t0 + Duration::from_secs(1));
        f.handle(Input::Acked, t0 + Duration::from_secs(1));
        drain(&mut f);
        f.handle(Input::Bye, t0 + Duration::from_secs(3));
        f.handle(Input::Bye, t0 + Duration::from_secs(3));
        assert_eq!(drain(&mut f), [Action::Hangup(EndReason::CallerHungUp)]);
    }
}
