//! The conference mixer (sans-IO): every member hears everyone else.
//!
//! One [`Mixer::tick`] every 20 ms serves every room. Per member, the
//! jitter buffer yields a frame (or its concealment); a talk detector
//! (energy with hangover) decides whether the member is speaking; the room's
//! mix is the i32 sum of its speaking, unmuted members. Each speaking member
//! gets the mix minus its own frame, saturated to i16 and encoded in its
//! codec; everyone else hears the full mix, encoded once per codec per room
//! and shared. A room of silent members therefore costs a jitter-buffer pop
//! and an energy sum per member, and one encode per codec.
//!
//! The room runs at 16 kHz. Each member's payloads are decoded in arrival
//! order (G.722 and Opus keep state) and upsampled to the room's rate when
//! narrowband; an Opus packet that follows a lost one first gives the lost
//! frame back from its in-band FEC. Narrowband members hear the mix
//! downsampled; G.711 listeners of the full mix still share one encode per
//! law, while wideband members get audio their own call encodes (their
//! codecs keep state, so no two streams can share an encoder's output).
//!
//! Prompts addressed to one member (the join announcement, tones) are mixed
//! into that member's output only. Nothing here allocates per tick or per
//! packet: rooms and members are slots reused after they leave, and a room's
//! member list grows only on join.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::codec::{Codec, Decoder, NarrowOut, NARROW_FRAME, ROOM_FRAME, ROOM_RATE};
use super::jitter::{JitterBuffer, JitterStats, Popped};
use super::player::Player;

/// The room's frame.
const FRAME: usize = ROOM_FRAME;

/// How far behind the newest decoded Opus packet a packet is taken as late
/// (the jitter buffer's span); further is a sender that started again.
const LATE_SPAN: u32 = 32;

/// The most Opus frames in a row recovered when a packet follows a loss
/// (more is a new talkspurt or a restarted sender, not loss).
const MAX_GAP: u32 = 6;

/// A member's 20 ms to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output<'a> {
    /// A payload in the member's codec (G.711).
    Encoded(&'a [u8]),
    /// Audio at the member's codec's sample rate, for its call to encode.
    Pcm(&'a [i16]),
}

static SILENCE: [i16; ROOM_FRAME] = [0; ROOM_FRAME];

/// A room's slot in the mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId(usize);

/// A member's slot in the mixer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberId(usize);

/// Mean square above which a frame counts as speech (RMS 180, about -45 dBFS).
const TALK_ENERGY: i64 = 180 * 180;
/// Frames a member stays "talking" after its last loud frame (300 ms), so
/// word gaps do not switch it in and out of the mix.
const HANGOVER: u16 = 15;

/// Volume steps a member can take from the keypad, in dB.
pub const GAIN_STEP_DB: i8 = 3;
/// The furthest a member's volume goes either way, in dB.
pub const GAIN_LIMIT_DB: i8 = 12;
/// Unity gain in Q8.
const UNITY: i32 = 256;

/// A gain in dB as a Q8 factor.
fn q8(db: i8) -> i32 {
    (10f64.powf(f64::from(db) / 20.0) * f64::from(UNITY)).round() as i32
}

/// Which of a member's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Volume {
    /// What the member hears.
    Listen,
    /// How loud the others hear it.
    Talk,
}

/// What a member's line looks like, for listings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberInfo {
    pub room: RoomId,
    pub codec: Codec,
    pub talking: bool,
    pub muted: bool,
    pub deaf: bool,
    pub held: bool,
    /// Volumes set from the keypad, in dB.
    pub listen_db: i8,
    pub talk_db: i8,
    pub jitter_ms: f32,
    pub stats: JitterStats,
}

/// Where a member's output of this tick is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Out {
    /// Held: nothing is sent.
    Nothing,
    /// Its own buffer.
    Own,
    /// The room's shared full mix in its codec.
    Shared,
    /// Encoded silence.
    Silence,
}

struct Member {
    room: RoomId,
    codec: Codec,
    decoder: Decoder,
    /// The newest RTP timestamp decoded, for codecs that keep state.
    decoded_ts: Option<u32>,
    jitter: JitterBuffer,
    frame: [i16; FRAME],
    /// Frames of hangover left; talking while > 0.
    hang: u16,
    contributing: bool,
    muted: bool,
    deaf: bool,
    held: bool,
    /// Muted by a moderator's mute-all, apart from its own mute.
    room_muted: bool,
    /// Keypad volumes: dB, and their Q8 factors.
    listen_db: i8,
    talk_db: i8,
    listen_gain: i32,
    talk_gain: i32,
    /// Prompts, at the room's rate.
    prompt: Player,
    queued: VecDeque<Arc<[i16]>>,
    /// Its own mix, at the room's rate (wideband members send this).
    own: [i16; FRAME],
    /// Its own mix in G.711 (narrowband members).
    out: [u8; NARROW_FRAME],
    down: NarrowOut,
    out_kind: Out,
}

