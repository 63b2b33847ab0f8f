#![allow(clippy::disallowed_methods)] // replays captures on a virtual clock that starts now
//! Feeds real RFC 4733 captures through the receiver and checks the digits.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use confgate::dtmf::rfc4733::{EventReceiver, Press};
use pcap_file::pcap::PcapReader;
use pcap_file::DataLink;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/testdata/rtp-dtmf");

struct Rtp<'a> {
    pt: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &'a [u8],
}

/// Strips the link layer and returns the IPv4 packet, if any.
fn ipv4_of(link: DataLink, frame: &[u8]) -> Option<&[u8]> {
    match link {
        DataLink::ETHERNET => {
            let mut off = 12;
            let mut ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
            while ethertype == 0x8100 || ethertype == 0x88a8 {
                off += 4;
                ethertype = u16::from_be_bytes([*frame.get(off)?, *frame.get(off + 1)?]);
            }
            (ethertype == 0x0800).then(|| frame.get(off + 2..))?
        }
        DataLink::LINUX_SLL => {
            let proto = u16::from_be_bytes([*frame.get(14)?, *frame.get(15)?]);
            (proto == 0x0800).then(|| frame.get(16..))?
        }
        DataLink::RAW | DataLink::IPV4 => Some(frame),
        _ => None,
    }
}

/// Returns the UDP payload of an unfragmented IPv4/UDP packet.
fn udp_payload(ip: &[u8]) -> Option<&[u8]> {
    let first = *ip.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    let frag = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]);
    if *ip.get(9)? != 17 || frag & 0x3fff != 0 || ihl < 20 {
        return None;
    }
    let ip = ip.get(..total.min(ip.len()))?;
    let udp = ip.get(ihl..)?;
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..len.clamp(8, udp.len()))
}

/// Parses an RTP header: 12 fixed bytes, CSRC list, extension, padding.
fn parse_rtp(b: &[u8]) -> Option<Rtp<'_>> {
    if b.len() < 12 || b[0] >> 6 != 2 {
        return None;
    }
    let pt = b[1] & 0x7f;
    if (72..=76).contains(&pt) {
        return None; // RTCP
    }
    let mut off = 12 + 4 * usize::from(b[0] & 0x0f);
    if b[0] & 0x10 != 0 {
        let words = u16::from_be_bytes([*b.get(off + 2)?, *b.get(off + 3)?]);
        off += 4 + 4 * usize::from(words);
    }
    let mut end = b.len();
    if b[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*b.last()?))?;
    }
    Some(Rtp {
        pt,
        marker: b[1] & 0x80 != 0,
        seq: u16::from_be_bytes([b[2], b[3]]),
        timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        payload: b.get(off..end)?,
    })
}

/// Replays a capture, driving the timeout like an event loop would.
fn replay(file: &str, event_pt: u8) -> Vec<Press> {
    replay_filtered(file, event_pt, |_| true)
}

/// Like [`replay`], keeping only the RTP packets `keep` accepts.
fn replay_filtered(file: &str, event_pt: u8, keep: impl Fn(&Rtp<'_>) -> bool) -> Vec<Press> {
    let path = PathBuf::from(DIR).join(file);
    let f = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut reader = PcapReader::new(f).expect("pcap header");
    let link = reader.header().datalink;
    let base = Instant::now();
    let mut first: Option<Duration> = None;
    let mut now = base;
    let mut rx = EventReceiver::new(event_pt);
    let mut out = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.expect("pcap record");
        let t0 = *first.get_or_insert(pkt.timestamp);
        now = base + pkt.timestamp.saturating_sub(t0);
        if rx.next_deadline().is_some_and(|d| d <= now) {
            rx.on_timeout(now, &mut out);
        }
        let Some(rtp) = ipv4_of(link, &pkt.data)
            .and_then(udp_payload)
            .and_then(parse_rtp)
        else {
            continue;
        };
        if !keep(&rtp) {
            continue;
        }
        rx.on_packet(
            rtp.pt,
            rtp.ssrc,
            rtp.seq,
            rtp.timestamp,
            rtp.marker,
            rtp.payload,
            now,
            &mut out,
        );
    }
    rx.on_timeout(now + Duration::from_secs(10), &mut out);
    assert_eq!(rx.next_deadline(), None);
    out
}

