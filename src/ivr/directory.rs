//! Which room a caller may enter (sans-IO): by PIN, or named directly by a
//! trusted source through the Request-URI or an `X-Conference-Id` header.

use std::net::IpAddr;
use std::time::Duration;

use super::throttle::secrets_equal;

/// How a room behaves, from its configuration; fixed when it opens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomRules {
    /// Members hear music on hold, not each other, until a moderator is in.
    pub wait_for_moderator: bool,
    /// The room ends when its last moderator leaves.
    pub end_with_moderator: bool,
    /// Start recording with the first member.
    pub record: bool,
    /// The room ends this long after it opened.
    pub max_duration: Option<Duration>,
    /// A two-member bridge to the room's node: no announcements in it, and
    /// it ends when either member goes.
    pub bridge: bool,
}

/// The names of bridge rooms (never a room of the directory: `:` is not
/// allowed in room ids).
pub const BRIDGE_PREFIX: &str = "bridge:";

/// The header with which a trusted source seats the call it names a room
/// for as one of the room's moderators (`yes`): a node bridging a caller
/// who keyed the moderator PIN there.
pub const MODERATOR_HEADER: &str = "X-Conference-Moderator";

/// A room from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEntry {
    pub id: String,
    pub pin: String,
    pub moderator_pin: Option<String>,
    pub rules: RoomRules,
}

/// A network, `addr/prefix`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().ok()?, Some(p.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may reach a dual-stack socket as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let bits = |a: IpAddr| -> u128 {
            match a {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let mask = match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        bits(self.addr) & mask == bits(ip) & mask
    }
}

/// What a correct PIN admits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub room: String,
    pub moderator: bool,
}

/// The gatekeeper's view of the rooms.
#[derive(Debug, Clone)]
pub struct Directory {
    /// Any PIN of valid length is the room of that number.
    pub open: bool,
    pub rooms: Vec<RoomEntry>,
    pub trusted: Vec<Cidr>,
    /// `room-{id}` split around `{id}`; `None`: the URI names no room.
    pub direct_uri: Option<(String, String)>,
    /// `rooms.upstream`: a conference server every admitted caller is
    /// bridged to (`{room}` replaced), instead of a room here.
    pub upstream: Option<String>,
    /// `rooms.max_duration_secs`, for every room.
    pub max_duration: Option<Duration>,
}

/// Longest room id accepted from a request.
const MAX_ID_LEN: usize = 64;

impl Directory {
    /// The room a PIN opens, if any. Every configured PIN is compared, in
    /// constant time, whatever matches first.
    pub fn by_pin(&self, pin: &str) -> Option<Admission> {
        let mut found = None;
        for room in &self.rooms {
            if secrets_equal(pin, &room.pin) && found.is_none() {
                found = Some(Admission {
                    room: room.id.clone(),
                    moderator: false,
                });
            }
            if let Some(m) = &room.moderator_pin {
                if secrets_equal(pin, m) && found.is_none() {
                    found = Some(Admission {
                        room: room.id.clone(),
                        moderator: true,
                    });
                }
            }
        }
        // An open PIN never reaches a configured room by its id: room
        // "1234" with PIN 5555 is not opened by keying 1234.
        if found.is_none() && self.open && !self.rooms.iter().any(|r| r.id == pin) {
            found = Some(Admission {
                room: pin.to_owned(),
                moderator: false,
            });
        }
        found
    }

    /// How `room` behaves: its configuration, or an open room's defaults.
    pub fn rules(&self, room: &str) -> RoomRules {
        if room.starts_with(BRIDGE_PREFIX) {
            return RoomRules {
                bridge: true,
                ..RoomRules::default()
            };
        }
        self.rooms.iter().find(|r| r.id == room).map_or(
            RoomRules {
                max_duration: self.max_duration,
                ..RoomRules::default()
            },
            |r| r.rules,
        )
    }

    /// Whether `ip` may name a room directly.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }

    /// The room a call names directly: `X-Conference-Id`, else a
    /// Request-URI user of the `direct_uri` form. Only from trusted sources,
    /// and only rooms that exist (every well-formed id in open mode).
    pub fn direct(
        &self,
        source: IpAddr,
        request_user: Option<&str>,
        conference_id: Option<&str>,
    ) -> Option<String> {
        if !self.trusts(source) {
            return None;
        }
        let from_uri = || {
            let (prefix, suffix) = self.direct_uri.as_ref()?;
            request_user?
                .strip_prefix(prefix.as_str())?
                .strip_suffix(suffix.as_str())
        };
        self.named(conference_id.map(str::trim).or_else(from_uri)?)
    }