struct Room {
    members: Vec<MemberId>,
    /// Music on hold: while set, members hear it and not each other.
    music: Option<Player>,
    mix: [i32; FRAME],
    /// The full mix, saturated (for wideband listeners), when used.
    full: [i16; FRAME],
    full_ready: bool,
    /// The full mix downsampled, and encoded per G.711 law (index
    /// [`law_index`]), when used.
    narrow: [i16; NARROW_FRAME],
    down: NarrowOut,
    narrow_ready: bool,
    shared: [[u8; NARROW_FRAME]; 2],
    shared_ready: [bool; 2],
}

/// The index of a G.711 codec in per-law arrays; wideband codecs have none.
fn law_index(c: Codec) -> Option<usize> {
    match c {
        Codec::Pcmu => Some(0),
        Codec::Pcma => Some(1),
        _ => None,
    }
}

/// All rooms and members.
pub struct Mixer {
    // Boxed: a slot freed by a call that left costs a pointer, not a
    // member's buffers, however many calls were once in at the same time.
    rooms: Vec<Option<Box<Room>>>,
    members: Vec<Option<Box<Member>>>,
    silence: [[u8; NARROW_FRAME]; 2],
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

fn saturate(v: i32) -> i16 {
    v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Apply a Q8 gain to a frame, saturating.
fn scale(frame: &mut [i16; FRAME], gain: i32) {
    for s in frame.iter_mut() {
        *s = saturate((i32::from(*s) * gain) >> 8);
    }
}

impl Mixer {
    pub fn new() -> Self {
        let mut silence = [[0u8; NARROW_FRAME]; 2];
        for (i, c) in [Codec::Pcmu, Codec::Pcma].into_iter().enumerate() {
            if let Some(law) = c.g711() {
                law.encode(&[0; NARROW_FRAME], &mut silence[i]);
            }
        }
        Mixer {
            rooms: Vec::new(),
            members: Vec::new(),
            silence,
        }
    }

    pub fn open_room(&mut self) -> RoomId {
        let room = Room {
            members: Vec::with_capacity(8),
            music: None,
            mix: [0; FRAME],
            full: [0; FRAME],
            full_ready: false,
            narrow: [0; NARROW_FRAME],
            down: NarrowOut::default(),
            narrow_ready: false,
            shared: [[0; NARROW_FRAME]; 2],
            shared_ready: [false; 2],
        };
        match self.rooms.iter().position(Option::is_none) {
            Some(i) => {
                self.rooms[i] = Some(Box::new(room));
                RoomId(i)
            }
            None => {
                self.rooms.push(Some(Box::new(room)));
                RoomId(self.rooms.len() - 1)
            }
        }
    }

    /// Close a room; its members (if any) are removed too.
    pub fn close_room(&mut self, room: RoomId) {
        if let Some(r) = self.rooms.get_mut(room.0).and_then(Option::take) {
            for m in &r.members {
                if let Some(slot) = self.members.get_mut(m.0) {
                    *slot = None;
                }
            }
        }
    }

    /// Add a member who sends and receives `codec`. `None` if the room is
    /// not open (or libopus could not make a decoder).
    pub fn add_member(&mut self, room: RoomId, codec: Codec) -> Option<MemberId> {
        self.rooms.get(room.0)?.as_ref()?;
        let decoder = Decoder::new(codec, ROOM_RATE)
            .map_err(|e| tracing::error!(error = %e, %codec, "no decoder"))
            .ok()?;
        let member = Member {
            room,
            codec,
            decoder,
            decoded_ts: None,
            jitter: JitterBuffer::with_frame_ts(codec.frame_ts()),
            frame: [0; FRAME],
            hang: 0,
            contributing: false,
            muted: false,
            deaf: false,
            held: false,
            room_muted: false,
            listen_db: 0,
            talk_db: 0,
            listen_gain: UNITY,
            talk_gain: UNITY,
            prompt: Player::new(),
            queued: VecDeque::with_capacity(4),
            own: [0; FRAME],
            out: [0; NARROW_FRAME],
            down: NarrowOut::default(),
            out_kind: Out::Silence,
        };
        let id = match self.members.iter().position(Option::is_none) {
            Some(i) => {
                self.members[i] = Some(Box::new(member));
                MemberId(i)
            }
            None => {
                self.members.push(Some(Box::new(member)));
                MemberId(self.members.len() - 1)
            }
        };
        if let Some(Some(r)) = self.rooms.get_mut(room.0) {
            r.members.push(id);
        }
        Some(id)
    }

    /// Remove a member; returns how many remain in its room.
    pub fn remove_member(&mut self, id: MemberId) -> usize {
        let Some(m) = self.members.get_mut(id.0).and_then(Option::take) else {
            return 0;
        };
        match self.rooms.get_mut(m.room.0) {
            Some(Some(r)) => {
                r.members.retain(|&x| x != id);
                r.members.len()
            }
            _ => 0,
        }
    }

    fn member(&mut self, id: MemberId) -> Option<&mut Member> {
        self.members.get_mut(id.0)?.as_deref_mut()
    }

    /// A received RTP payload in the member's codec, `ts` its RTP timestamp.
    /// Payloads of several frames are split; a short one is padded with silence.
    pub fn push(&mut self, id: MemberId, ts: u32, payload: &[u8], now: Instant) {
        self.push_frames(id, ts, payload, now, false);
    }

    /// Like [`Mixer::push`], but what the payload held is kept out of the
    /// mix (key tones): silence takes its place, and the two frames before
    /// it, those not played yet, are silenced too (the tone started in them).
    pub fn push_concealed(&mut self, id: MemberId, ts: u32, payload: &[u8], now: Instant) {
        if let Some(m) = self.member(id) {
            let step = m.codec.frame_ts();
            for back in 1..=2u32 {
                m.jitter.quiet(ts.wrapping_sub(back * step));
            }
        }
        self.push_frames(id, ts, payload, now, true);
    }

    fn push_frames(&mut self, id: MemberId, ts: u32, payload: &[u8], now: Instant, quiet: bool) {
        let Some(m) = self.member(id) else { return };
        let step = m.codec.frame_ts();
        let mut pcm = [0i16; FRAME];
        if m.codec == Codec::Opus {
            // Decoded in order: a late or repeated packet would disturb the
            // decoder, and its slot has been concealed. A timestamp far
            // behind is a restarted sender, decoded from there on.
            let late = |last: u32| last.wrapping_sub(ts) < LATE_SPAN * step;
            if m.decoded_ts.is_some_and(late) {
                return;
            }
            // Frames lost since the last packet (up to 100 ms): libopus
            // conceals all but the last, which this packet's FEC restores
            // (or libopus conceals too when it carries none).
            let gap = m.decoded_ts.map_or(0, |last| ts.wrapping_sub(last) / step);
            if (2..=MAX_GAP).contains(&gap) {
                for k in (1..gap).rev() {
                    let got = match k {
                        1 => m.decoder.recover(payload, &mut pcm),
                        _ => m.decoder.conceal(&mut pcm),
                    };
                    if got {
                        if quiet {
                            pcm.fill(0);
                        }
                        m.jitter.push(ts.wrapping_sub(k * step), &pcm, now);
                    }
                }
            }
            m.decoded_ts = Some(ts);
            // A packet may hold up to 120 ms (RFC 7587): one jitter slot
            // per 20 ms of it; a remainder short of 20 ms is dropped.
            let mut long = [0i16; 6 * FRAME];
            let Ok(n) = m.decoder.decode_packet(payload, &mut long) else {
                return;
            };
            for (k, frame) in long[..n].chunks_exact(FRAME).enumerate() {
                pcm.copy_from_slice(frame);
                if quiet {
                    pcm.fill(0);
                }
                let at = ts.wrapping_add(k as u32 * step);
                m.decoded_ts = Some(at);
                m.jitter.push(at, &pcm, now);
            }
            return;
        }
        // G.711 and G.722: 160 bytes and 160 clock units per 20 ms.
        for (k, chunk) in payload.chunks(NARROW_FRAME).enumerate() {
            if m.decoder.decode(chunk, &mut pcm).is_err() {
                continue;
            }
            if quiet {
                pcm.fill(0);
            }
            let at = ts.wrapping_add(k as u32 * step);
            m.decoded_ts = Some(at);
            m.jitter.push(at, &pcm, now);
        }
    }

    /// Play a clip to this member alone (after what is already queued).
    pub fn play(&mut self, id: MemberId, clip: Arc<[i16]>) {
        let Some(m) = self.member(id) else { return };
        if m.prompt.is_playing() {
            if m.queued.len() < m.queued.capacity() {
                m.queued.push_back(clip);
            }
        } else {
            m.prompt.play(clip, false);
        }
    }

    /// Whether a prompt plays or waits for this member.
    pub fn is_prompting(&self, id: MemberId) -> bool {
        self.members
            .get(id.0)
            .and_then(Option::as_ref)
            .is_some_and(|m| m.prompt.is_playing() || !m.queued.is_empty())
    }

    pub fn set_muted(&mut self, id: MemberId, on: bool) {
        if let Some(m) = self.member(id) {
            m.muted = on;
        }
    }

    /// Whether the member is muted by itself (or the control socket),
    /// apart from a moderator's mute-all.
    pub fn own_mute(&self, id: MemberId) -> bool {
        self.members
            .get(id.0)
            .and_then(Option::as_ref)
            .is_some_and(|m| m.muted)
    }

    /// Muted with everyone else by a moderator (its own mute stays as it is).
    pub fn set_room_muted(&mut self, id: MemberId, on: bool) {
        if let Some(m) = self.member(id) {
            m.room_muted = on;
        }
    }

    pub fn set_deaf(&mut self, id: MemberId, on: bool) {
        if let Some(m) = self.member(id) {
            m.deaf = on;
        }
    }

    /// On hold (`sendonly`/`inactive`): neither mixed nor sent anything.
    pub fn set_held(&mut self, id: MemberId, on: bool) {
        if let Some(m) = self.member(id) {
            m.held = on;
        }
    }

    /// Move one of a member's volumes a step up (`up`) or down, within
    /// ±[`GAIN_LIMIT_DB`]; returns the new level in dB.
    pub fn step_volume(&mut self, id: MemberId, which: Volume, up: bool) -> Option<i8> {
        let m = self.member(id)?;
        let step = if up { GAIN_STEP_DB } else { -GAIN_STEP_DB };
        let (db, gain) = match which {
            Volume::Listen => (&mut m.listen_db, &mut m.listen_gain),
            Volume::Talk => (&mut m.talk_db, &mut m.talk_gain),
        };
        *db = (*db + step).clamp(-GAIN_LIMIT_DB, GAIN_LIMIT_DB);
        *gain = q8(*db);
        Some(*db)
    }

    /// Loop `music` to the whole room instead of its members' voices
    /// (waiting for a moderator); `None`: the members hear each other again.
    pub fn set_music(&mut self, room: RoomId, music: Option<Arc<[i16]>>) {
        if let Some(Some(r)) = self.rooms.get_mut(room.0) {
            r.music = music.map(|clip| {
                let mut p = Player::new();
                p.play(clip, true);
                p
            });
        }
    }

    /// This tick's full mix of a room, what a silent listener hears.
    pub fn room_mix(&self, room: RoomId, out: &mut [i16; FRAME]) -> bool {
        let Some(Some(r)) = self.rooms.get(room.0) else {
            return false;
        };
        for (o, &v) in out.iter_mut().zip(r.mix.iter()) {
            *o = saturate(v);
        }
        true
    }

    pub fn members(&self, room: RoomId) -> &[MemberId] {
        match self.rooms.get(room.0) {
            Some(Some(r)) => &r.members,
            _ => &[],
        }
    }

    pub fn info(&self, id: MemberId) -> Option<MemberInfo> {
        let m = self.members.get(id.0)?.as_ref()?;
        Some(MemberInfo {
            room: m.room,
            codec: m.codec,
            talking: m.hang > 0,
            muted: m.muted || m.room_muted,
            deaf: m.deaf,
            held: m.held,
            listen_db: m.listen_db,
            talk_db: m.talk_db,
            jitter_ms: m.jitter.jitter_ms(),
            stats: m.jitter.stats(),
        })
    }

    /// Mix one 20 ms frame for every room.
    pub fn tick(&mut self) {
        let Mixer { rooms, members, .. } = self;
        for room in rooms.iter_mut().flatten() {
            room.mix = [0; FRAME];
            room.full_ready = false;
            room.narrow_ready = false;
            room.shared_ready = [false; 2];
            for &id in &room.members {
                let Some(m) = members[id.0].as_deref_mut() else {
                    continue;
                };
                let kind = m.jitter.pop(&mut m.frame);
                let energy = if kind == Popped::Silence {
                    0
                } else {
                    m.frame
                        .iter()
                        .map(|&s| i64::from(s) * i64::from(s))
                        .sum::<i64>()
                        / FRAME as i64
                };
                m.hang = if energy > TALK_ENERGY {
                    HANGOVER
                } else {
                    m.hang.saturating_sub(1)
                };
                // Talk is judged on what the member sent; its volume is
                // only what the others hear of it.
                if m.talk_gain != UNITY {
                    scale(&mut m.frame, m.talk_gain);
                }
                m.contributing = m.hang > 0
                    && !m.muted
                    && !m.room_muted
                    && !m.held
                    && kind != Popped::Silence
                    && room.music.is_none();
                if m.contributing {
                    for (acc, &s) in room.mix.iter_mut().zip(m.frame.iter()) {
                        *acc += i32::from(s);
                    }
                }
            }
            if let Some(music) = &mut room.music {
                let mut frame = [0i16; FRAME];
                music.next_frame(&mut frame);
                for (acc, &s) in room.mix.iter_mut().zip(frame.iter()) {
                    *acc = i32::from(s);
                }
            }
            for &id in &room.members {
                let Some(m) = members[id.0].as_deref_mut() else {
                    continue;
                };
                if m.held {
                    m.out_kind = Out::Nothing;
                    continue;
                }
                let prompting = m.prompt.is_playing();
                if !m.contributing && !prompting && m.listen_gain == UNITY {
                    if m.deaf {
                        m.out_kind = Out::Silence;
                        continue;
                    }
                    if !room.full_ready {
                        for (p, &v) in room.full.iter_mut().zip(room.mix.iter()) {
                            *p = saturate(v);
                        }
                        room.full_ready = true;
                    }
                    if let (Some(c), Some(law)) = (law_index(m.codec), m.codec.g711()) {
                        if !room.narrow_ready {
                            room.down.downsample(&room.full, &mut room.narrow);
                            room.narrow_ready = true;
                        }
                        if !room.shared_ready[c] {
                            law.encode(&room.narrow, &mut room.shared[c]);
                            room.shared_ready[c] = true;
                        }
                    }
                    m.out_kind = Out::Shared;
                    continue;
                }
                let mut pcm = [0i16; FRAME];
                if !m.deaf {
                    for ((p, &v), &own) in pcm.iter_mut().zip(room.mix.iter()).zip(m.frame.iter()) {
                        let own = if m.contributing { i32::from(own) } else { 0 };
                        *p = saturate(v - own);
                    }
                    if m.listen_gain != UNITY {
                        scale(&mut pcm, m.listen_gain);
                    }
                }
                if prompting {
                    let mut clip = [0i16; FRAME];
                    m.prompt.next_frame(&mut clip);
                    for (p, &v) in pcm.iter_mut().zip(clip.iter()) {
                        *p = p.saturating_add(v);
                    }
                    if m.prompt.take_finished() {
                        if let Some(next) = m.queued.pop_front() {
                            m.prompt.play(next, false);
                        }
                    }
                }
                match m.codec.g711() {
                    Some(law) => m.down.encode(law, &pcm, &mut m.out),
                    None => m.own = pcm,
                }
                m.out_kind = Out::Own;
            }
        }
    }

    /// When the frame the member put into this tick's mix arrived; `None`
    /// when it added nothing (silent, muted, held, or concealed).
    pub fn contributed(&self, id: MemberId) -> Option<Instant> {
        let m = self.members.get(id.0)?.as_ref()?;
        m.jitter.arrived().filter(|_| m.contributing)
    }

    /// This tick's 20 ms for a member: a G.711 payload, or audio for its
    /// call to encode; `None` when nothing is to be sent (held, or not a
    /// member).
    pub fn output(&self, id: MemberId) -> Option<Output<'_>> {
        let m = self.members.get(id.0)?.as_ref()?;
        let law = law_index(m.codec);
        Some(match (m.out_kind, law) {
            (Out::Nothing, _) => return None,
            (Out::Own, Some(_)) => Output::Encoded(&m.out),
            (Out::Own, None) => Output::Pcm(&m.own),
            (Out::Silence, Some(c)) => Output::Encoded(&self.silence[c]),
            (Out::Silence, None) => Output::Pcm(&SILENCE),
            (Out::Shared, law) => {
                let room = self.rooms.get(m.room.0)?.as_ref()?;
                match law {
                    Some(c) => Output::Encoded(&room.shared[c]),
                    None => Output::Pcm(&room.full),
                }
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests pick the start of their virtual clock
mod tests {
    use super::*;
    use std::time::Duration;

    /// These tests speak G.711: 20 ms at 8 kHz.
    const FRAME: usize = NARROW_FRAME;

    fn ptr(o: Option<Output<'_>>) -> *const u8 {
        match o {
            Some(Output::Encoded(b)) => b.as_ptr(),
            Some(Output::Pcm(p)) => p.as_ptr().cast(),
            None => std::ptr::null(),
        }
    }

    const FREQS: [f64; 3] = [500.0, 800.0, 1300.0];

    fn sine(freq: f64, amp: f64, start: usize) -> [i16; FRAME] {
        let mut f = [0i16; FRAME];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (start + i) as f64 / 8000.0;
            *s = (amp * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16;
        }
        f
    }

    /// Power of `freq` in `x` (Goertzel), normalised by length.
    fn power(x: &[i16], freq: f64) -> f64 {
        power_at(x, 8000, freq)
    }

    fn power_at(x: &[i16], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / f64::from(rate);
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &v in x {
            let s0 = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
    }

    fn db(p: f64) -> f64 {
        10.0 * p.max(1e-12).log10()
    }

    struct Run {
        mixer: Mixer,
        ids: Vec<MemberId>,
        heard: Vec<Vec<i16>>,
        t0: Instant,
        tick: usize,
    }

    impl Run {
        fn new(codecs: &[Codec]) -> Run {
            let mut mixer = Mixer::new();
            let room = mixer.open_room();
            let ids = codecs
                .iter()
                .map(|&c| mixer.add_member(room, c).unwrap())
                .collect();
            Run {
                mixer,
                ids,
                heard: vec![Vec::new(); codecs.len()],
                t0: Instant::now(),
                tick: 0,
            }
        }

        /// One tick: member i sends `frames[i]` (None: its packet is lost).
        fn step(&mut self, frames: &[Option<[i16; FRAME]>]) {
            let now = self.t0 + Duration::from_millis(20 * self.tick as u64);
            for (k, f) in frames.iter().enumerate() {
                if let Some(f) = f {
                    let id = self.ids[k];
                    let codec = self.mixer.info(id).unwrap().codec;
                    let mut enc = [0u8; FRAME];
                    codec.g711().unwrap().encode(f, &mut enc);
                    self.mixer.push(id, (self.tick * FRAME) as u32, &enc, now);
                }
            }
            self.mixer.tick();
            for (k, &id) in self.ids.iter().enumerate() {
                let mut pcm = [0i16; FRAME];
                let law = self.mixer.info(id).unwrap().codec.g711().unwrap();
                match self.mixer.output(id) {
                    Some(Output::Encoded(out)) => law.decode(out, &mut pcm),
                    Some(Output::Pcm(_)) => panic!("G.711 members get payloads"),
                    None => {}
                }
                self.heard[k].extend_from_slice(&pcm);
            }
            self.tick += 1;
        }
    }

    #[test]
    fn everyone_hears_the_others_and_not_themselves() {
        let mut run = Run::new(&[Codec::Pcmu, Codec::Pcma, Codec::Pcmu]);
        for t in 0..100 {
            let frames: Vec<_> = FREQS
                .iter()
                .map(|&f| Some(sine(f, 6000.0, t * FRAME)))
                .collect();
            run.step(&frames);
        }
        for (k, heard) in run.heard.iter().enumerate() {
            let tail = &heard[20 * FRAME..];
            let own = db(power(tail, FREQS[k]));
            for (j, &f) in FREQS.iter().enumerate() {
                if j != k {
                    let other = db(power(tail, f));
                    assert!(
                        other - own > 40.0,
                        "member {k}: {f} Hz at {other:.1} dB, own {} Hz at {own:.1} dB",
                        FREQS[k]
                    );
                }
            }
        }
    }

    #[test]
    fn a_full_scale_mix_saturates_instead_of_wrapping() {
        let mut run = Run::new(&[Codec::Pcmu, Codec::Pcmu, Codec::Pcmu, Codec::Pcmu]);
        let loud = [30000i16; FRAME];
        for _ in 0..10 {
            run.step(&[Some(loud), Some(loud), Some(loud), None]);
        }
        // The silent fourth member hears 3 × 30000: clipped, still positive.
        let tail = &run.heard[3][5 * FRAME..];
        assert!(tail.iter().all(|&s| s > 30000), "{:?}", &tail[..8]);
        let tail = &run.heard[0][5 * FRAME..];
        assert!(tail.iter().all(|&s| s > 30000), "60000 clips, no wrap");
    }

    #[test]
    fn a_lost_packet_is_concealed_not_a_hole() {
        let mut run = Run::new(&[Codec::Pcmu, Codec::Pcmu]);
        for t in 0..40 {
            let f = (t != 20).then(|| sine(500.0, 8000.0, t * FRAME));
            run.step(&[f, None]);
        }
        let heard = &run.heard[1];
        // After the prebuffer, no 20 ms stretch of the talker's stream is silent.
        let start = heard.iter().position(|&s| s != 0).unwrap();
        for frame in heard[start..start + 30 * FRAME].chunks(FRAME) {
            let peak = frame.iter().map(|s| s.unsigned_abs()).max().unwrap();
            assert!(peak > 2000, "a hole in the audio: peak {peak}");
        }
        assert_eq!(run.mixer.info(run.ids[0]).unwrap().stats.lost, 1);
    }

    #[test]
    fn muted_members_are_not_heard_and_deaf_members_hear_nothing() {
        let mut run = Run::new(&[Codec::Pcmu, Codec::Pcmu, Codec::Pcmu]);
        run.mixer.set_muted(run.ids[0], true);
        run.mixer.set_deaf(run.ids[2], true);
        for t in 0..50 {
            let frames: Vec<_> = FREQS
                .iter()
                .map(|&f| Some(sine(f, 6000.0, t * FRAME)))
                .collect();
            run.step(&frames);
        }
        let tail = |k: usize| &run.heard[k][10 * FRAME..];
        // Member 1 hears member 2 but not the muted member 0.
        assert!(db(power(tail(1), FREQS[2])) - db(power(tail(1), FREQS[0])) > 40.0);
        // The deaf member hears nothing at all.
        assert!(tail(2).iter().all(|&s| s.abs() <= 8), "deaf hears silence");
        assert!(run.mixer.info(run.ids[0]).unwrap().muted);
    }

    #[test]
    fn held_members_are_neither_mixed_nor_sent_anything() {
        let mut run = Run::new(&[Codec::Pcmu, Codec::Pcmu]);
        run.mixer.set_held(run.ids[0], true);
        for t in 0..20 {
            run.step(&[Some(sine(500.0, 6000.0, t * FRAME)), None]);
        }
        assert_eq!(run.mixer.output(run.ids[0]), None);
        assert!(run.heard[1].iter().all(|&s| s.abs() <= 8));
    }

    #[test]
    fn a_prompt_reaches_only_its_member_and_silent_rooms_share_one_encode() {
        let mut run = Run::new(&[Codec::Pcmu, Codec::Pcmu]);
        let clip: Arc<[i16]> = (0..FRAME * 5)
            .map(|i| ((i % 40) as i16 - 20) * 500)
            .collect();
        run.mixer.play(run.ids[0], clip);
        run.step(&[None, None]);
        let a = ptr(run.mixer.output(run.ids[0]));
        let b = ptr(run.mixer.output(run.ids[1]));
        assert_ne!(a, b, "the prompted member has its own payload");
        for _ in 0..5 {
            run.step(&[None, None]);
        }
        assert!(!run.mixer.is_prompting(run.ids[0]));
        let a = ptr(run.mixer.output(run.ids[0]));
        let b = ptr(run.mixer.output(run.ids[1]));
        assert_eq!(a, b, "silent members share the room's payload");
        assert!(run.heard[1].iter().all(|&s| s.abs() <= 8));
        assert!(run.heard[0][..FRAME * 5].iter().any(|&s| s.abs() > 5000));
    }

    #[test]
    fn slots_are_reused_after_leaving() {
        let mut m = Mixer::new();
        let room = m.open_room();
        let a = m.add_member(room, Codec::Pcmu).unwrap();
        let b = m.add_member(room, Codec::Pcmu).unwrap();
        assert_eq!(m.remove_member(a), 1);
        let c = m.add_member(room, Codec::Pcma).unwrap();
        assert_eq!(c, a, "the slot is reused");
        assert_eq!(m.members(room), [b, c]);
        m.close_room(room);
        assert_eq!(m.info(b), None);
        assert!(m.add_member(room, Codec::Pcmu).is_none(), "closed");
    }

    /// A member on `codec` sending `tone` (at its codec's rate).
    struct Wide {
        id: MemberId,
        codec: Codec,
        enc: crate::media::codec::Encoder,
        heard: Vec<i16>,
    }

    fn tone_at(rate: u32, f: f64, n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                (5000.0 * (std::f64::consts::TAU * f * i as f64 / f64::from(rate)).sin()) as i16
            })
            .collect()
    }

    fn level(x: &[i16], rate: u32, f: f64) -> f64 {
        db(power_at(x, rate, f))
    }

    /// Opus, G.722 and PCMU members, each with its tone; `lose` drops the
    /// Opus member's packets at those ticks.
    fn wide_room(ticks: usize, lose: &[usize]) -> (Mixer, Vec<Wide>) {
        use crate::media::codec::{Encoder, OpusParams};
        let mut mixer = Mixer::new();
        let room = mixer.open_room();
        let fec = OpusParams {
            inband_fec: true,
            ..Default::default()
        };
        let mut members: Vec<Wide> = [Codec::Opus, Codec::G722, Codec::Pcmu]
            .into_iter()
            .map(|codec| Wide {
                id: mixer.add_member(room, codec).unwrap(),
                codec,
                enc: Encoder::new(codec, fec).unwrap(),
                heard: Vec::new(),
            })
            .collect();
        let tones: [f64; 3] = [6000.0, 2300.0, 1000.0];
        let t0 = Instant::now();
        let mut payload = Vec::new();
        for t in 0..ticks {
            let now = t0 + Duration::from_millis(20 * t as u64);
            for (k, m) in members.iter_mut().enumerate() {
                let n = m.codec.frame_samples();
                let f = tones[k].min(f64::from(m.codec.sample_rate()) * 0.4);
                m.enc
                    .encode(&tone_at(m.codec.sample_rate(), f, n, t * n), &mut payload)
                    .unwrap();
                if m.codec == Codec::Opus && lose.contains(&t) {
                    continue;
                }
                mixer.push(m.id, t as u32 * m.codec.frame_ts(), &payload, now);
            }
            mixer.tick();
            for m in &mut members {
                match mixer.output(m.id) {
                    // What the mixer gives the call to encode.
                    Some(Output::Pcm(pcm)) => m.heard.extend_from_slice(pcm),
                    Some(Output::Encoded(b)) => {
                        let mut out = [0i16; NARROW_FRAME];
                        m.codec.g711().unwrap().decode(b, &mut out);
                        m.heard.extend_from_slice(&out);
                    }
                    None => panic!("a member gets a frame every tick"),
                }
            }
        }
        (mixer, members)
    }

    #[test]
    fn wideband_members_hear_wideband_and_narrowband_hear_the_band_below_4_khz() {
        let (_, m) = wide_room(100, &[]);
        let tail = |k: usize| &m[k].heard[m[k].heard.len() / 2..];
        let heard = |k: usize, rate: u32, f: f64| level(tail(k), rate, f);
        // Opus hears G.722's 2.3 kHz and PCMU's 1 kHz, not its own 6 kHz.
        assert!(
            heard(0, 16_000, 2300.0) > 60.0,
            "{}",
            heard(0, 16_000, 2300.0)
        );
        assert!(
            heard(0, 16_000, 1000.0) > 60.0,
            "{}",
            heard(0, 16_000, 1000.0)
        );
        assert!(heard(0, 16_000, 6000.0) < heard(0, 16_000, 1000.0) - 30.0);
        // G.722 hears Opus's 6 kHz (and 1 kHz), not its own 2.3 kHz.
        assert!(
            heard(1, 16_000, 6000.0) > 60.0,
            "{}",
            heard(1, 16_000, 6000.0)
        );
        assert!(heard(1, 16_000, 1000.0) > 60.0);
        assert!(heard(1, 16_000, 2300.0) < heard(1, 16_000, 6000.0) - 30.0);
        // PCMU hears 2.3 kHz, not its own 1 kHz; the 6 kHz is not folded
        // into its band (it would land on 2 kHz).
        assert!(heard(2, 8000, 2300.0) > 60.0, "{}", heard(2, 8000, 2300.0));
        assert!(heard(2, 8000, 1000.0) < heard(2, 8000, 2300.0) - 30.0);
        assert!(heard(2, 8000, 2000.0) < heard(2, 8000, 2300.0) - 40.0);
    }

    #[test]
    fn a_lost_opus_packet_comes_back_from_the_next_ones_fec() {
        let (mixer, m) = wide_room(60, &[30]);
        let stats = mixer.info(m[0].id).unwrap().stats;
        // The frame was pushed from FEC before its slot played: not lost.
        assert_eq!(stats.lost, 0, "{stats:?}");
        assert_eq!(stats.received, 60, "59 packets and one recovered frame");
    }

    #[test]
    fn two_lost_opus_packets_are_concealed_by_libopus_then_fec() {
        let (mixer, m) = wide_room(60, &[30, 31]);
        let stats = mixer.info(m[0].id).unwrap().stats;
        assert_eq!(stats.lost, 0, "{stats:?}");
        assert_eq!(
            stats.received, 60,
            "58 packets, one concealed, one recovered"
        );
        // The member's voice goes on through the gap: others hear 6 kHz in
        // every frame.
        let heard = &m[1].heard;
        for frame in heard[29 * 320..34 * 320].chunks(320) {
            assert!(
                level(frame, 16_000, 6000.0) > 50.0,
                "{}",
                level(frame, 16_000, 6000.0)
            );
        }
    }

    #[test]
    fn an_opus_sender_that_starts_again_behind_is_heard_late_packets_are_not() {
        use crate::media::codec::{Encoder, OpusParams};
        let mut mixer = Mixer::new();
        let room = mixer.open_room();
        let id = mixer.add_member(room, Codec::Opus).unwrap();
        let mut enc = Encoder::new(Codec::Opus, OpusParams::default()).unwrap();
        let mut p = Vec::new();
        let t0 = Instant::now();
        let mut push = |mixer: &mut Mixer, ts: u32, k: usize| {
            enc.encode(&tone_at(16_000, 440.0, 320, k * 320), &mut p)
                .unwrap();
            mixer.push(id, ts, &p, t0 + Duration::from_millis(20 * k as u64));
        };
        let base = 1_000_000_000u32;
        for k in 0..5 {
            push(&mut mixer, base + k as u32 * 960, k);
        }
        // A repeat of the third packet is late: not decoded, not stored.
        push(&mut mixer, base + 2 * 960, 5);
        assert_eq!(mixer.info(id).unwrap().stats.received, 5);
        // The sender starts again a long way behind (a new SSRC after a
        // transfer): heard again at once.
        for k in 0..3 {
            push(&mut mixer, 1000 + k as u32 * 960, 6 + k);
        }
        assert_eq!(mixer.info(id).unwrap().stats.received, 8);
    }

    #[test]
    fn an_opus_packet_of_40_ms_fills_two_slots() {
        use crate::media::codec::{Encoder, OpusParams};
        let mut mixer = Mixer::new();
        let room = mixer.open_room();
        let id = mixer.add_member(room, Codec::Opus).unwrap();
        // Two 20 ms frames in one packet (RFC 6716 code 2: TOC | 2, the
        // first frame's length, both frames).
        let mut enc = Encoder::new(Codec::Opus, OpusParams::default()).unwrap();
        let mut a = Vec::new();
        enc.encode(&tone_at(16_000, 440.0, 320, 0), &mut a).unwrap();
        let mut b = Vec::new();
        enc.encode(&tone_at(16_000, 440.0, 320, 320), &mut b)
            .unwrap();
        assert_eq!(a[0], b[0], "one configuration for both frames");
        assert!(a.len() - 1 < 252);
        let mut packet = vec![a[0] | 2, (a.len() - 1) as u8];
        packet.extend_from_slice(&a[1..]);
        packet.extend_from_slice(&b[1..]);
        mixer.push(id, 0, &packet, Instant::now());
        assert_eq!(mixer.info(id).unwrap().stats.received, 2);
    }
}
