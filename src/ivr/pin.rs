//! PIN collection as a state machine (sans-IO): the prompt plays with
//! barge-in, digits are gathered until `#`, `*` starts over, silence
//! re-prompts, and a limited number of attempts ends in goodbye.
//!
//! A pause after a PIN of valid length counts as `#` (as Asterisk's `Read()`
//! takes what was keyed when its timeout fires): a caller who forgets the
//! pound key, or a phone that holds its last digits back, still gets in.
//!
//! The owner feeds prompt ends, digits and the time, checks a submitted PIN
//! against its rooms and answers with [`PinCollector::accept`] or
//! [`PinCollector::reject`].

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The rules, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinRules {
    pub min_len: usize,
    pub max_len: usize,
    /// Failed attempts (wrong PIN, too short/long, silence) before goodbye.
    pub attempts: u32,
    /// Silence allowed after a prompt before the first digit.
    pub first_digit: Duration,
    /// Silence allowed between digits.
    pub inter_digit: Duration,
}

/// Prompts the collector asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinPrompt {
    /// "please enter your conference pin, then press the pound key"
    EnterPin,
    /// "that pin is not valid. please try again."
    InvalidPin,
    /// "goodbye."
    Goodbye,
}

/// What the owner must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinAction {
    Play(PinPrompt),
    /// Barge-in: stop the prompt now.
    StopPrompt,
    /// Check this PIN, then call `accept` or `reject`.
    Submit(String),
    /// Attempts used up and goodbye played: hang up.
    Hangup,
}

/// Why an attempt failed (for logs and counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    WrongPin,
    TooShort,
    TooLong,
    NoDigits,
    InterDigitTimeout,
}

#[derive(Debug)]
enum State {
    /// A prompt plays; digits barge in.
    Prompting {
        then_hangup: bool,
    },
    /// Waiting for digits; `deadline` is the first- or inter-digit timeout.
    Collecting {
        deadline: Instant,
    },
    /// A PIN was submitted; waiting for the owner's verdict.
    Checking,
    Done,
}

#[derive(Debug)]
pub struct PinCollector {
    rules: PinRules,
    state: State,
    digits: String,
    failures: u32,
    actions: VecDeque<PinAction>,
    last_failure: Option<Failure>,
}

impl PinCollector {
    /// Start: the enter-PIN prompt plays.
    pub fn new(rules: PinRules) -> Self {
        let mut c = PinCollector {
            rules,
            state: State::Done,
            digits: String::new(),
            failures: 0,
            actions: VecDeque::new(),
            last_failure: None,
        };
        c.prompt(PinPrompt::EnterPin);
        c
    }

    fn prompt(&mut self, p: PinPrompt) {
        self.actions.push_back(PinAction::Play(p));
        self.state = State::Prompting {
            then_hangup: p == PinPrompt::Goodbye,
        };
    }

    /// The prompt asked for finished playing.
    pub fn on_prompt_done(&mut self, now: Instant) {
        match self.state {
            State::Prompting { then_hangup: true } => {
                self.actions.push_back(PinAction::Hangup);
                self.state = State::Done;
            }
            State::Prompting { then_hangup: false } => {
                self.state = State::Collecting {
                    deadline: now + self.rules.first_digit,
                };
            }
            _ => {}
        }
    }

    /// A digit arrived (from any source).
    pub fn on_digit(&mut self, digit: char, now: Instant) {
        match self.state {
            State::Prompting { then_hangup: false } => {
                self.actions.push_back(PinAction::StopPrompt);
            }
            State::Collecting { .. } => {}
            _ => return,
        }
        match digit {
            '*' => {
                self.digits.clear();
                self.prompt(PinPrompt::EnterPin);
            }
            '#' => self.finish(),
            d => {
                self.digits.push(d);
                if self.digits.len() > self.rules.max_len {
                    self.fail(Failure::TooLong);
                } else {
                    self.state = State::Collecting {
                        deadline: now + self.rules.inter_digit,
                    };
                }
            }
        }
    }

