//! Batched UDP input for a media thread: one `epoll_wait` per 20 ms tick
//! names the sockets with datagrams waiting, and one `recvmmsg` per such
//! socket takes all of them, each with the kernel's arrival time
//! (`SO_TIMESTAMPNS`), so reading at the tick costs no precision to the
//! jitter buffer or the DTMF timing.
//!
//! Written on `libc` directly: the calls are four, the buffers are set up
//! once and reused, and nothing here allocates after construction.

use std::io;
use std::mem::{size_of, zeroed, MaybeUninit};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Datagrams taken from one socket by one `recvmmsg`.
pub const BATCH: usize = 8;
/// Largest datagram kept (RTP with G.711 at 20 ms is 172 bytes).
const DATAGRAM: usize = 1500;
/// Room for one `SCM_TIMESTAMPNS` control message.
const CONTROL: usize = 64;
/// Readiness events taken by one `epoll_wait`.
const EVENTS: usize = 1024;

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Ask the kernel to stamp each datagram's arrival on `fd`, and to say
/// how many it dropped for a full receive buffer.
pub fn enable_timestamps(fd: RawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    for option in [libc::SO_TIMESTAMPNS, libc::SO_RXQ_OVFL] {
        // SAFETY: `on` outlives the call and its size is passed with it.
        cvt(unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                option,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        })?;
    }
    Ok(())
}

/// The sockets a media thread watches, by token.
pub struct Poller {
    epoll: OwnedFd,
    events: Box<[libc::epoll_event]>,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: no pointers; a valid fd comes back or an error.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` was just created and is owned by nobody else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller {
            epoll,
            // SAFETY: epoll_event is plain data; all-zero is a valid value.
            events: (0..EVENTS).map(|_| unsafe { zeroed() }).collect(),
        })
    }

    /// Watch `fd` for input; [`Poller::ready`] reports it as `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            // Edge-triggered: a socket is named when input arrives, not at
            // every wait while it holds some, which spares the kernel a
            // look at every socket drained since the last wait.
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` is valid for the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })
            .map(drop)
    }

    pub fn remove(&self, fd: RawFd) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; an fd not watched is an error we ignore.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
    }

    /// Tokens of the sockets that received input since they were last
    /// named, without waiting. `f` is called once per token and must drain
    /// that socket: it is named again only when more input arrives
    /// (edge-triggered). A full batch is followed by another.
    pub fn ready(&mut self, mut f: impl FnMut(u64)) {
        loop {
            // SAFETY: the buffer holds `events.len()` entries for the kernel to fill.
            let n = unsafe {
                libc::epoll_wait(
                    self.epoll.as_raw_fd(),
                    self.events.as_mut_ptr(),
                    self.events.len() as libc::c_int,
                    0,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                // EINTR: try again; anything else cannot be acted on here.
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            };
            for ev in &self.events[..n] {
                f(ev.u64);
            }
            // A full batch may have left more behind; the ones drained
            // are not named again.
            if n < self.events.len() {
                return;
            }
        }
    }
}

/// One received datagram.
pub struct Datagram<'a> {
    /// Mutable: SRTP is decrypted in place.
    pub bytes: &'a mut [u8],
    pub from: SocketAddr,
    /// When the kernel received it (wall clock), when it said.
    pub at: Option<SystemTime>,
    /// Datagrams the kernel has dropped on this socket so far (it counts
    /// from when the socket was made, wrapping), when it said.
    pub dropped: Option<u32>,
}

/// Buffers for one `recvmmsg` of up to [`BATCH`] datagrams.
pub struct Receiver {
    data: Box<[[u8; DATAGRAM]; BATCH]>,
    control: Box<[[u64; CONTROL / 8]; BATCH]>,
    names: Box<[MaybeUninit<libc::sockaddr_storage>; BATCH]>,
    iov: [libc::iovec; BATCH],
    msgs: [libc::mmsghdr; BATCH],
    got: usize,
}

impl Receiver {
    pub fn new() -> Receiver {
        Receiver {
            data: Box::new([[0; DATAGRAM]; BATCH]),
            control: Box::new([[0; CONTROL / 8]; BATCH]),
            names: Box::new([MaybeUninit::uninit(); BATCH]),
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH],
            // SAFETY: mmsghdr is plain data (pointers and lengths); all-zero is valid.
            msgs: unsafe { zeroed() },
            got: 0,
        }
    }

    /// Take what waits on `fd` (non-blocking); returns how many datagrams.
    pub fn recv(&mut self, fd: RawFd) -> usize {
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                iov_base: self.data[i].as_mut_ptr().cast(),
                iov_len: DATAGRAM,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = self.names[i].as_mut_ptr().cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = CONTROL as _;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self`, which
        // stay in place for the call; the kernel writes within the lengths given.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.got = usize::try_from(n).unwrap_or(0);
        self.got
    }

    /// Datagram `i` of the last [`Receiver::recv`].
    pub fn datagram(&mut self, i: usize) -> Option<Datagram<'_>> {
        if i >= self.got {
            return None;
        }
        let m = &self.msgs[i];
        let len = (m.msg_len as usize).min(DATAGRAM);
        let from = sockaddr(&self.names[i], m.msg_hdr.msg_namelen)?;
        let (at, dropped) = control(&m.msg_hdr);
        Some(Datagram {
            bytes: &mut self.data[i][..len],
            from,
            at,
            dropped,
        })
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

