//! RTP: packets and the media clock.

pub mod learning;
pub mod pacer;
pub mod packet;
pub mod rtcp;
pub mod sdes;
pub mod srtp;
