//! Configuration files: any text is loaded over the built-in configuration
//! and validated, or refused with an error that names where.
#![no_main]

use confgate::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml("fuzz.toml", text, &[]) {
        Ok(config) => {
            let _ = config.validate();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
