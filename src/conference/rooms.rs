//! The room rules of a media thread: seating a call (opening its room,
//! the announcements, the cap), leaving (closing an empty room), member
//! controls, clips played to a room or a member, and the listing.

use std::sync::Arc;

use tracing::{info, warn};

use super::shard::{Seat, Shard};
use super::{Audience, Control, JoinError, JoinRequest, MemberStatus, Notice, Quality, RoomStatus};
use crate::events::{Event, Events, QualityState};
use crate::media::mixer::MemberId;

impl Shard {
    /// Seat the call in slot `index` in its room, opening the room if needed.
    pub(super) fn seat(&mut self, index: usize, req: JoinRequest) -> Result<(), JoinError> {
        let Some(Some(slot)) = self.legs.get_mut(index) else {
            return Err(JoinError::Stopped);
        };
        let room = match self.rooms.get(&req.room) {
            Some(&room) => {
                if self.locked.contains(&req.room) {
                    return Err(JoinError::Locked);
                }
                if self.mixer.members(room).len() >= self.limits.max_members {
                    return Err(JoinError::Full);
                }
                room
            }
            None => {
                let room = self.mixer.open_room();
                self.rooms.insert(req.room.clone(), room);
                info!(room = %req.room, "room opened");
                self.events.publish(Event::RoomOpened {
                    room: req.room.clone(),
                });
                room
            }
        };
        let others: Vec<MemberId> = self.mixer.members(room).to_vec();
        let params = *slot.media.params();
        let id = self
            .mixer
            .add_member(room, params.codec)
            .ok_or(JoinError::Stopped)?;
        slot.media.seated();
        self.mixer.set_held(id, !params.send);
        self.mixer.play(id, self.clips.joined.clone());
        if others.is_empty() {
            self.mixer.play(id, self.clips.only_participant.clone());
        }
        if let Some(tone) = &self.clips.join_tone {
            for other in others {
                self.mixer.play(other, tone.clone());
            }
        }
        info!(room = %req.room, call = %req.call, direct = req.direct, "member joined");
        let joined = Event::MemberJoined {
            call: req.call.clone(),
            sip_call_id: req.sip_call_id.clone(),
            room: req.room.clone(),
            from: req.from.clone(),
            to: req.to.clone(),
            direction: req.direction,
            direct: req.direct,
        };
        slot.seat = Some(Seat {
            id,
            room: req.room,
            call: req.call,
            sip_call_id: req.sip_call_id,
            from: req.from,
            to: req.to,
            direction: req.direction,
            notices: req.notices,
            quality: Quality::default(),
        });
        self.members.insert(id, index);
        self.count();
        // Published once the member is seated and counted: an observer
        // that acts on it finds the member listed.
        self.events.publish(joined);
        Ok(())
    }

    /// The member leaves for `reason`; an empty room closes.
    pub(super) fn unseat(&mut self, seat: Seat, reason: &'static str) {
        self.members.remove(&seat.id);
        let left = self.mixer.remove_member(seat.id);
        info!(room = %seat.room, call = %seat.call, reason, "member left");
        self.events.publish(Event::MemberLeft {
            call: seat.call,
            room: seat.room.clone(),
            reason,
        });
        let Some(&room) = self.rooms.get(&seat.room) else {
            warn!(room = %seat.room, "member of an unknown room");
            return;
        };
        if left == 0 {
            self.mixer.close_room(room);
            self.rooms.remove(&seat.room);
            self.locked.remove(&seat.room);
            if self.members.is_empty() {
                self.members.shrink_to_fit();
                self.rooms.shrink_to_fit();
            }
            info!(room = %seat.room, "room closed");
            self.events.publish(Event::RoomClosed { room: seat.room });
        } else if let Some(tone) = &self.clips.leave_tone {
            for i in 0..left {
                let other = self.mixer.members(room)[i];
                self.mixer.play(other, tone.clone());
            }
        }
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
        if !self.rooms.contains_key(room) {
            return false;
        }
        let changed = if on {
            self.locked.insert(room.to_owned())
        } else {
            self.locked.remove(room)
        };
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
                .map(|&r| self.mixer.members(r).to_vec())
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
            .map(|(name, &room)| RoomStatus {
                room: name.clone(),
                locked: self.locked.contains(name),
                members: self
                    .mixer
                    .members(room)
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
                            codec: info.codec,
                            talking: info.talking,
                            muted: info.muted,
                            deaf: info.deaf,
                            held: info.held,
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
