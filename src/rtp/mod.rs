//! RTP: packets and the media clock.

pub mod pacer;
pub mod packet;
