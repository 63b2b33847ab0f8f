//! Which rooms this node holds in the directory, sans IO: when each claim
//! is due for a refresh, which releases are pending, whether the directory
//! is reachable. Fed what happened (a room opened or closed here, what a
//! Redis operation answered) and the time; hands out the operations to
//! perform next ([`Claims::poll_op`]), what is news ([`Claims::poll_notice`])
//! and when it next wants to be woken ([`Claims::poll_timeout`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a down directory is tried again.
pub const RETRY: Duration = Duration::from_secs(1);

/// Something to do in Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Open a connection (the directory is down, or not yet up).
    Connect,
    /// Claim a room open here that the directory does not have as ours.
    Claim(String),
    /// Extend our claim, if the key still names us.
    Refresh(String),
    /// Delete our key of a room closed here, if it still names us.
    Release(String),
    /// Say (again) where this node's control socket answers, so that the
    /// other nodes can forward commands for its rooms.
    Announce,
}

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimResult {
    /// The key names us (set now, or already ours).
    Ours,
    /// Another node holds the room.
    Theirs(SocketAddr),
    /// The key holds something that is not a node address.
    Garbled,
}

/// What a refresh found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshResult {
    /// Still ours, expiry pushed out.
    Extended,
    /// The key had expired: claim again.
    Missing,
    /// Another node (or garbage: `None`) holds it now.
    Taken(Option<SocketAddr>),
}

/// What is news, for the logs and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The directory is reachable again (after `outage`, or for the first time).
    Up { outage: Option<Duration> },
    /// The directory could not be reached: rooms are local until it is back.
    Down,
    /// A room open here is held by another node (`None`: by a key that
    /// names no node); it is no longer refreshed or re-claimed.
    Lost {
        room: String,
        owner: Option<SocketAddr>,
    },
}

/// Whether the directory answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Not yet tried, or the first try has not failed yet.
    Starting,
    Up,
    Down {
        since: Instant,
    },
}

/// Where a room open here stands in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// Not (or no longer) ours in the directory: a claim is due once it is up.
    Unclaimed,
    /// A claim is being made.
    Claiming,
    /// Ours; refreshed at `refresh_at`.
    Held { refresh_at: Instant },
    /// Another node's (`None`: a key naming no node).
    Lost(Option<SocketAddr>),
}

/// The rooms this node has open and what the directory says of them.
#[derive(Debug)]
pub struct Claims {
    ttl: Duration,
    health: Health,
    /// When to try connecting again while not up; `None`: a try is under way.
    retry_at: Option<Instant>,
    rooms: BTreeMap<String, Holding>,
    /// Rooms closed here whose key still names us.
    releases: BTreeSet<String>,
    notices: VecDeque<Notice>,
    /// When the next [`Op::Announce`] is due; `None`: this node does not announce.
    announce_at: Option<Instant>,
}

impl Claims {
    /// `ttl`: how long a claim lives unless refreshed (every `ttl / 3`).
    /// The first op is a [`Op::Connect`].
    pub fn new(ttl: Duration, now: Instant) -> Claims {
        Claims {
            ttl,
            health: Health::Starting,
            retry_at: Some(now),
            rooms: BTreeMap::new(),
            releases: BTreeSet::new(),
            notices: VecDeque::new(),
            announce_at: None,
        }
    }

