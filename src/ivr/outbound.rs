//! The outbound call flow as a state machine (sans-IO): an INVITE placed
//! from the control socket rings, is answered and joins its room, or fails.
//! Whatever happens, the flow reports exactly one terminal outcome: a
//! failure before the join ([`Action::Failed`]), or, once joined, the leave
//! reason the room announces.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a CANCEL may wait for the INVITE's final response before the
/// call is given up anyway (64·T1 and a margin).
const CANCEL_GRACE: Duration = Duration::from_secs(40);

/// What the call task must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Report: it rings (first 180/183 only).
    Ringing,
    /// Report: it was answered.
    Answered,
    /// Bring the call into its room; answer with [`OutboundFlow::joined`].
    Join,
    /// CANCEL the INVITE.
    Cancel,
    /// BYE the answered call.
    Bye,
    /// Report the terminal failure: it never joined.
    Failed {
        status: Option<u16>,
        reason: &'static str,
    },
}

/// What happened to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// 180 or 183.
    Progress,
    /// 200 OK with a usable SDP answer (ACK sent by the stack).
    Answered,
    /// 200 OK whose SDP we cannot use.
    AnswerUnusable,
    /// The INVITE ended without an answer (`status`: its final response).
    Failed(Option<u16>),
    /// Hang up requested from the control socket.
    Hangup,
    /// The far end sent BYE.
    Bye,
    Shutdown,
    Kicked,
    RtpTimeout,
    /// The call's media could not be set up.
    MediaFailed,
    /// The callee left the room from the keypad.
    Left,
    /// The room ended with the callee in it.
    RoomEnded,
    /// The call has lasted `calls.max_duration_secs`.
    TimeUp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Dialing {
        give_up_at: Instant,
        ringing: bool,
    },
    /// CANCEL sent; the final response (487, or a crossing 200) ends it.
    Cancelling {
        reason: &'static str,
        until: Instant,
    },
    /// Answered; the join is being carried out.
    Joining,
    Joined,
    Ended {
        reason: &'static str,
        joined: bool,
    },
}

/// One outbound call's flow.
#[derive(Debug)]
pub struct OutboundFlow {
    state: State,
    actions: VecDeque<Action>,
}

/// The failure reason for an INVITE's final status.
pub fn failure_reason(status: Option<u16>) -> &'static str {
    match status {
        None => "unreachable",
        Some(486 | 600) => "busy",
        Some(603) => "declined",
        Some(401 | 407) => "auth_failed",
        Some(403) => "forbidden",
        Some(404 | 484 | 604) => "not_found",
        Some(408 | 480) => "no_answer",
        Some(487) => "cancelled",
        Some(488 | 606) => "not_acceptable",
        Some(500..=599) => "trunk_error",
        Some(_) => "rejected",
    }
}

impl OutboundFlow {
    /// The INVITE went out at `now`; give up ringing after `ring_timeout`.
    pub fn new(now: Instant, ring_timeout: Duration) -> Self {
        OutboundFlow {
            state: State::Dialing {
                give_up_at: now + ring_timeout,
                ringing: false,
            },
            actions: VecDeque::new(),
        }
    }

    fn cancel(&mut self, reason: &'static str, now: Instant) {
        self.actions.push_back(Action::Cancel);
        self.state = State::Cancelling {
            reason,
            until: now + CANCEL_GRACE,
        };
    }

    fn fail(&mut self, status: Option<u16>, reason: &'static str) {
        self.actions.push_back(Action::Failed { status, reason });
        self.state = State::Ended {
            reason,
            joined: false,
        };
    }

