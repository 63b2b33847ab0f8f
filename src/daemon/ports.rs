//! RTP port allocation from `rtp.port_range`: an even port for RTP and the
//! odd one above it for RTCP (RFC 3550 §11), handed out round robin so a
//! port just freed is not reused at once (late packets of the previous call
//! would land in the next one). RTCP may also come muxed on the RTP port
//! (RFC 5761); the pair is taken either way, so an answer without
//! `a=rtcp-mux` always has its port.

use std::io;
use std::net::UdpSocket;
use std::net::{IpAddr, SocketAddr};
use std::ops::{Deref, RangeInclusive};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

/// One call's media sockets.
#[derive(Debug)]
pub struct RtpSockets {
    pub rtp: RtpSocket,
    /// On the RTP port + 1.
    pub rtcp: UdpSocket,
}

impl RtpSockets {
    /// The RTP port, as our SDP names it.
    pub fn port(&self) -> u16 {
        self.rtp.local_addr().map(|a| a.port()).unwrap_or(0)
    }
}

/// Even/odd port pairs of a range, bound on demand.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    slots: u32,
    cursor: AtomicU32,
    in_use: Arc<AtomicUsize>,
}

/// A bound RTP socket of the pool; its port counts as in use until the
/// call's media closes and drops it.
#[derive(Debug)]
pub struct RtpSocket {
    socket: UdpSocket,
    in_use: Arc<AtomicUsize>,
}

impl Deref for RtpSocket {
    type Target = UdpSocket;
    fn deref(&self) -> &UdpSocket {
        &self.socket
    }
}

impl Drop for RtpSocket {
    fn drop(&mut self) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PortPool {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let first = range.start() + range.start() % 2;
        // Pairs whose odd port is in the range too.
        let slots = match u32::from(*range.end()).checked_sub(u32::from(first) + 1) {
            Some(span) => span / 2 + 1,
            None => 0,
        };
        PortPool {
            first,
            slots,
            cursor: AtomicU32::new(0),
            in_use: Arc::default(),
        }
    }

    /// Port pairs bound now (for tests of what is left after calls end).
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Relaxed)
    }

    /// Bind the next free pair of ports on `ip`; errors when every pair is taken.
    pub fn bind(&self, ip: IpAddr) -> io::Result<RtpSockets> {
        for _ in 0..self.slots {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % self.slots;
            // slot < slots, so first + 2*slot <= range end <= u16::MAX.
            let port = self.first + (slot as u16) * 2;
            let rtp = match UdpSocket::bind(SocketAddr::new(ip, port)) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            };
            let Some(odd) = port.checked_add(1) else {
                continue;
            };
            match UdpSocket::bind(SocketAddr::new(ip, odd)) {
                Ok(rtcp) => {
                    self.in_use.fetch_add(1, Ordering::Relaxed);
                    let rtp = RtpSocket {
                        socket: rtp,
                        in_use: self.in_use.clone(),
                    };
                    return Ok(RtpSockets { rtp, rtcp });
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "every port of rtp.port_range is in use",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_even_odd_pairs_and_skips_busy_ones() {
        let ip = IpAddr::from([127, 0, 0, 1]);
        // Someone else holds 41007: the pair 41006/41007 is skipped.
        let _other = std::net::UdpSocket::bind((ip, 41007)).expect("41007 free");
        let pool = PortPool::new(41001..=41010);
        let mut held = Vec::new();
        while let Ok(s) = pool.bind(ip) {
            assert_eq!(s.rtcp.local_addr().unwrap().port(), s.port() + 1);
            held.push(s);
        }
        let mut ports: Vec<u16> = held.iter().map(RtpSockets::port).collect();
        ports.sort();
        // 41010 has no odd neighbour in the range.
        assert_eq!(ports, [41002, 41004, 41008]);
        assert_eq!(pool.in_use(), 3);
        drop(held);
        assert_eq!(pool.in_use(), 0, "dropped sockets give their ports back");
    }
}
