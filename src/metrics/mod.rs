//! Prometheus metrics. What happens to calls is counted as it happens, in
//! [`Metrics`] (prometheus-client families, reached through [`Events`]
//! (crate::events::Events)); what the media threads, admission and the
//! control server already count is read when a scrape asks. The exposition
//! is written by prometheus-client in the Prometheus text format and served
//! at `metrics.listen` (see `server`).

mod histogram;
mod server;

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub use histogram::{Histogram, JITTER_SECONDS, TICK_SECONDS};
pub use server::{MetricsError, MetricsServer};

use crate::call::admission::{Admission, Refusal};
use crate::conference::Conference;
use crate::control::ControlCounters;
use crate::dtmf::Source;
use crate::events::{Direction, Event};
use crate::rtp::learning::ForeignReason;

type Label = (&'static str, &'static str);

/// Counts made as calls go; every handle shares them.
#[derive(Debug)]
pub struct Metrics {
    calls: Family<[Label; 2], Gauge>,
    calls_started: Family<[Label; 1], Counter>,
    calls_ended: Family<[Label; 2], Counter>,
    setup: Family<[(&'static str, u16); 1], Counter>,
    pin_attempts: Family<[Label; 1], Counter>,
    pin_lockouts: Counter,
    digits: Family<[Label; 1], Counter>,
    digit_duplicates: Counter,
    dials: Family<[(&'static str, String); 1], Counter>,
    registration: Family<[Label; 1], Gauge>,
}

/// Where a call is, for `confgate_calls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// Ringing, answering, asking for the PIN.
    Setup,
    /// Seated in its room.
    InRoom,
}

impl CallState {
    fn label(self) -> &'static str {
        match self {
            CallState::Setup => "setup",
            CallState::InRoom => "in_room",
        }
    }
}

/// What a PIN look-up found, for `confgate_pin_attempts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinResult {
    Accepted,
    Wrong,
    /// Refused (right or wrong) because the caller or number is locked out.
    LockedOut,
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
        Direction::Web => "web",
    }
}

fn source(s: Source) -> &'static str {
    match s {
        Source::Rfc4733 => "rfc4733",
        Source::Info => "info",
        Source::Inband => "inband",
    }
}

const REGISTRATION_STATES: [&str; 3] = ["registering", "registered", "failed"];

impl Default for Metrics {
    /// Every series whose labels are known up front starts at 0, so a
    /// graph or a rate has a start before the first call.
    fn default() -> Self {
        let m = Metrics {
            calls: Family::default(),
            calls_started: Family::default(),
            calls_ended: Family::default(),
            setup: Family::default(),
            pin_attempts: Family::default(),
            pin_lockouts: Counter::default(),
            digits: Family::default(),
            digit_duplicates: Counter::default(),
            dials: Family::default(),
            registration: Family::default(),
        };
        for dir in [Direction::Inbound, Direction::Outbound, Direction::Web] {
            drop(
                m.calls_started
                    .get_or_create(&[("direction", direction(dir))]),
            );
            for state in [CallState::Setup, CallState::InRoom] {
                drop(m.calls_gauge(dir, state));
            }
        }
        for result in ["accepted", "wrong", "locked_out"] {
            drop(m.pin_attempts.get_or_create(&[("result", result)]));
        }
        for s in [Source::Rfc4733, Source::Info, Source::Inband] {
            drop(m.digits.get_or_create(&[("source", source(s))]));
        }
        m
    }
}

impl Metrics {
    /// A call began: it counts as in set-up until [`CallTrack::joined`].
    pub fn call_started(self: &std::sync::Arc<Self>, dir: Direction) -> CallTrack {
        self.calls_started
            .get_or_create(&[("direction", direction(dir))])
            .inc();
        self.calls_gauge(dir, CallState::Setup).inc();
        CallTrack {
            metrics: self.clone(),
            direction: dir,
            state: CallState::Setup,
        }
    }