    /// Whether a call from `source` that names its room directly is one of
    /// the room's moderators: [`MODERATOR_HEADER`] is `yes` and the source
    /// trusted (from anyone else the header means nothing).
    pub fn direct_moderator(&self, source: IpAddr, header: Option<&str>) -> bool {
        self.trusts(source) && header.is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"))
    }

    /// The room `id` names, if it is well formed and a room: listed, or
    /// any when rooms are open.
    pub fn named(&self, id: &str) -> Option<String> {
        let well_formed = !id.is_empty()
            && id.len() <= MAX_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        let exists = self.open || self.rooms.iter().any(|r| r.id == id);
        (well_formed && exists).then(|| id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(open: bool) -> Directory {
        Directory {
            open,
            rooms: vec![
                RoomEntry {
                    id: "sales".into(),
                    pin: "4321".into(),
                    moderator_pin: Some("98765".into()),
                    rules: RoomRules {
                        wait_for_moderator: true,
                        ..RoomRules::default()
                    },
                },
                RoomEntry {
                    id: "1234".into(),
                    pin: "5555".into(),
                    moderator_pin: None,
                    rules: RoomRules::default(),
                },
            ],
            trusted: vec![
                Cidr::parse("10.0.0.0/8").unwrap(),
                Cidr::parse("192.0.2.7").unwrap(),
            ],
            direct_uri: Some(("room-".into(), String::new())),
            upstream: None,
            max_duration: Some(Duration::from_secs(7200)),
        }
    }

    #[test]
    fn rules_come_from_the_listed_room_or_the_defaults() {
        let d = dir(true);
        assert!(d.rules("sales").wait_for_moderator);
        assert!(!d.rules("1234").wait_for_moderator);
        // An open room has the defaults, and the limit every room has.
        let open = d.rules("777777");
        assert!(!open.wait_for_moderator && !open.record);
        assert_eq!(open.max_duration, Some(Duration::from_secs(7200)));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn pins_open_configured_rooms_and_moderators() {
        let d = dir(false);
        assert_eq!(
            d.by_pin("4321"),
            Some(Admission {
                room: "sales".into(),
                moderator: false
            })
        );
        assert_eq!(d.by_pin("98765").map(|a| a.moderator), Some(true));
        assert_eq!(d.by_pin("5555").map(|a| a.room), Some("1234".into()));
        assert_eq!(d.by_pin("7777"), None, "closed: unknown PINs open nothing");
    }

    #[test]
    fn open_mode_makes_a_room_of_any_pin_but_not_of_a_configured_id() {
        let d = dir(true);
        assert_eq!(d.by_pin("7777").map(|a| a.room), Some("7777".into()));
        assert_eq!(d.by_pin("4321").map(|a| a.room), Some("sales".into()));
        assert_eq!(d.by_pin("1234"), None, "room 1234 needs its own PIN");
    }

    #[test]
    fn direct_addressing_only_from_trusted_sources() {
        let d = dir(true);
        assert_eq!(
            d.direct(ip("10.1.2.3"), None, Some("42")),
            Some("42".into())
        );
        assert_eq!(
            d.direct(ip("192.0.2.7"), Some("room-42"), None),
            Some("42".into())
        );
        assert_eq!(d.direct(ip("192.0.2.8"), Some("room-42"), Some("42")), None);
        assert_eq!(d.direct(ip("10.1.2.3"), Some("4000"), None), None);
        assert_eq!(
            d.direct(ip("10.1.2.3"), None, Some("../etc")),
            None,
            "ids are plain names"
        );
        let closed = dir(false);
        assert_eq!(closed.direct(ip("10.1.2.3"), None, Some("42")), None);
        assert_eq!(
            closed.direct(ip("10.1.2.3"), None, Some("sales")),
            Some("sales".into())
        );
    }

    #[test]
    fn only_a_trusted_source_seats_a_moderator() {
        let d = dir(true);
        assert!(d.direct_moderator(ip("10.1.2.3"), Some("yes")));
        assert!(d.direct_moderator(ip("192.0.2.7"), Some(" YES ")));
        assert!(
            !d.direct_moderator(ip("192.0.2.8"), Some("yes")),
            "untrusted"
        );
        assert!(!d.direct_moderator(ip("10.1.2.3"), Some("no")));
        assert!(!d.direct_moderator(ip("10.1.2.3"), Some("")));
        assert!(!d.direct_moderator(ip("10.1.2.3"), None));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("10.255.0.1")) && !c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")), "v4-mapped peers");
        assert!(!c.contains(ip("::1")));
        let v6 = Cidr::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.9")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/", "::/129"] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }
}
