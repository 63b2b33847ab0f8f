//! SIP INFO bodies: the content type up to the first NUL, then the body.
#![no_main]

use confgate::dtmf::info::digit_from_info;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (kind, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"application/dtmf-relay"[..], data),
    };
    let kind = String::from_utf8_lossy(kind);
    if let Some(d) = digit_from_info(&kind, body) {
        assert!("0123456789*#ABCD".contains(d), "{d:?}");
    }
});
