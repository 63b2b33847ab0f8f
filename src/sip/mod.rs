//! The SIP edge. rsipstack (transactions, dialogs, transports) is used only
//! here; the rest of the daemon sees [`call::OfferedCall`] and
//! [`call::CallEvent`]. SDP offer/answer is ours and sans-IO.

pub mod call;
pub mod dial;
mod digest_names;
pub mod guard;
mod in_order;
pub mod register;
mod roots;
pub mod sdp;
mod transport;
pub mod ua;