fn digits(presses: &[Press]) -> String {
    presses.iter().map(|p| p.digit).collect()
}

fn check(file: &str, want: &str) -> Vec<Press> {
    let presses = replay(file, 101);
    assert_eq!(digits(&presses), want, "{file}");
    assert!(presses.iter().all(|p| p.ended), "{file}: {presses:?}");
    presses
}

#[test]
fn sipp_single_digits() {
    let names = [
        ("0", '0'),
        ("1", '1'),
        ("2", '2'),
        ("3", '3'),
        ("4", '4'),
        ("5", '5'),
        ("6", '6'),
        ("7", '7'),
        ("8", '8'),
        ("9", '9'),
        ("star", '*'),
        ("pound", '#'),
    ];
    for (name, digit) in names {
        let presses = check(&format!("sipp/dtmf_2833_{name}.pcap"), &digit.to_string());
        assert_eq!(presses[0].duration, 2240, "{name}");
    }
}

#[test]
fn sipp_wrong_payload_type_yields_nothing() {
    assert!(replay("sipp/dtmf_2833_5.pcap", 96).is_empty());
}

#[test]
fn gigaset_n510() {
    check(
        "restcomm-media-core/gigaset-n510-ip-pro-rfc2833.pcap",
        "1211#1211#",
    );
}

#[test]
fn cisco_spa525g2() {
    check(
        "restcomm-media-core/cisco-spa-525G2-zendesk34432.pcap",
        "6688#6688#",
    );
}

#[test]
fn zendesk_34401() {
    check("restcomm-media-core/zendesk-34401-rfc2833.pcap", "1211#");
}

#[test]
fn digit_pairs_told_apart_by_timestamp() {
    let presses = check(
        "restcomm-media-core/dtmf_rfc2833_2_digit_pairs.pcap",
        "1122",
    );
    assert_ne!(presses[0].timestamp, presses[1].timestamp);
    assert_ne!(presses[2].timestamp, presses[3].timestamp);
}

#[test]
fn four_digits_fast_and_slow() {
    check(
        "restcomm-media-core/dtmf_rfc2833_4_digits_fast.pcap",
        "1234",
    );
    check(
        "restcomm-media-core/dtmf_rfc2833_4_digits_slow.pcap",
        "1234",
    );
}

#[test]
fn captures_without_telephone_events() {
    for file in [
        "sipp/g711a.pcap",
        "restcomm-goertzel/dtmf_2_digit_pairs.pcap",
        "restcomm-goertzel/dtmf_4_digits_fast.pcap",
        "restcomm-goertzel/dtmf_4_digits_slow.pcap",
        "restcomm-media-core/rtp-packet.pcap",
        "restcomm-media-core/rtcp-packet.pcap",
        "restcomm-media-core/stun-packet.pcap",
        "restcomm-media-core/dtls-packet.pcap",
    ] {
        assert!(replay(file, 101).is_empty(), "{file}");
    }
}

#[test]
fn lost_end_packets_reported_by_timeout_or_next_press() {
    let files = [
        (
            "restcomm-media-core/gigaset-n510-ip-pro-rfc2833.pcap",
            "1211#1211#",
        ),
        (
            "restcomm-media-core/cisco-spa-525G2-zendesk34432.pcap",
            "6688#6688#",
        ),
        (
            "restcomm-media-core/dtmf_rfc2833_2_digit_pairs.pcap",
            "1122",
        ),
        ("sipp/dtmf_2833_star.pcap", "*"),
    ];
    for (file, want) in files {
        let no_ends = |r: &Rtp<'_>| r.pt != 101 || r.payload.get(1).is_some_and(|f| f & 0x80 == 0);
        let presses = replay_filtered(file, 101, no_ends);
        assert_eq!(digits(&presses), want, "{file}");
        assert!(presses.iter().all(|p| !p.ended), "{file}");
    }
}