    /// End an answered call: BYE unless the far end hung up, and the
    /// terminal report if it never reached the room.
    fn hang_up(&mut self, reason: &'static str, send_bye: bool) {
        let joined = self.state == State::Joined;
        if send_bye {
            self.actions.push_back(Action::Bye);
        }
        if joined {
            self.state = State::Ended {
                reason,
                joined: true,
            };
        } else {
            self.fail(Some(200), reason);
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) {
        match (self.state, input) {
            (State::Ended { .. }, _) => {}
            (
                State::Dialing {
                    give_up_at,
                    ringing,
                },
                Input::Progress,
            ) => {
                if !ringing {
                    self.actions.push_back(Action::Ringing);
                }
                self.state = State::Dialing {
                    give_up_at,
                    ringing: true,
                };
            }
            (State::Dialing { .. }, Input::Answered) => {
                self.actions.push_back(Action::Answered);
                self.actions.push_back(Action::Join);
                self.state = State::Joining;
            }
            (State::Dialing { .. }, Input::AnswerUnusable) => {
                self.state = State::Joining;
                self.hang_up("no_common_codec", true);
            }
            (State::Dialing { .. }, Input::Failed(status)) => {
                self.fail(status, failure_reason(status))
            }
            (State::Dialing { .. }, Input::Hangup) => self.cancel("cancelled", now),
            (State::Dialing { .. }, Input::Shutdown) => self.cancel("shutdown", now),
            // Our CANCEL's outcome: 487, or a 200 that crossed it (the stack
            // BYEs that one), or anything else: the reason is ours.
            (State::Cancelling { reason, .. }, Input::Failed(status)) => self.fail(status, reason),
            (State::Cancelling { reason, .. }, Input::Answered | Input::AnswerUnusable) => {
                self.actions.push_back(Action::Bye);
                self.fail(Some(200), reason);
            }
            (State::Joining | State::Joined, Input::Bye) => self.hang_up("hangup", false),
            (State::Joining | State::Joined, Input::Hangup) => self.hang_up("control_hangup", true),
            (State::Joining | State::Joined, Input::Shutdown) => self.hang_up("shutdown", true),
            (State::Joining | State::Joined, Input::Kicked) => self.hang_up("kicked", true),
            (State::Joined, Input::Left) => self.hang_up("left", true),
            (State::Joined, Input::RoomEnded) => self.hang_up("room_ended", true),
            (State::Joining | State::Joined, Input::TimeUp) => self.hang_up("max_duration", true),
            (State::Joining | State::Joined, Input::RtpTimeout) => {
                self.hang_up("rtp_timeout", true)
            }
            (State::Joining | State::Joined, Input::MediaFailed) => {
                self.hang_up("media_failed", true)
            }
            _ => {}
        }
    }

    /// The room's answer to [`Action::Join`]: `Err(reason)` when refused.
    pub fn joined(&mut self, result: Result<(), &'static str>) {
        if self.state != State::Joining {
            return;
        }
        match result {
            Ok(()) => self.state = State::Joined,
            Err(reason) => self.hang_up(reason, true),
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Dialing { give_up_at, .. } if now >= give_up_at => self.cancel("no_answer", now),
            State::Cancelling { reason, until } if now >= until => self.fail(None, reason),
            _ => {}
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Dialing { give_up_at, .. } => Some(give_up_at),
            State::Cancelling { until, .. } => Some(until),
            _ => None,
        }
    }

    /// The callee answered and the call goes on.
    pub fn answered(&self) -> bool {
        matches!(self.state, State::Joining | State::Joined)
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// `Some((reason, joined))` once the call is over.
    pub fn ended(&self) -> Option<(&'static str, bool)> {
        match self.state {
            State::Ended { reason, joined } => Some((reason, joined)),
            _ => None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;

    const RING: Duration = Duration::from_secs(30);

    fn drain(f: &mut OutboundFlow) -> Vec<Action> {
        std::iter::from_fn(|| f.poll_action()).collect()
    }

    /// Terminal failures reported by a flow, over its whole life.
    fn failures(actions: &[Action]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Failed { .. }))
            .count()
    }

    #[test]
    fn answered_calls_ring_once_then_join_and_leave_on_bye() {
        let t0 = Instant::now();
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::Progress, t0);
        f.handle(Input::Progress, t0);
        f.handle(Input::Answered, t0);
        assert_eq!(
            drain(&mut f),
            [Action::Ringing, Action::Answered, Action::Join]
        );
        f.joined(Ok(()));
        assert_eq!(f.next_deadline(), None);
        f.handle(Input::Bye, t0);
        assert!(drain(&mut f).is_empty(), "the room reports the leave");
        assert_eq!(f.ended(), Some(("hangup", true)));
    }

    #[test]
    fn a_busy_callee_fails_once() {
        let t0 = Instant::now();
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::Progress, t0);
        f.handle(Input::Failed(Some(486)), t0);
        f.handle(Input::Failed(Some(486)), t0);
        f.handle(Input::Bye, t0);
        let a = drain(&mut f);
        assert_eq!(
            a,
            [
                Action::Ringing,
                Action::Failed {
                    status: Some(486),
                    reason: "busy"
                }
            ]
        );
        assert_eq!(f.ended(), Some(("busy", false)));
    }

