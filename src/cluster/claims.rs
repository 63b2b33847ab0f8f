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
        }
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
            .min()
    }

    pub fn poll_notice(&mut self) -> Option<Notice> {
        self.notices.pop_front()
    }
}
