//! Control socket input: bytes split into lines as a connection does, each
//! line parsed as a request.
#![no_main]

use confgate::control::lines::{Line, LineSplitter};
use confgate::control::protocol;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = protocol::parse(data);
    let mut lines = LineSplitter::new(4096);
    // Pushed in two parts: a line split across reads must come out whole.
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    lines.push(&data[..cut]);
    lines.push(&data[cut..]);
    while let Some(line) = lines.next_line() {
        if let Line::Complete(bytes) = line {
            let _ = protocol::parse(&bytes);
        }
    }
});
