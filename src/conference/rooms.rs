//! The room rules of a media thread: seating a call (opening its room,
//! the announcements, the cap, waiting for a moderator), leaving (closing
//! an empty room, ending one whose moderator left), member controls and
//! keypad actions, clips played to a room or a member, and the listing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use super::shard::{Seat, Shard};
use super::{
    Audience, Control, JoinError, JoinRequest, KeyReply, MemberStatus, Notice, Quality, RoomRules,
    RoomStatus,
};
use crate::events::{Event, Events, QualityState};
use crate::ivr::keypad::KeyAction;
use crate::media::codec::ROOM_FRAME as FRAME;
use crate::media::mixer::{MemberId, RoomId, Volume};
use crate::media::recorder::Recorder;

/// A room open on this thread.
pub(super) struct RoomState {
    pub(super) id: RoomId,
    pub(super) rules: RoomRules,
    pub(super) opened: Instant,
    /// Closed to newcomers.
    pub(super) locked: bool,
    /// Moderators seated now.
    pub(super) moderators: usize,
    /// A moderator muted everyone else.
    pub(super) muted_all: bool,
    /// Where its mix is being written.
    pub(super) recording: Option<Box<Recorder>>,
    /// `end_room` is letting its members go: no rule fires on their way out.
    pub(super) ending: bool,
}

impl RoomState {
    fn waiting(&self) -> bool {
        self.rules.wait_for_moderator && self.moderators == 0
    }
}

impl Shard {
    /// Seat the call in slot `index` in its room, opening the room if
    /// needed; returns how many others were there.
    pub(super) fn seat(&mut self, index: usize, req: JoinRequest) -> Result<usize, JoinError> {
        let Some(Some(slot)) = self.legs.get_mut(index) else {
            return Err(JoinError::Stopped);
        };
        let state = match self.rooms.get_mut(&req.room) {
            Some(state) => {
                if state.locked {
                    return Err(JoinError::Locked);
                }
                if self.mixer.members(state.id).len() >= self.limits.max_members {
                    return Err(JoinError::Full);
                }
                state
            }
            None => {
                let id = self.mixer.open_room();
                info!(room = %req.room, "room opened");
                self.events.publish(Event::RoomOpened {
                    room: req.room.clone(),
                });
                self.rooms.entry(req.room.clone()).or_insert(RoomState {
                    id,
                    rules: req.rules,
                    opened: Instant::now(),
                    locked: false,
                    moderators: 0,
                    muted_all: false,
                    recording: None,
                    ending: false,
                })
            }
        };
        let room = state.id;
        let others: Vec<MemberId> = self.mixer.members(room).to_vec();
        let params = *slot.media.params();
        let id = self
            .mixer
            .add_member(room, params.codec)
            .ok_or(JoinError::Stopped)?;
        slot.media.seated();
        self.mixer.set_held(id, !params.send);
        // A bridge carries the owner's room, announcements and all.
        let quiet = state.rules.bridge;
        if !quiet {
            self.mixer.play(id, self.clips.joined.clone());
        }
        let was_waiting = state.waiting();
        if req.moderator {
            state.moderators += 1;
        } else if state.muted_all {
            self.mixer.set_room_muted(id, true);
        }
        if state.waiting() {
            if !was_waiting || others.is_empty() {
                self.mixer
                    .set_music(room, Some(self.clips.hold_music.clone()));
            }
            self.mixer
                .play(id, self.clips.waiting_for_moderator.clone());
        } else {
            if was_waiting {
                self.mixer.set_music(room, None);
            }
            if others.is_empty() && !quiet {
                self.mixer.play(id, self.clips.only_participant.clone());
            }
        }
        let said = |name: &Arc<[i16]>, after: &Arc<[i16]>| -> Arc<[i16]> {
            name.iter().chain(after.iter()).copied().collect()
        };
        let greeting = req.name.as_ref().map(|n| said(n, &self.clips.has_joined));
        let farewell = req.name.as_ref().map(|n| said(n, &self.clips.has_left));
        if let Some(clip) = greeting
            .as_ref()
            .or(self.clips.join_tone.as_ref())
            .filter(|_| !quiet)
        {
            for &other in &others {
                self.mixer.play(other, clip.clone());
            }
        }
        info!(room = %req.room, call = %req.call, direct = req.direct, moderator = req.moderator, "member joined");
        let joined = Event::MemberJoined {
            call: req.call.clone(),
            sip_call_id: req.sip_call_id.clone(),
            room: req.room.clone(),
            from: req.from.clone(),
            to: req.to.clone(),
            direction: req.direction,
            direct: req.direct,
            moderator: req.moderator,
        };
        self.joins += 1;
        slot.seat = Some(Seat {
            id,
            room: req.room,
            call: req.call,
            sip_call_id: req.sip_call_id,
            from: req.from,
            to: req.to,
            direction: req.direction,
            moderator: req.moderator,
            order: self.joins,
            kicked: false,
            farewell,
            notices: req.notices,
            quality: Quality::default(),
        });
        self.members.insert(id, index);
        self.count();
        // Published once the member is seated and counted: an observer
        // that acts on it finds the member listed.
        self.events.publish(joined);
        Ok(others.len())
    }

