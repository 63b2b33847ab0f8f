//! The SIP screen in front of rsipstack: any datagram gets a verdict, and
//! a reply it writes is a SIP response.
#![no_main]

use confgate::sip::guard::{screen, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Verdict::Reply(bytes) = screen(data) {
        assert!(bytes.starts_with(b"SIP/2.0 "), "a reply is a response");
        assert!(bytes.windows(4).any(|w| w == b"\r\n\r\n"), "with a head that ends");
    }
});