    fn calls_gauge(
        &self,
        dir: Direction,
        state: CallState,
    ) -> impl std::ops::Deref<Target = Gauge> + '_ {
        self.calls
            .get_or_create(&[("direction", direction(dir)), ("state", state.label())])
    }

    /// The final answer to an inbound INVITE.
    pub fn setup_answered(&self, status: u16) {
        self.setup.get_or_create(&[("status", status)]).inc();
    }

    pub fn pin_checked(&self, result: PinResult) {
        let result = match result {
            PinResult::Accepted => "accepted",
            PinResult::Wrong => "wrong",
            PinResult::LockedOut => "locked_out",
        };
        self.pin_attempts.get_or_create(&[("result", result)]).inc();
    }

    /// A wrong PIN locked a caller or number out.
    pub fn pin_locked_out(&self) {
        self.pin_lockouts.inc();
    }

    /// Key presses reported twice (by two sources) and dropped.
    pub fn digit_duplicates(&self, n: u64) {
        self.digit_duplicates.inc_by(n);
    }

    /// Count what an event says.
    pub fn observe(&self, event: &Event) {
        match event {
            Event::Digit { source: s, .. } => {
                self.digits.get_or_create(&[("source", source(*s))]).inc();
            }
            Event::CallAnswered { .. } => {
                self.dials
                    .get_or_create(&[("outcome", "answered".to_owned())])
                    .inc();
            }
            Event::DialFailed { reason, .. } => {
                self.dials
                    .get_or_create(&[("outcome", reason.clone())])
                    .inc();
            }
            Event::Registration { state, .. } => {
                for s in REGISTRATION_STATES {
                    let on = i64::from(s == *state);
                    self.registration.get_or_create(&[("state", s)]).set(on);
                }
            }
            _ => {}
        }
    }

    /// The registry a scrape encodes: these counts, and what `sources` keep.
    pub fn registry(&self, sources: Sources) -> Registry {
        let mut r = self.families();
        r.register_collector(Box::new(sources));
        r
    }

    /// A registry of these counts alone.
    fn families(&self) -> Registry {
        let mut r = Registry::with_prefix("confgate");
        r.register(
            "calls",
            "Calls in progress, by direction and state (setup: before the room)",
            self.calls.clone(),
        );
        r.register(
            "calls_started",
            "Calls begun, by direction",
            self.calls_started.clone(),
        );
        r.register(
            "calls_ended",
            "Calls ended, by direction and reason",
            self.calls_ended.clone(),
        );
        r.register(
            "call_setup",
            "Final answers to admitted inbound INVITEs, by SIP status",
            self.setup.clone(),
        );
        r.register(
            "pin_attempts",
            "PINs keyed, by result",
            self.pin_attempts.clone(),
        );
        r.register(
            "pin_lockouts",
            "Callers or numbers locked out for wrong PINs",
            self.pin_lockouts.clone(),
        );
        r.register(
            "dtmf_digits",
            "Key presses, by the source that reported them",
            self.digits.clone(),
        );
        r.register(
            "dtmf_duplicates",
            "Key presses reported again by a second source and dropped",
            self.digit_duplicates.clone(),
        );
        r.register(
            "dial_outcomes",
            "Outbound calls by outcome (answered, busy, no_answer, ...)",
            self.dials.clone(),
        );
        r.register(
            "registration_state",
            "1 for the trunk registration's current state",
            self.registration.clone(),
        );
        r
    }
}

/// A call's place in `confgate_calls`; dropping it takes the call off.
#[derive(Debug)]
pub struct CallTrack {
    metrics: std::sync::Arc<Metrics>,
    direction: Direction,
    state: CallState,
}

impl CallTrack {
    /// The call is seated in its room.
    pub fn joined(&mut self) {
        if self.state == CallState::Setup {
            self.metrics.calls_gauge(self.direction, self.state).dec();
            self.state = CallState::InRoom;
            self.metrics.calls_gauge(self.direction, self.state).inc();
        }
    }

    /// The call ended for `reason`.
    pub fn ended(self, reason: &'static str) {
        self.metrics
            .calls_ended
            .get_or_create(&[("direction", direction(self.direction)), ("reason", reason)])
            .inc();
    }
}