    /// The member leaves for `reason`; an empty room closes, and a room
    /// whose last moderator left ends or waits again, as its rules say.
    pub(super) fn unseat(&mut self, seat: Seat, reason: &'static str) {
        self.members.remove(&seat.id);
        let left = self.mixer.remove_member(seat.id);
        info!(room = %seat.room, call = %seat.call, reason, "member left");
        self.events.publish(Event::MemberLeft {
            call: seat.call,
            room: seat.room.clone(),
            reason,
        });
        let Some(state) = self.rooms.get_mut(&seat.room) else {
            warn!(room = %seat.room, "member of an unknown room");
            return;
        };
        let room = state.id;
        if left == 0 {
            self.mixer.close_room(room);
            // Its recording, if any, ends with it.
            if self
                .rooms
                .remove(&seat.room)
                .is_some_and(|s| s.recording.is_some())
            {
                self.recorded_rooms -= 1;
            }
            if self.members.is_empty() {
                self.members.shrink_to_fit();
                self.rooms.shrink_to_fit();
            }
            info!(room = %seat.room, "room closed");
            self.events.publish(Event::RoomClosed { room: seat.room });
            return;
        }
        if state.ending {
            return;
        }
        if state.rules.bridge {
            // One side of a bridge went: the other has nobody to talk to.
            self.end_room(&seat.room, "bridge_ended");
            return;
        }
        if seat.moderator {
            state.moderators -= 1;
            if state.moderators == 0 && state.rules.end_with_moderator {
                info!(room = %seat.room, "last moderator left: room ends");
                self.end_room(&seat.room, "moderator_left");
                return;
            }
            if state.waiting() {
                self.mixer
                    .set_music(room, Some(self.clips.hold_music.clone()));
            }
        }
        if let Some(clip) = seat.farewell.as_ref().or(self.clips.leave_tone.as_ref()) {
            for i in 0..left {
                let other = self.mixer.members(room)[i];
                self.mixer.play(other, clip.clone());
            }
        }
    }

    /// End a room: every member is let go (and told, so its call says so
    /// and hangs up); the room closes with the last.
    pub(super) fn end_room(&mut self, room: &str, reason: &'static str) {
        let Some(state) = self.rooms.get_mut(room).filter(|s| !s.ending) else {
            return;
        };
        state.ending = true;
        let members: Vec<MemberId> = self.mixer.members(state.id).to_vec();
        self.events.publish(Event::RoomEnded {
            room: room.to_owned(),
            reason,
        });
        for id in members {
            let Some(&index) = self.members.get(&id) else {
                continue;
            };
            let Some(seat) = self
                .legs
                .get_mut(index)
                .and_then(Option::as_mut)
                .and_then(|slot| slot.seat.take())
            else {
                continue;
            };
            seat.notices.send(Notice::RoomEnded).ok();
            self.unseat(seat, "room_ended");
        }
    }

