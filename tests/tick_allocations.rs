//! The media tick allocates nothing: a room of ten calls, each a full media
//! session (source learning, RFC 4733 and in-band DTMF, RTCP reports and
//! the line-quality score, the RTP timeout) feeding the mixer, runs 60 s of
//! virtual time (RTCP reports and quality checks included) and the heap is
//! never touched on this thread after the first second.
#![allow(clippy::disallowed_methods)] // the test picks the start of its virtual clock

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use confgate::call::media::{MediaEvent, MediaSession, MediaSetup};
use confgate::call::session::MediaParams;
use confgate::media::codec::Codec;
use confgate::media::mixer::Mixer;
use confgate::rtp::learning::SourceLearning;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note() {
    // `try_with`: the thread may be ending and its locals gone.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        COUNT.with(|c| c.set(c.get() + 1));
    }
}

// SAFETY: every call is passed on to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        note();
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const CALLS: usize = 10;
const TALKERS: usize = 2;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 7], port))
}

fn session(k: usize, t0: Instant, wall: SystemTime) -> MediaSession {
    let remote = addr(40000 + 2 * k as u16);
    let params = MediaParams {
        codec: Codec::Pcmu,
        payload_type: 0,
        remote: Some(remote),
        send: true,
        dtmf_pt: Some(101),
        rtcp_mux: false,
        rtcp: None,
        opus: Default::default(),
        srtp: None,
    };
    MediaSession::new(
        MediaSetup {
            params,
            inband: true,
            rtp_timeout: Duration::from_secs(30),
            learning: SourceLearning::new(Some(remote), remote.ip(), false),
            cname: format!("call{k}@confgate"),
            quality_alarm_mos: 3.0,
        },
        t0,
        wall,
    )
}

/// Call `k`'s RTP packet for frame `n`: a tone for talkers, quiet noise for
/// the rest; call 0 also keys a `5` as RFC 4733 events now and then.
fn packet(k: usize, n: u32, buf: &mut [u8; 172]) -> usize {
    let seq = n as u16;
    let ts = n * 160;
    buf[0] = 0x80;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&(0x5000 + k as u32).to_be_bytes());
    if k == 0 && n % 250 >= 100 && n % 250 < 105 {
        // telephone-event 5, volume 10, the last packet marked end.
        let start = ts - (n % 250 - 100) * 160;
        buf[1] = 101;
        buf[4..8].copy_from_slice(&start.to_be_bytes());
        let end = if n % 250 == 104 { 0x80 } else { 0 };
        let duration = ((n % 250 - 99) * 160) as u16;
        buf[12..16].copy_from_slice(&[5, end | 10, (duration >> 8) as u8, duration as u8]);
        return 16;
    }
    buf[1] = 0;
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    let mut pcm = [0i16; 160];
    for (i, s) in pcm.iter_mut().enumerate() {
        let t = (n as usize * 160 + i) as f64 / 8000.0;
        *s = if k < TALKERS {
            (6000.0 * (std::f64::consts::TAU * (400.0 + 100.0 * k as f64) * t).sin()) as i16
        } else {
            (((i * 7919 + n as usize * 31 + k) % 64) as i16) - 32
        };
    }
    let mut payload = [0u8; 160];
    Codec::Pcmu
        .g711()
        .expect("G.711")
        .encode(&pcm, &mut payload);
    buf[12..172].copy_from_slice(&payload);
    172
}

#[test]
fn a_room_of_full_media_sessions_ticks_without_allocating() {
    let t0 = Instant::now();
    let wall = SystemTime::now();
    let mut mixer = Mixer::new();
    let room = mixer.open_room();
    let mut calls: Vec<(MediaSession, _)> = (0..CALLS)
        .map(|k| {
            let mut s = session(k, t0, wall);
            let id = mixer.add_member(room, Codec::Pcmu).expect("a seat");
            s.seated();
            (s, id)
        })
        .collect();
    let mut buf = [0u8; 172];
    let (mut sent, mut reports, mut digits) = (0u64, 0u64, 0u64);
    let warm_up = 50;
    let frames = 3000; // 60 s
    for n in 0..frames {
        if n == warm_up {
            COUNTING.with(|c| c.set(true));
        }
        let now = t0 + Duration::from_millis(20 * u64::from(n));
        for (k, (s, id)) in calls.iter_mut().enumerate() {
            let len = packet(k, n, &mut buf);
            let from = addr(40000 + 2 * k as u16);
            if let Some(audio) = s.on_rtp(&mut buf[..len], from, now) {
                mixer.push(*id, audio.ts, audio.payload, now);
            }
        }
        mixer.tick();
        for (s, id) in calls.iter_mut() {
            if s.audio_frame(mixer.output(*id)).is_some() {
                sent += 1;
            }
            if now >= s.poll_timeout() && s.handle_timeout(now).is_some() {
                reports += 1;
            }
            s.take_quality();
            while let Some(e) = s.poll_event() {
                digits += u64::from(matches!(e, MediaEvent::Digit { .. }));
            }
        }
    }
    COUNTING.with(|c| c.set(false));
    let allocations = COUNT.with(Cell::get);
    // The run did what a room does: every frame sent, reports and digits.
    assert_eq!(sent, u64::from(frames) * CALLS as u64);
    assert!(reports >= 10 * CALLS as u64, "{reports} RTCP reports");
    assert!(digits >= 10, "{digits} digits");
    assert_eq!(allocations, 0, "allocations in {} ticks", frames - warm_up);
}
