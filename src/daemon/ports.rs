//! RTP port allocation from `rtp.port_range`: even ports, handed out round
//! robin so a port just freed is not reused at once (late packets of the
//! previous call would land in the next one).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::net::UdpSocket;

/// Even ports of a range, bound on demand.
#[derive(Debug)]
pub struct PortPool {
    first: u16,
    slots: u32,
    cursor: AtomicU32,
}

impl PortPool {
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let first = range.start() + range.start() % 2;
        let slots = (u32::from(*range.end()).saturating_sub(u32::from(first)) / 2) + 1;
        PortPool {
            first,
            slots,
            cursor: AtomicU32::new(0),
        }
    }

    /// Bind the next free even port on `ip`; errors when every port is taken.
    pub async fn bind(&self, ip: IpAddr) -> io::Result<UdpSocket> {
        for _ in 0..self.slots {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % self.slots;
            // slot < slots, so first + 2*slot <= range end <= u16::MAX.
            let port = self.first + (slot as u16) * 2;
            match UdpSocket::bind(SocketAddr::new(ip, port)).await {
                Ok(s) => return Ok(s),
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

    #[tokio::test]
    async fn hands_out_even_ports_and_skips_busy_ones() {
        let pool = PortPool::new(41001..=41009);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let a = pool.bind(ip).await.unwrap();
        let b = pool.bind(ip).await.unwrap();
        let (pa, pb) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        assert_eq!((pa % 2, pb % 2), (0, 0));
        assert_ne!(pa, pb);
        assert!((41002..=41008).contains(&pa) && (41002..=41008).contains(&pb));
        let mut held = vec![a, b];
        while let Ok(s) = pool.bind(ip).await {
            held.push(s);
        }
        assert_eq!(held.len(), 4, "41002, 41004, 41006, 41008");
    }
}