    /// Rooms past `rooms.max_duration_secs` end.
    pub(super) fn expire_rooms(&mut self, now: Instant) {
        let due: Vec<String> = self
            .rooms
            .iter()
            .filter(|(_, s)| {
                s.rules
                    .max_duration
                    .is_some_and(|d| now.saturating_duration_since(s.opened) >= d)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for room in due {
            info!(%room, "room time is up");
            self.end_room(&room, "max_duration");
        }
    }

    /// A keypad action of the member in slot `index`.
    pub(super) fn key(&mut self, index: usize, action: KeyAction) -> KeyReply {
        let Some((id, room, moderator, call)) = self
            .legs
            .get(index)
            .and_then(Option::as_ref)
            .and_then(|slot| slot.seat.as_ref())
            .map(|s| (s.id, s.room.clone(), s.moderator, s.call.clone()))
        else {
            return KeyReply::NotSeated;
        };
        if action.moderator_only() && !moderator {
            self.mixer.play(id, self.clips.moderator_only.clone());
            return self.keyed(&call, &room, action, KeyReply::NotAllowed);
        }
        let reply = match action {
            KeyAction::Mute => {
                let on = !self.mixer.own_mute(id);
                self.mixer.set_muted(id, on);
                let clip = if on {
                    &self.clips.muted
                } else {
                    &self.clips.unmuted
                };
                self.mixer.play(id, clip.clone());
                KeyReply::Done
            }
            KeyAction::ListenDown
            | KeyAction::ListenUp
            | KeyAction::TalkDown
            | KeyAction::TalkUp => {
                let which = match action {
                    KeyAction::ListenDown | KeyAction::ListenUp => Volume::Listen,
                    _ => Volume::Talk,
                };
                let up = matches!(action, KeyAction::ListenUp | KeyAction::TalkUp);
                self.mixer.step_volume(id, which, up);
                let clip = if up {
                    &self.clips.louder
                } else {
                    &self.clips.quieter
                };
                self.mixer.play(id, clip.clone());
                KeyReply::Done
            }
            KeyAction::Count => {
                let others = self
                    .rooms
                    .get(&room)
                    .map_or(0, |s| self.mixer.members(s.id).len().saturating_sub(1));
                KeyReply::Others(others)
            }
            KeyAction::Leave => {
                let seat = self
                    .legs
                    .get_mut(index)
                    .and_then(Option::as_mut)
                    .and_then(|slot| slot.seat.take());
                self.keyed(&call, &room, action, KeyReply::Left);
                if let Some(seat) = seat {
                    self.unseat(seat, "left");
                }
                return KeyReply::Left;
            }
            KeyAction::Lock => {
                let on = !self.rooms.get(&room).is_some_and(|s| s.locked);
                self.lock(&room, on);
                let clip = if on {
                    &self.clips.room_locked
                } else {
                    &self.clips.room_unlocked
                };
                self.mixer.play(id, clip.clone());
                KeyReply::Done
            }
            KeyAction::MuteAll => self.mute_all(&room, id),
            KeyAction::KickLast => {
                let last = self
                    .legs
                    .iter()
                    .flatten()
                    .filter_map(|slot| slot.seat.as_ref())
                    .filter(|s| s.room == room && !s.moderator && s.id != id && !s.kicked)
                    .max_by_key(|s| s.order)
                    .map(|s| s.id);
                let seat = last
                    .and_then(|m| self.members.get(&m).copied())
                    .and_then(|i| self.legs.get_mut(i))
                    .and_then(Option::as_mut)
                    .and_then(|slot| slot.seat.as_mut());
                if let Some(seat) = seat {
                    seat.kicked = true;
                    info!(%room, call = %seat.call, by = %call, "member removed from the keypad");
                    seat.notices.send(Notice::Kicked).ok();
                    self.mixer.play(id, self.clips.member_removed.clone());
                }
                KeyReply::Done
            }
        };
        self.keyed(&call, &room, action, reply)
    }

    /// Publish a keypad action's outcome, and pass the reply on.
    fn keyed(&self, call: &str, room: &str, action: KeyAction, reply: KeyReply) -> KeyReply {
        info!(%room, %call, action = action.name(), ?reply, "keypad");
        self.events.publish(Event::MemberKey {
            call: call.to_owned(),
            room: room.to_owned(),
            action: action.name(),
            allowed: reply != KeyReply::NotAllowed,
        });
        reply
    }

    /// Whether `room` is open here (and whether it is recorded).
    pub(super) fn recorded(&self, room: &str) -> Option<bool> {
        self.rooms.get(room).map(|s| s.recording.is_some())
    }

    /// Give `room` its recorder; handed back when there is no such room or
    /// it is recorded already.
    pub(super) fn record(
        &mut self,
        room: &str,
        recorder: Box<Recorder>,
    ) -> Result<PathBuf, Box<Recorder>> {
        match self.rooms.get_mut(room) {
            Some(state) if state.recording.is_none() => {
                let path = recorder.path().to_owned();
                state.recording = Some(recorder);
                self.recorded_rooms += 1;
                info!(room, path = %path.display(), "recording started");
                // Published before the recorder can end: started comes first.
                self.events.publish(Event::RecordingStarted {
                    room: room.to_owned(),
                    path: path.display().to_string(),
                });
                Ok(path)
            }
            _ => Err(recorder),
        }
    }

    /// Stop recording `room` (its writer finishes the file and reports).
    pub(super) fn stop_recording(&mut self, room: &str) -> Option<PathBuf> {
        let recorder = self.rooms.get_mut(room)?.recording.take()?;
        self.recorded_rooms -= 1;
        let path = recorder.path().to_owned();
        recorder.stop();
        Some(path)
    }

    /// This tick's mix of every recorded room, to its recorder; a recorder
    /// that cannot take it (its disk failed or fell behind) is let go, and
    /// reports why itself.
    pub(super) fn record_frame(&mut self) {
        if self.recorded_rooms == 0 {
            return;
        }
        let mut frame = [0i16; FRAME];
        for (name, state) in self.rooms.iter_mut() {
            let Some(recorder) = &mut state.recording else {
                continue;
            };
            if !self.mixer.room_mix(state.id, &mut frame) || recorder.push(&frame).is_err() {
                warn!(room = %name, "recording ended by its writer");
                state.recording = None;
                self.recorded_rooms -= 1;
            }
        }
    }

    /// A moderator mutes everyone but the moderators, or undoes it.
    fn mute_all(&mut self, room: &str, by: MemberId) -> KeyReply {
        let Some(state) = self.rooms.get_mut(room) else {
            return KeyReply::NotSeated;
        };
        state.muted_all = !state.muted_all;
        let on = state.muted_all;
        for slot in self.legs.iter().flatten() {
            if let Some(seat) = slot
                .seat
                .as_ref()
                .filter(|s| s.room == room && !s.moderator)
            {
                self.mixer.set_muted(seat.id, on);
            }
        }
        let clip = if on {
            &self.clips.all_muted
        } else {
            &self.clips.all_unmuted
        };
        self.mixer.play(by, clip.clone());
        KeyReply::Done
    }

    /// The seat of call `call`, if it is a member here.
    fn seat_of(&self, call: &str) -> Option<&Seat> {
        self.legs
            .iter()
            .flatten()
            .filter_map(|s| s.seat.as_ref())
            .find(|s| s.call == call)
    }

    /// Lock or unlock an open room; false if it is not open here.
    pub(super) fn lock(&mut self, room: &str, on: bool) -> bool {
        let Some(state) = self.rooms.get_mut(room) else {
            return false;
        };
        let changed = state.locked != on;
        state.locked = on;
        if changed {
            info!(room, locked = on, "room lock");
            self.events.publish(if on {
                Event::RoomLocked {
                    room: room.to_owned(),
                }
            } else {
                Event::RoomUnlocked {
                    room: room.to_owned(),
                }
            });
        }
        true
    }

    pub(super) fn control(&mut self, call: &str, control: Control) -> bool {
        let Some(seat) = self.seat_of(call) else {
            return false;
        };
        let id = seat.id;
        match control {
            Control::Mute(on) => self.mixer.set_muted(id, on),
            Control::Deaf(on) => self.mixer.set_deaf(id, on),
            Control::Kick => {
                seat.notices.send(Notice::Kicked).ok();
            }
        }
        true
    }

    pub(super) fn say(&mut self, audience: &Audience, clip: Arc<[i16]>) -> bool {
        let ids: Vec<MemberId> = match audience {
            Audience::Room(room) => self
                .rooms
                .get(room)
                .map(|r| self.mixer.members(r.id).to_vec())
                .unwrap_or_default(),
            Audience::Call(call) => self.seat_of(call).map(|s| s.id).into_iter().collect(),
        };
        for &id in &ids {
            self.mixer.play(id, clip.clone());
        }
        !ids.is_empty()
    }

    pub(super) fn list(&self) -> Vec<RoomStatus> {
        self.rooms
            .iter()
            .map(|(name, state)| RoomStatus {
                room: name.clone(),
                locked: state.locked,
                members: self
                    .mixer
                    .members(state.id)
                    .iter()
                    .filter_map(|id| {
                        let &index = self.members.get(id)?;
                        let seat = self.legs.get(index)?.as_ref()?.seat.as_ref()?;
                        let info = self.mixer.info(*id)?;
                        Some(MemberStatus {
                            call: seat.call.clone(),
                            sip_call_id: seat.sip_call_id.clone(),
                            direction: seat.direction,
                            from: seat.from.clone(),
                            to: seat.to.clone(),
                            moderator: seat.moderator,
                            codec: info.codec,
                            talking: info.talking,
                            muted: info.muted,
                            deaf: info.deaf,
                            held: info.held,
                            listen_db: info.listen_db,
                            talk_db: info.talk_db,
                            lost: info.stats.lost,
                            late: info.stats.late,
                            jitter_ms: info.jitter_ms,
                            quality: seat.quality,
                        })
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A member's latest line quality; an alarm change is logged and published.
pub(super) fn quality(
    seat: &mut Seat,
    quality: Quality,
    change: Option<QualityState>,
    events: &Events,
) {
    seat.quality = quality;
    if let (Some(state), Some(mos)) = (change, quality.mos) {
        info!(room = %seat.room, call = %seat.call, mos = format!("{mos:.2}"), ?state, "member quality");
        events.publish(Event::MemberQuality {
            call: seat.call.clone(),
            room: seat.room.clone(),
            mos: (mos * 100.0).round() / 100.0,
            state,
        });
    }
}
