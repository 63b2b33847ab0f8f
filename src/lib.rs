//! confgate: a SIP conference gateway. Trunk calls are answered, asked for a
//! PIN and bridged into conference rooms.
//!
//! The protocol cores (SDP, RTP, DTMF, the call flow) are sans-IO state
//! machines; tokio and rsipstack live at the edges (`daemon`, `sip`).

pub mod call;
pub mod cluster;
pub mod conference;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dtmf;
pub mod events;
pub mod ivr;
pub mod logging;
pub mod media;
pub mod metrics;
pub mod rtp;
pub mod sip;
pub mod tts;
pub mod web;
