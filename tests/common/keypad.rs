//! A test phone's keypad: key presses sent as RFC 4733 events or as DTMF
//! tones in its G.711 audio, over a real RTP socket in real time.

use std::net::SocketAddr;
use std::time::Duration;

use confgate::media::codec::Codec;
use confgate::rtp::packet::RtpSender;
use tokio::net::UdpSocket;

const FRAME: usize = 160;

fn event_code(d: char) -> u8 {
    match d {
        '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => 12 + (d as u8 - b'A'),
        _ => panic!("not a DTMF key: {d}"),
    }
}

fn tone_pair(d: char) -> (f64, f64) {
    let keys = ["123A", "456B", "789C", "*0#D"];
    let (row, col) = keys
        .iter()
        .enumerate()
        .find_map(|(r, k)| k.find(d).map(|c| (r, c)))
        .expect("DTMF key");
    (
        [697.0, 770.0, 852.0, 941.0][row],
        [1209.0, 1336.0, 1477.0, 1633.0][col],
    )
}

/// The audio of `digits` keyed as tones: `on_ms` of both tones at about
/// -10 dBm0 each, then `off_ms` of silence, per key.
pub fn tones(digits: &str, on_ms: usize, off_ms: usize) -> Vec<i16> {
    let mut out = Vec::new();
    // 0 dBm0 is a sine peaking at 0.697 of G.711 full scale.
    let amp = 0.697 * 32767.0 * 10f64.powf(-10.0 / 20.0);
    for d in digits.chars() {
        let (lo, hi) = tone_pair(d);
        for n in 0..on_ms * 8 {
            let t = n as f64 / 8000.0;
            let v = amp
                * ((2.0 * std::f64::consts::PI * lo * t).sin()
                    + (2.0 * std::f64::consts::PI * hi * t).sin());
            out.push(v as i16);
        }
        out.extend(std::iter::repeat_n(0i16, off_ms * 8));
    }
    out
}

/// Sends key presses to `dest` from `sock`.
pub struct Keypad<'a> {
    sock: &'a UdpSocket,
    dest: SocketAddr,
    rtp: RtpSender,
    codec: Codec,
}

impl<'a> Keypad<'a> {
    pub fn new(sock: &'a UdpSocket, dest: SocketAddr, codec: Codec) -> Self {
        Keypad {
            sock,
            dest,
            rtp: RtpSender::random(),
            codec,
        }
    }

    async fn send(&self, packet: &[u8]) {
        self.sock
            .send_to(packet, self.dest)
            .await
            .expect("rtp send");
    }

    /// Audio frames, paced at 20 ms.
    pub async fn audio(&mut self, pcm: &[i16]) {
        let mut out = Vec::new();
        let mut enc = [0u8; FRAME];
        for frame in pcm.chunks(FRAME) {
            let mut f = [0i16; FRAME];
            f[..frame.len()].copy_from_slice(frame);
            self.codec
                .g711()
                .expect("a G.711 codec")
                .encode(&f, &mut enc);
            self.rtp.packetize(
                self.codec
                    .static_payload_type()
                    .expect("a static payload type"),
                &enc,
                FRAME as u32,
                &mut out,
            );
            self.send(&out).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Each key as an RFC 4733 event at payload type `pt`, the way desk
    /// phones send it: a marked first packet, updates every 20 ms for
    /// 100 ms, three end packets, then 100 ms of silence.
    pub async fn events(&mut self, digits: &str, pt: u8) {
        let mut out = Vec::new();
        for d in digits.chars() {
            let code = event_code(d);
            let ts = self.rtp.timestamp();
            for step in 1..=5u16 {
                let dur = step * 160;
                let payload = [code, 10, (dur >> 8) as u8, dur as u8];
                self.rtp.packetize_at(pt, &payload, ts, step == 1, &mut out);
                self.send(&out).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let dur: u16 = 800;
            for _ in 0..3 {
                let payload = [code, 0x80 | 10, (dur >> 8) as u8, dur as u8];
                self.rtp.packetize_at(pt, &payload, ts, false, &mut out);
                self.send(&out).await;
            }
            self.audio(&[0; 5 * FRAME]).await;
        }
    }
}
