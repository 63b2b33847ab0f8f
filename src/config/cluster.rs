//! `[cluster]`: the room directory several nodes share in Redis.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{ConfigError, SipConfig};

/// The Redis the nodes share their room directory in, and who this node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://HOST:PORT[/DB]`, checked at load.
    pub redis: String,
    /// This node's SIP address as the other nodes reach it; the value of
    /// the room keys it claims.
    pub node: SocketAddr,
    /// How long a claim lives in Redis unless refreshed (every third of it).
    pub claim_ttl: Duration,
    /// This node's control TCP address as the other nodes reach it, which
    /// it announces so that they can forward commands for its rooms;
    /// `None`: it has no control TCP, its rooms are seen only from here.
    pub control: Option<SocketAddr>,
    /// A caller for a room another node holds is first asked to move there
    /// with REFER (a ticket admitting it), and bridged only if it will not.
    pub refer: bool,
}

/// The shortest `cluster.claim_ttl_secs`: a refresh every second.
const MIN_TTL_SECS: u64 = 3;
/// The longest: a crashed node's rooms come free within a day.
const MAX_TTL_SECS: u64 = 24 * 3600;

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub redis: String,
    pub node: String,
    pub claim_ttl_secs: u64,
    pub control: String,
    pub refer: bool,
}

/// `None` when `cluster.redis` is empty (a standalone node).
pub(super) fn cluster_settings(
    c: &ClusterConfig,
    sip: &SipConfig,
    sip_listen: SocketAddr,
    public_address: Option<IpAddr>,
    control_tcp: Option<SocketAddr>,
) -> Result<Option<ClusterSettings>, ConfigError> {
    let url = c.redis.trim();
    if url.is_empty() {
        return Ok(None);
    }
    check_url(url)?;
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&c.claim_ttl_secs) {
        return Err(ConfigError::invalid(
            "cluster.claim_ttl_secs",
            format!(
                "{} is outside {MIN_TTL_SECS}-{MAX_TTL_SECS} (claims are refreshed every third of it)",
                c.claim_ttl_secs
            ),
        ));
    }
    let node = match c.node.trim() {
        "" => {
            let node = match public_address {
                Some(ip) => SocketAddr::new(ip, sip_listen.port()),
                None => sip_listen,
            };
            if node.ip().is_unspecified() {
                return Err(ConfigError::invalid(
                    "cluster.node",
                    format!(
                        "empty, and sip.listen `{}` has no address the other nodes can reach \
                         (set cluster.node or sip.public_address)",
                        sip.listen
                    ),
                ));
            }
            node
        }
        s => {
            let node: SocketAddr = s.parse().map_err(|_| {
                ConfigError::invalid("cluster.node", format!("`{s}` is not IP:PORT"))
            })?;
            if node.ip().is_unspecified() || node.port() == 0 {
                return Err(ConfigError::invalid(
                    "cluster.node",
                    format!("`{s}` is not an address the other nodes can reach"),
                ));
            }
            node
        }
    };
    let control = match c.control.trim() {
        "" => match control_tcp {
            Some(tcp) if tcp.port() == 0 => {
                return Err(ConfigError::invalid(
                    "cluster.control",
                    "empty, and control.tcp has port 0: the other nodes could not know the \
                     port (give control.tcp a port)",
                ))
            }
            Some(tcp) if tcp.ip().is_unspecified() => Some(SocketAddr::new(node.ip(), tcp.port())),
            tcp => tcp,
        },
        s => {
            let addr: SocketAddr = s.parse().map_err(|_| {
                ConfigError::invalid("cluster.control", format!("`{s}` is not IP:PORT"))
            })?;
            if control_tcp.is_none() {
                return Err(ConfigError::invalid(
                    "cluster.control",
                    format!("`{s}` is set but control.tcp is empty: nothing would answer there"),
                ));
            }
            if addr.ip().is_unspecified() || addr.port() == 0 {
                return Err(ConfigError::invalid(
                    "cluster.control",
                    format!("`{s}` is not an address the other nodes can reach"),
                ));
            }
            Some(addr)
        }
    };
    Ok(Some(ClusterSettings {
        redis: url.to_owned(),
        node,
        claim_ttl: Duration::from_secs(c.claim_ttl_secs),
        control,
        refer: c.refer,
    }))
}

/// `redis://HOST:PORT[/DB]`: plain TCP (TLS, Unix sockets and passwords
/// in the URL are left out on purpose), a port, a database number.
fn check_url(url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| {
        ConfigError::invalid(
            "cluster.redis",
            format!("`{url}` {why} (expected redis://HOST:PORT[/DB])"),
        )
    };
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| bad("is not a redis:// URL"))?;
    let (authority, db) = match rest.split_once('/') {
        Some((a, "")) => (a, None),
        Some((a, db)) => (a, Some(db)),
        None => (rest, None),
    };
    if authority.contains('@') {
        return Err(bad(
            "has credentials; confgate does not take them in the URL",
        ));
    }
    let port = authority
        .rsplit_once(':')
        .filter(|(host, _)| !host.is_empty() && host != &"[]")
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .filter(|p| *p != 0);
    if port.is_none() {
        return Err(bad("needs HOST:PORT"));
    }
    if let Some(db) = db {
        if db.parse::<u16>().is_err() {
            return Err(bad("has a database that is not a number"));
        }
    }
    redis::Client::open(url).map_err(|e| bad(&format!("is not usable: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        for good in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1:6379/",
            "redis://redis.example:6380/2",
            "redis://[::1]:6379/0",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:6379",
            "rediss://127.0.0.1:6379",
            "redis://127.0.0.1",
            "redis://:6379",
            "redis://127.0.0.1:0",
            "redis://127.0.0.1:6379/x",
            "redis://user:pw@127.0.0.1:6379",
            "redis://127.0.0.1:99999",
        ] {
            let e = check_url(bad).unwrap_err().to_string();
            assert!(e.starts_with("cluster.redis:"), "{bad}: {e}");
        }
    }
}