    fn finish(&mut self) {
        if self.digits.is_empty() {
            self.fail(Failure::NoDigits);
        } else if self.digits.len() < self.rules.min_len {
            self.fail(Failure::TooShort);
        } else {
            self.actions
                .push_back(PinAction::Submit(std::mem::take(&mut self.digits)));
            self.state = State::Checking;
        }
    }

    fn fail(&mut self, why: Failure) {
        self.digits.clear();
        self.failures += 1;
        self.last_failure = Some(why);
        if self.failures >= self.rules.attempts {
            self.prompt(PinPrompt::Goodbye);
        } else if why == Failure::NoDigits {
            self.prompt(PinPrompt::EnterPin);
        } else {
            self.prompt(PinPrompt::InvalidPin);
        }
    }

    /// The submitted PIN opened a room: collection is over.
    pub fn accept(&mut self) {
        if matches!(self.state, State::Checking) {
            self.state = State::Done;
        }
    }

    /// The submitted PIN matched no room.
    pub fn reject(&mut self) {
        if matches!(self.state, State::Checking) {
            self.fail(Failure::WrongPin);
        }
    }

    /// Fire the digit timeouts. After the last digit of an entry of valid
    /// length the timeout submits it; a shorter entry is a failure.
    pub fn on_timeout(&mut self, now: Instant) {
        if let State::Collecting { deadline } = self.state {
            if now >= deadline {
                if self.digits.len() >= self.rules.min_len.max(1) {
                    // Longer than max_len never gets here: the digit past it fails at once.
                    self.finish();
                } else if self.digits.is_empty() {
                    self.fail(Failure::NoDigits);
                } else {
                    self.fail(Failure::InterDigitTimeout);
                }
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Collecting { deadline } => Some(deadline),
            _ => None,
        }
    }

    pub fn poll_action(&mut self) -> Option<PinAction> {
        self.actions.pop_front()
    }

    /// Failed attempts so far, and the last reason.
    pub fn failures(&self) -> (u32, Option<Failure>) {
        (self.failures, self.last_failure)
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    const RULES: PinRules = PinRules {
        min_len: 4,
        max_len: 8,
        attempts: 3,
        first_digit: Duration::from_secs(10),
        inter_digit: Duration::from_secs(5),
    };

    fn drain(c: &mut PinCollector) -> Vec<PinAction> {
        std::iter::from_fn(|| c.poll_action()).collect()
    }

    fn keys(c: &mut PinCollector, s: &str, t: Instant) {
        for d in s.chars() {
            c.on_digit(d, t);
        }
    }

    #[test]
    fn barge_in_stops_the_prompt_and_the_digit_counts() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::EnterPin)]);
        keys(&mut c, "1234#", t);
        assert_eq!(
            drain(&mut c),
            [PinAction::StopPrompt, PinAction::Submit("1234".into())]
        );
        c.accept();
        assert_eq!(c.next_deadline(), None);
        c.on_digit('5', t);
        assert!(
            drain(&mut c).is_empty(),
            "digits after the join are not collected"
        );
    }

    #[test]
    fn star_clears_and_reprompts() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        c.on_prompt_done(t);
        drain(&mut c);
        keys(&mut c, "99*", t);
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::EnterPin)]);
        c.on_prompt_done(t);
        keys(&mut c, "4321#", t);
        assert_eq!(drain(&mut c), [PinAction::Submit("4321".into())]);
        assert_eq!(c.failures().0, 0, "clearing is not a failure");
    }

    #[test]
    fn first_digit_timeout_reprompts() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        drain(&mut c);
        c.on_prompt_done(t);
        assert_eq!(c.next_deadline(), Some(t + Duration::from_secs(10)));
        c.on_timeout(t + Duration::from_millis(9999));
        assert!(drain(&mut c).is_empty());
        c.on_timeout(t + Duration::from_secs(10));
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::EnterPin)]);
        assert_eq!(c.failures(), (1, Some(Failure::NoDigits)));
    }

    #[test]
    fn inter_digit_timeout_restarts_from_each_digit() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        c.on_prompt_done(t);
        drain(&mut c);
        c.on_digit('1', t + Duration::from_secs(1));
        c.on_digit('2', t + Duration::from_secs(5));
        assert_eq!(c.next_deadline(), Some(t + Duration::from_secs(10)));
        c.on_timeout(t + Duration::from_secs(9));
        assert!(drain(&mut c).is_empty());
        c.on_timeout(t + Duration::from_secs(10));
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::InvalidPin)]);
        assert_eq!(c.failures(), (1, Some(Failure::InterDigitTimeout)));
    }

    #[test]
    fn a_pause_after_a_pin_of_valid_length_submits_it() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        c.on_prompt_done(t);
        drain(&mut c);
        keys(&mut c, "8642", t);
        c.on_timeout(t + Duration::from_millis(4999));
        assert!(drain(&mut c).is_empty(), "not before the timeout");
        c.on_timeout(t + Duration::from_secs(5));
        assert_eq!(drain(&mut c), [PinAction::Submit("8642".into())]);
        assert_eq!(c.next_deadline(), None, "checking, not collecting");
        // A wrong PIN taken this way is a failed attempt like any other.
        c.reject();
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::InvalidPin)]);
        assert_eq!(c.failures(), (1, Some(Failure::WrongPin)));
        // Three digits and a pause: too short, asked again.
        c.on_prompt_done(t);
        keys(&mut c, "864", t);
        c.on_timeout(t + Duration::from_secs(5));
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::InvalidPin)]);
        assert_eq!(c.failures(), (2, Some(Failure::InterDigitTimeout)));
    }

    #[test]
    fn a_pause_at_the_longest_pin_submits_it_and_a_digit_past_it_fails() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        c.on_prompt_done(t);
        drain(&mut c);
        keys(&mut c, "12345678", t);
        c.on_timeout(t + Duration::from_secs(5));
        assert_eq!(drain(&mut c), [PinAction::Submit("12345678".into())]);
        c.reject();
        drain(&mut c);
        c.on_prompt_done(t);
        keys(&mut c, "123456789", t);
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::InvalidPin)]);
        assert_eq!(c.failures(), (2, Some(Failure::TooLong)));
    }

    #[test]
    fn length_limits_count_as_failures() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        c.on_prompt_done(t);
        drain(&mut c);
        keys(&mut c, "12#", t);
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::InvalidPin)]);
        assert_eq!(c.failures(), (1, Some(Failure::TooShort)));
        c.on_prompt_done(t);
        keys(&mut c, "123456789", t);
        assert_eq!(drain(&mut c), [PinAction::Play(PinPrompt::InvalidPin)]);
        assert_eq!(c.failures(), (2, Some(Failure::TooLong)));
    }

    #[test]
    fn attempts_end_in_goodbye_then_hangup() {
        let t = Instant::now();
        let mut c = PinCollector::new(RULES);
        for attempt in 1..=3 {
            c.on_prompt_done(t);
            drain(&mut c);
            keys(&mut c, "0000#", t);
            assert_eq!(drain(&mut c), [PinAction::Submit("0000".into())]);
            c.reject();
            let want = if attempt < 3 {
                PinPrompt::InvalidPin
            } else {
                PinPrompt::Goodbye
            };
            assert_eq!(drain(&mut c), [PinAction::Play(want)]);
        }
        c.on_digit('1', t);
        assert!(drain(&mut c).is_empty(), "no barge-in into goodbye");
        c.on_prompt_done(t);
        assert_eq!(drain(&mut c), [PinAction::Hangup]);
        assert_eq!(c.next_deadline(), None);
    }
}