    /// Hand out an [`Op::Announce`] as soon as the directory is up, and
    /// again every third of the TTL while it stays up.
    pub fn announcing(mut self, now: Instant) -> Claims {
        self.announce_at = Some(now);
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The time between refreshes of one claim.
    pub fn refresh_interval(&self) -> Duration {
        self.ttl / 3
    }

    pub fn health(&self) -> Health {
        self.health
    }

    pub fn is_up(&self) -> bool {
        self.health == Health::Up
    }

    /// Where `room` stands, if it is open here.
    pub fn holding(&self, room: &str) -> Option<Holding> {
        self.rooms.get(room).copied()
    }

    /// Rooms open here, with where they stand.
    pub fn rooms(&self) -> impl Iterator<Item = (&str, Holding)> {
        self.rooms.iter().map(|(r, h)| (r.as_str(), *h))
    }

    /// Rooms closed here whose release has not been sent yet.
    pub fn pending_releases(&self) -> impl Iterator<Item = &str> {
        self.releases.iter().map(String::as_str)
    }

    /// A room opened here. Its claim is made by the next [`Op::Claim`]
    /// (unless one was made already, see [`Claims::claimed`]).
    pub fn room_opened(&mut self, room: &str, _now: Instant) {
        // A room reopened before its release went out keeps the key: the
        // claim that follows finds it ours.
        self.releases.remove(room);
        self.rooms
            .entry(room.to_owned())
            .or_insert(Holding::Unclaimed);
    }

    /// A room closed here: its key is released if we hold it and the
    /// directory is up. During an outage there is nothing to send; the key
    /// expires within the TTL.
    pub fn room_closed(&mut self, room: &str, _now: Instant) {
        let Some(holding) = self.rooms.remove(room) else {
            return;
        };
        // A claim under way may have set the key: release it too.
        if matches!(holding, Holding::Held { .. } | Holding::Claiming) && self.is_up() {
            self.releases.insert(room.to_owned());
        }
    }

    /// A claim was sent for `room` outside [`Claims::poll_op`] (the
    /// caller's own [`Op::Claim`]); the room counts as open here.
    pub fn claiming(&mut self, room: &str, now: Instant) {
        self.room_opened(room, now);
        if let Some(h) = self.rooms.get_mut(room) {
            if !matches!(h, Holding::Held { .. }) {
                *h = Holding::Claiming;
            }
        }
    }

    /// Forget a room that turned out to be another node's before it was
    /// open here (nothing to release, nothing lost).
    pub fn forget(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// What a claim answered. A room still open here is held (ours) or lost
    /// (theirs); one that closed meanwhile is released if it became ours.
    pub fn claimed(&mut self, room: &str, result: ClaimResult, now: Instant) {
        self.up(now);
        let Some(holding) = self.rooms.get_mut(room) else {
            if result == ClaimResult::Ours {
                self.releases.insert(room.to_owned());
            }
            return;
        };
        let owner = match result {
            ClaimResult::Ours => {
                *holding = Holding::Held {
                    refresh_at: now + self.ttl / 3,
                };
                return;
            }
            ClaimResult::Theirs(addr) => Some(addr),
            ClaimResult::Garbled => None,
        };
        let was = *holding;
        *holding = Holding::Lost(owner);
        if was != Holding::Lost(owner) {
            self.notices.push_back(Notice::Lost {
                room: room.to_owned(),
                owner,
            });
        }
    }

    /// What a refresh answered.
    pub fn refreshed(&mut self, room: &str, result: RefreshResult, now: Instant) {
        self.up(now);
        let Some(holding) = self.rooms.get_mut(room) else {
            return;
        };
        match result {
            RefreshResult::Extended => {
                if let Holding::Held { .. } = holding {
                    *holding = Holding::Held {
                        refresh_at: now + self.ttl / 3,
                    };
                }
            }
            RefreshResult::Missing => *holding = Holding::Unclaimed,
            RefreshResult::Taken(owner) => {
                *holding = Holding::Lost(owner);
                self.notices.push_back(Notice::Lost {
                    room: room.to_owned(),
                    owner,
                });
            }
        }
    }

    /// A release was answered (whether or not the key still named us).
    pub fn released(&mut self, _room: &str, now: Instant) {
        self.up(now);
    }

    /// An announcement was stored.
    pub fn announced(&mut self, now: Instant) {
        self.up(now);
    }

    /// A connection was opened.
    pub fn connected(&mut self, now: Instant) {
        self.up(now);
    }

    /// An operation failed or ran past its deadline: the directory is down.
    /// Claims are made again when it is back; pending releases are dropped
    /// (the keys expire on their own).
    pub fn failed(&mut self, now: Instant) {
        if !matches!(self.health, Health::Down { .. }) {
            self.health = Health::Down { since: now };
            self.notices.push_back(Notice::Down);
        }
        self.releases.clear();
        for h in self.rooms.values_mut() {
            if matches!(h, Holding::Held { .. } | Holding::Claiming) {
                *h = Holding::Unclaimed;
            }
        }
        // A failure while a connect was under way (or after) schedules the next.
        self.retry_at = Some(self.retry_at.map_or(now + RETRY, |at| at.max(now + RETRY)));
    }

    fn up(&mut self, now: Instant) {
        let outage = match self.health {
            Health::Up => return,
            Health::Starting => None,
            Health::Down { since } => Some(now.saturating_duration_since(since)),
        };
        self.health = Health::Up;
        self.retry_at = None;
        // Back (or up for the first time): say where we are at once.
        if self.announce_at.is_some() {
            self.announce_at = Some(now);
        }
        self.notices.push_back(Notice::Up { outage });
    }

    /// The next operation to perform, if any is due at `now`. Each is
    /// handed out once: a claim is marked under way, a refresh rescheduled,
    /// a release forgotten; its result comes back by the methods above.
    pub fn poll_op(&mut self, now: Instant) -> Option<Op> {
        if !self.is_up() {
            return match self.retry_at {
                Some(at) if at <= now => {
                    self.retry_at = None;
                    Some(Op::Connect)
                }
                _ => None,
            };
        }
        if let Some(room) = self.releases.pop_first() {
            return Some(Op::Release(room));
        }
        let interval = self.ttl / 3;
        if let Some(at) = self.announce_at.filter(|at| *at <= now) {
            self.announce_at = Some(at.max(now) + interval);
            return Some(Op::Announce);
        }
        for (room, h) in self.rooms.iter_mut() {
            match *h {
                Holding::Unclaimed => {
                    *h = Holding::Claiming;
                    return Some(Op::Claim(room.clone()));
                }
                Holding::Held { refresh_at } if refresh_at <= now => {
                    *h = Holding::Held {
                        refresh_at: now + interval,
                    };
                    return Some(Op::Refresh(room.clone()));
                }
                _ => {}
            }
        }
        None
    }

    /// When [`Claims::poll_op`] next has something, once it has been
    /// drained (`None`: only after new input).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.is_up() {
            return self.retry_at;
        }
        self.rooms
            .values()
            .filter_map(|h| match h {
                Holding::Held { refresh_at } => Some(*refresh_at),
                _ => None,
            })
            .chain(self.announce_at)
            .min()
    }

    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // any start time will do
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A core that is up at `t0`.
    fn up(t0: Instant) -> Claims {
        let mut c = Claims::new(TTL, t0);
        assert_eq!(c.poll_op(t0), Some(Op::Connect));
        assert_eq!(c.poll_op(t0), None);
        c.connected(t0);
        assert_eq!(c.poll_notice(), Some(Notice::Up { outage: None }));
        c
    }