impl Drop for CallTrack {
    fn drop(&mut self) {
        self.metrics.calls_gauge(self.direction, self.state).dec();
    }
}

/// What is read at scrape time: the media threads' figures, admission's
/// refusals, the control server's connections and errors.
pub struct Sources {
    pub conference: Conference,
    pub admission: Admission,
    pub control: Option<std::sync::Arc<ControlCounters>>,
    /// The cluster directory's, when `cluster.redis` is set.
    pub cluster: Option<std::sync::Arc<crate::cluster::Counters>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: usize) -> fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

/// A counter with one label, a value per label value.
fn counters_by<'a>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> fmt::Result {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (value, n) in values {
        ConstCounter::new(n).encode(m.encode_family(&[(label, value)])?)?;
    }
    Ok(())
}

fn seconds(e: &mut DescriptorEncoder, name: &str, help: &str, h: &Histogram) -> fmt::Result {
    let buckets: Vec<(f64, u64)> = h.buckets().collect();
    e.encode_descriptor(name, help, Some(&Unit::Seconds), MetricType::Histogram)?
        .encode_histogram::<NoLabelSet>(h.sum(), h.count(), &buckets, None)
}

impl Collector for Sources {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = self.conference.stats();
        gauge(&mut e, "rooms", "Rooms open.", s.rooms)?;
        gauge(&mut e, "members", "Members seated in rooms.", s.members)?;
        gauge(&mut e, "members_talking", "Members talking now.", s.talking)?;
        counter(
            &mut e,
            "rtp_packets_received",
            "RTP packets received from the calls' media sources.",
            s.media.received,
        )?;
        counter(
            &mut e,
            "rtp_packets_sent",
            "RTP and RTCP packets sent.",
            s.sent,
        )?;
        counter(
            &mut e,
            "rtp_packets_lost",
            "Audio packets of members that never arrived.",
            s.media.lost,
        )?;
        counter(
            &mut e,
            "rtp_packets_late",
            "Audio packets of members that arrived too late to be played.",
            s.media.late,
        )?;
        let f = s.media.foreign;
        counters_by(
            &mut e,
            "rtp_packets_foreign",
            "Packets refused for not coming from a call's media source, by reason.",
            "reason",
            [
                ForeignReason::WrongIp,
                ForeignReason::Probation,
                ForeignReason::SourceActive,
            ]
            .map(|r| (r.name(), f.get(r))),
        )?;
        counter(
            &mut e,
            "srtp_packets_rejected",
            "SRTP and SRTCP packets dropped for failing authentication or being replays.",
            s.media.srtp_rejected,
        )?;
        counter(
            &mut e,
            "rtp_packets_dropped_by_kernel",
            "Datagrams dropped by the kernel before a media thread read them.",
            s.media_dropped,
        )?;
        counter(
            &mut e,
            "rtp_send_errors",
            "Sends the kernel refused.",
            s.send_errors,
        )?;
        seconds(
            &mut e,
            "rtp_jitter",
            "Members' interarrival jitter, at each of their RTCP reports.",
            &s.jitter,
        )?;
        seconds(
            &mut e,
            "mixer_tick_duration",
            "Time a media thread took for one 20 ms tick.",
            &s.tick_time,
        )?;
        counter(
            &mut e,
            "mixer_late_ticks",
            "20 ms ticks a media thread was too late to run.",
            s.late_ticks,
        )?;
        let refusals = self.admission.refusals();
        counters_by(
            &mut e,
            "admission_refusals",
            "INVITEs refused before a call began (403 not_allowed; 503 full, source_full or draining).",
            "reason",
            [Refusal::NotAllowed, Refusal::Full, Refusal::SourceFull, Refusal::Draining]
                .map(|r| (r.name(), refusals.get(r))),
        )?;
        if let Some(c) = &self.control {
            gauge(
                &mut e,
                "control_connections",
                "Control clients connected.",
                c.open(),
            )?;
            counter(
                &mut e,
                "control_connections_accepted",
                "Control connections served.",
                c.accepted(),
            )?;
            let errors = c.errors();
            counters_by(
                &mut e,
                "control_errors",
                "Error responses on the control socket, by code.",
                "code",
                errors.iter().map(|(code, n)| (*code, *n)),
            )?;
        }
        if let Some(c) = &self.cluster {
            gauge(
                &mut e,
                "cluster_directory_up",
                "1 while the cluster's room directory in Redis answers, else 0.",
                usize::from(c.up()),
            )?;
            counters_by(
                &mut e,
                "cluster_claims",
                "Rooms claimed in the cluster directory, by result (here, there, standalone).",
                "result",
                c.claims(),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::encoding::prometheus_text;

    use super::*;

    fn exposition(m: &Metrics) -> String {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &m.families()).expect("encodes");
        text
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn a_call_moves_from_setup_to_its_room_and_off_the_gauge() {
        let m = Arc::new(Metrics::default());
        let setup = "confgate_calls{direction=\"inbound\",state=\"setup\"}";
        let in_room = "confgate_calls{direction=\"inbound\",state=\"in_room\"}";
        let mut track = m.call_started(Direction::Inbound);
        assert_eq!(value(&exposition(&m), setup), Some(1.0));
        track.joined();
        track.joined();
        let t = exposition(&m);
        assert_eq!(
            (value(&t, setup), value(&t, in_room)),
            (Some(0.0), Some(1.0))
        );
        track.ended("hangup");
        let t = exposition(&m);
        assert_eq!(
            (value(&t, setup), value(&t, in_room)),
            (Some(0.0), Some(0.0))
        );
        assert_eq!(
            value(
                &t,
                "confgate_calls_ended_total{direction=\"inbound\",reason=\"hangup\"}"
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&t, "confgate_calls_started_total{direction=\"inbound\"}"),
            Some(1.0)
        );
        // A call that never reaches its room leaves the set-up count.
        drop(m.call_started(Direction::Outbound));
        let t = exposition(&m);
        assert_eq!(
            value(&t, "confgate_calls{direction=\"outbound\",state=\"setup\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn events_statuses_and_pins_are_counted_by_label() {
        let m = Metrics::default();
        for source in [Source::Rfc4733, Source::Rfc4733, Source::Info] {
            m.observe(&Event::Digit {
                call: "c".into(),
                digit: '1',
                source,
            });
        }
        m.observe(&Event::DialFailed {
            call: "c".into(),
            room: "r".into(),
            to: "t".into(),
            status: Some(486),
            reason: "busy".into(),
        });
        m.observe(&Event::Registration {
            state: "registering",
            detail: None,
        });
        m.observe(&Event::Registration {
            state: "registered",
            detail: None,
        });
        m.setup_answered(200);
        m.setup_answered(488);
        m.setup_answered(488);
        m.pin_checked(PinResult::Wrong);
        m.pin_checked(PinResult::Accepted);
        m.pin_locked_out();
        m.digit_duplicates(2);
        let t = exposition(&m);
        for (series, want) in [
            ("confgate_dtmf_digits_total{source=\"rfc4733\"}", 2.0),
            ("confgate_dtmf_digits_total{source=\"info\"}", 1.0),
            ("confgate_dtmf_digits_total{source=\"inband\"}", 0.0),
            ("confgate_dtmf_duplicates_total", 2.0),
            ("confgate_dial_outcomes_total{outcome=\"busy\"}", 1.0),
            ("confgate_registration_state{state=\"registered\"}", 1.0),
            ("confgate_registration_state{state=\"registering\"}", 0.0),
            ("confgate_call_setup_total{status=\"488\"}", 2.0),
            ("confgate_call_setup_total{status=\"200\"}", 1.0),
            ("confgate_pin_attempts_total{result=\"wrong\"}", 1.0),
            ("confgate_pin_attempts_total{result=\"accepted\"}", 1.0),
            ("confgate_pin_attempts_total{result=\"locked_out\"}", 0.0),
            ("confgate_pin_lockouts_total", 1.0),
        ] {
            assert_eq!(value(&t, series), Some(want), "{series} in\n{t}");
        }
    }
}