/// The sender's address as the kernel wrote it.
fn sockaddr(
    name: &MaybeUninit<libc::sockaddr_storage>,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    let p = name.as_ptr();
    // SAFETY: the kernel wrote `len` bytes of a sockaddr of the family it
    // names; each branch reads only a struct that fits in `len`.
    unsafe {
        match i32::from((*p.cast::<libc::sockaddr>()).sa_family) {
            libc::AF_INET if len >= size_of::<libc::sockaddr_in>() => {
                let a = &*p.cast::<libc::sockaddr_in>();
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)),
                    u16::from_be(a.sin_port),
                )))
            }
            libc::AF_INET6 if len >= size_of::<libc::sockaddr_in6>() => {
                let a = &*p.cast::<libc::sockaddr_in6>();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(a.sin6_addr.s6_addr),
                    u16::from_be(a.sin6_port),
                    a.sin6_flowinfo,
                    a.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// The arrival time (`SCM_TIMESTAMPNS`) and drop count (`SO_RXQ_OVFL`)
/// control messages, where the kernel added them.
fn control(h: &libc::msghdr) -> (Option<SystemTime>, Option<u32>) {
    let (mut at, mut dropped) = (None, None);
    // SAFETY: the CMSG_* walk stays within `msg_controllen`, which the
    // kernel set to what it wrote into the buffer `h` points to; each
    // message's data is read unaligned, as the type its kind names.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET {
                match (*c).cmsg_type {
                    libc::SCM_TIMESTAMPNS => {
                        let ts =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                        at = u64::try_from(ts.tv_sec)
                            .ok()
                            .zip(u32::try_from(ts.tv_nsec).ok())
                            .map(|(s, n)| UNIX_EPOCH + Duration::new(s, n));
                    }
                    libc::SO_RXQ_OVFL => {
                        dropped = Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
                    }
                    _ => {}
                }
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (at, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn takes_every_waiting_datagram_with_its_source_and_arrival() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        enable_timestamps(rx.as_raw_fd()).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut poller = Poller::new().unwrap();
        poller.add(rx.as_raw_fd(), 42).unwrap();
        let mut tokens = Vec::new();
        poller.ready(|t| tokens.push(t));
        assert!(tokens.is_empty(), "nothing sent yet");

        let before = SystemTime::now();
        for k in 0..3u8 {
            tx.send_to(&[k; 20], to).unwrap();
        }
        // Loopback delivers inside send_to: the datagrams wait now.
        poller.ready(|t| tokens.push(t));
        assert_eq!(tokens, [42]);
        let mut r = Receiver::new();
        assert_eq!(r.recv(rx.as_raw_fd()), 3);
        for k in 0..3 {
            let d = r.datagram(k).unwrap();
            assert_eq!(d.bytes, [k as u8; 20]);
            assert_eq!(d.from, tx.local_addr().unwrap());
            let at = d.at.expect("a kernel timestamp");
            assert_eq!(d.dropped, None, "nothing dropped: no count is sent");
            assert!(
                at >= before - Duration::from_millis(5),
                "stamped at arrival"
            );
        }
        assert!(r.datagram(3).is_none());
        assert_eq!(r.recv(rx.as_raw_fd()), 0, "drained");
        tokens.clear();
        poller.ready(|t| tokens.push(t));
        assert!(tokens.is_empty(), "read sockets are not reported again");
    }

    #[test]
    fn more_ready_sockets_than_one_batch_are_each_named_once() {
        let n = EVENTS + 100;
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut poller = Poller::new().unwrap();
        let sockets: Vec<UdpSocket> = (0..n)
            .map(|k| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_nonblocking(true).unwrap();
                poller.add(s.as_raw_fd(), k as u64).unwrap();
                tx.send_to(&[1], s.local_addr().unwrap()).unwrap();
                s
            })
            .collect();
        let mut r = Receiver::new();
        let mut named = vec![0u32; n];
        poller.ready(|t| {
            named[t as usize] += 1;
            assert_eq!(r.recv(sockets[t as usize].as_raw_fd()), 1);
        });
        assert!(
            named.iter().all(|&c| c == 1),
            "each once, and the call returns"
        );
    }
}