    fn drain(c: &mut Claims, now: Instant) -> Vec<Op> {
        std::iter::from_fn(|| c.poll_op(now)).collect()
    }

    #[test]
    fn claims_are_refreshed_every_third_of_the_ttl() {
        let t0 = Instant::now();
        let mut c = up(t0);
        c.room_opened("a", t0);
        assert_eq!(drain(&mut c, t0), vec![Op::Claim("a".into())]);
        c.claimed("a", ClaimResult::Ours, t0);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        assert!(drain(&mut c, t0 + Duration::from_millis(4999)).is_empty());
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(drain(&mut c, t1), vec![Op::Refresh("a".into())]);
        // Handed out once; the next is due an interval later.
        assert_eq!(c.poll_timeout(), Some(t1 + Duration::from_secs(5)));
        c.refreshed("a", RefreshResult::Extended, t1 + Duration::from_millis(2));
        assert_eq!(
            c.poll_timeout(),
            Some(t1 + Duration::from_millis(2) + Duration::from_secs(5))
        );
        assert_eq!(c.poll_notice(), None);
    }

    #[test]
    fn a_claim_that_names_another_node_is_reported_lost_once() {
        let t0 = Instant::now();
        let mut c = up(t0);
        c.room_opened("a", t0);
        drain(&mut c, t0);
        c.claimed("a", ClaimResult::Ours, t0);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(drain(&mut c, t1), vec![Op::Refresh("a".into())]);
        let other = addr("10.0.0.2:5060");
        c.refreshed("a", RefreshResult::Taken(Some(other)), t1);
        assert_eq!(
            c.poll_notice(),
            Some(Notice::Lost {
                room: "a".into(),
                owner: Some(other)
            })
        );
        assert_eq!(c.holding("a"), Some(Holding::Lost(Some(other))));
        // Neither refreshed nor claimed again, nor released on close.
        assert_eq!(c.poll_timeout(), None);
        assert!(drain(&mut c, t1 + TTL).is_empty());
        c.room_closed("a", t1 + TTL);
        assert!(drain(&mut c, t1 + TTL).is_empty());
        assert_eq!(c.poll_notice(), None);
    }