    #[test]
    fn no_answer_cancels_and_reports_no_answer() {
        let t0 = Instant::now();
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::Progress, t0);
        assert_eq!(f.next_deadline(), Some(t0 + RING));
        f.handle_timeout(t0 + RING - Duration::from_millis(1));
        assert_eq!(drain(&mut f), [Action::Ringing]);
        f.handle_timeout(t0 + RING);
        assert_eq!(drain(&mut f), [Action::Cancel]);
        f.handle(Input::Failed(Some(487)), t0 + RING);
        assert_eq!(
            drain(&mut f),
            [Action::Failed {
                status: Some(487),
                reason: "no_answer"
            }]
        );
    }

    #[test]
    fn hangup_while_ringing_cancels_even_when_a_200_crosses_it() {
        let t0 = Instant::now();
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::Hangup, t0);
        f.handle(Input::Answered, t0);
        f.handle(Input::Failed(None), t0);
        let a = drain(&mut f);
        assert_eq!(
            a,
            [
                Action::Cancel,
                Action::Bye,
                Action::Failed {
                    status: Some(200),
                    reason: "cancelled"
                }
            ]
        );
        assert_eq!(failures(&a), 1);
    }

    #[test]
    fn a_cancel_left_unanswered_is_given_up() {
        let t0 = Instant::now();
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::Shutdown, t0);
        f.handle_timeout(t0 + CANCEL_GRACE);
        assert_eq!(
            drain(&mut f),
            [
                Action::Cancel,
                Action::Failed {
                    status: None,
                    reason: "shutdown"
                }
            ]
        );
    }

    #[test]
    fn a_refused_join_or_unusable_answer_is_a_failure_with_bye() {
        let t0 = Instant::now();
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::Answered, t0);
        drain(&mut f);
        f.joined(Err("room_full"));
        assert_eq!(
            drain(&mut f),
            [
                Action::Bye,
                Action::Failed {
                    status: Some(200),
                    reason: "room_full"
                }
            ]
        );
        let mut f = OutboundFlow::new(t0, RING);
        f.handle(Input::AnswerUnusable, t0);
        let a = drain(&mut f);
        assert_eq!(a[0], Action::Bye);
        assert_eq!(failures(&a), 1);
    }

    #[test]
    fn joined_calls_end_by_kick_timeout_shutdown_or_control_with_bye() {
        for (input, reason) in [
            (Input::Kicked, "kicked"),
            (Input::RtpTimeout, "rtp_timeout"),
            (Input::Shutdown, "shutdown"),
            (Input::Hangup, "control_hangup"),
            (Input::MediaFailed, "media_failed"),
        ] {
            let t0 = Instant::now();
            let mut f = OutboundFlow::new(t0, RING);
            f.handle(Input::Answered, t0);
            f.joined(Ok(()));
            drain(&mut f);
            f.handle(input, t0);
            f.handle(Input::Bye, t0);
            assert_eq!(drain(&mut f), [Action::Bye], "{reason}");
            assert_eq!(f.ended(), Some((reason, true)));
        }
    }

    #[test]
    fn statuses_have_reasons() {
        assert_eq!(failure_reason(Some(486)), "busy");
        assert_eq!(failure_reason(Some(603)), "declined");
        assert_eq!(failure_reason(Some(407)), "auth_failed");
        assert_eq!(failure_reason(Some(503)), "trunk_error");
        assert_eq!(failure_reason(None), "unreachable");
    }
}