    #[test]
    fn an_expired_key_is_claimed_again() {
        let t0 = Instant::now();
        let mut c = up(t0);
        c.room_opened("a", t0);
        drain(&mut c, t0);
        c.claimed("a", ClaimResult::Ours, t0);
        let t1 = t0 + Duration::from_secs(5);
        drain(&mut c, t1);
        c.refreshed("a", RefreshResult::Missing, t1);
        assert_eq!(drain(&mut c, t1), vec![Op::Claim("a".into())]);
    }

    #[test]
    fn closing_a_held_room_releases_it() {
        let t0 = Instant::now();
        let mut c = up(t0);
        c.room_opened("a", t0);
        drain(&mut c, t0);
        c.claimed("a", ClaimResult::Ours, t0);
        c.room_closed("a", t0);
        assert_eq!(c.pending_releases().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(drain(&mut c, t0), vec![Op::Release("a".into())]);
        c.released("a", t0);
        assert_eq!(c.poll_timeout(), None);
        // Closed while its claim was under way: released when it turns out ours.
        c.room_opened("b", t0);
        assert_eq!(drain(&mut c, t0), vec![Op::Claim("b".into())]);
        c.room_closed("b", t0);
        assert_eq!(drain(&mut c, t0), vec![Op::Release("b".into())]);
        c.claimed("b", ClaimResult::Ours, t0);
        assert_eq!(drain(&mut c, t0), vec![Op::Release("b".into())]);
        // Reopened before the release went out: kept, claimed again.
        c.room_opened("c", t0);
        drain(&mut c, t0);
        c.claimed("c", ClaimResult::Ours, t0);
        c.room_closed("c", t0);
        c.room_opened("c", t0);
        assert_eq!(drain(&mut c, t0), vec![Op::Claim("c".into())]);
    }

    #[test]
    fn an_outage_drops_releases_and_reclaims_open_rooms_on_return() {
        let t0 = Instant::now();
        let mut c = up(t0);
        for room in ["a", "b", "gone"] {
            c.room_opened(room, t0);
        }
        drain(&mut c, t0);
        for room in ["a", "b", "gone"] {
            c.claimed(room, ClaimResult::Ours, t0);
        }
        c.room_closed("gone", t0);
        let t1 = t0 + Duration::from_secs(1);
        c.failed(t1);
        assert_eq!(c.poll_notice(), Some(Notice::Down));
        assert_eq!(c.health(), Health::Down { since: t1 });
        assert_eq!(c.pending_releases().count(), 0, "the key expires anyway");
        // Closed during the outage: nothing to send.
        c.room_closed("b", t1);
        c.room_opened("new", t1);
        // Only connection attempts, once a second.
        assert!(drain(&mut c, t1).is_empty());
        assert_eq!(c.poll_timeout(), Some(t1 + RETRY));
        assert_eq!(drain(&mut c, t1 + RETRY), vec![Op::Connect]);
        assert_eq!(c.poll_timeout(), None, "a try is under way");
        c.failed(t1 + RETRY);
        assert_eq!(c.poll_notice(), None, "down is said once");
        let t2 = t1 + RETRY * 2;
        assert_eq!(drain(&mut c, t2), vec![Op::Connect]);
        c.connected(t2);
        assert_eq!(
            c.poll_notice(),
            Some(Notice::Up {
                outage: Some(RETRY * 2)
            })
        );
        assert_eq!(
            drain(&mut c, t2),
            vec![Op::Claim("a".into()), Op::Claim("new".into())]
        );
        // One of them was claimed by another node meanwhile.
        let other = addr("10.0.0.9:5060");
        c.claimed("a", ClaimResult::Ours, t2);
        c.claimed("new", ClaimResult::Theirs(other), t2);
        assert_eq!(
            c.poll_notice(),
            Some(Notice::Lost {
                room: "new".into(),
                owner: Some(other)
            })
        );
        assert!(matches!(c.holding("a"), Some(Holding::Held { .. })));
    }

    #[test]
    fn a_failure_before_the_first_connection_reports_down() {
        let t0 = Instant::now();
        let mut c = Claims::new(TTL, t0);
        assert_eq!(c.health(), Health::Starting);
        assert_eq!(drain(&mut c, t0), vec![Op::Connect]);
        c.failed(t0);
        assert_eq!(c.poll_notice(), Some(Notice::Down));
        // Rooms open meanwhile are claimed once it is up.
        c.room_opened("a", t0);
        assert_eq!(drain(&mut c, t0 + RETRY), vec![Op::Connect]);
        c.connected(t0 + RETRY);
        assert_eq!(drain(&mut c, t0 + RETRY), vec![Op::Claim("a".into())]);
    }

    #[test]
    fn a_node_announces_itself_when_up_and_every_third_of_the_ttl() {
        let t0 = Instant::now();
        let mut c = Claims::new(TTL, t0).announcing(t0);
        // Nothing but connecting while down.
        assert_eq!(drain(&mut c, t0), vec![Op::Connect]);
        c.connected(t0);
        assert_eq!(drain(&mut c, t0), vec![Op::Announce]);
        c.announced(t0);
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        assert!(drain(&mut c, t0 + Duration::from_millis(4999)).is_empty());
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(drain(&mut c, t1), vec![Op::Announce]);
        // After an outage, at once again.
        let t2 = t1 + Duration::from_secs(1);
        c.failed(t2);
        assert_eq!(drain(&mut c, t2 + RETRY), vec![Op::Connect]);
        c.connected(t2 + RETRY);
        assert_eq!(drain(&mut c, t2 + RETRY), vec![Op::Announce]);
        // A node that does not announce never does.
        let mut quiet = up(t0);
        assert!(drain(&mut quiet, t0 + TTL).is_empty());
        assert_eq!(quiet.poll_timeout(), None);
    }

    #[test]
    fn a_garbled_key_is_left_alone() {
        let t0 = Instant::now();
        let mut c = up(t0);
        c.claiming("a", t0);
        assert!(
            drain(&mut c, t0).is_empty(),
            "the caller's claim is under way"
        );
        c.claimed("a", ClaimResult::Garbled, t0);
        assert_eq!(
            c.poll_notice(),
            Some(Notice::Lost {
                room: "a".into(),
                owner: None
            })
        );
        assert!(drain(&mut c, t0 + TTL).is_empty());
    }
}
