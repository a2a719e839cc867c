#![no_main]
use libfuzzer_sys::fuzz_target;

// TODO(owner): call the parser of untrusted bytes; it must never panic.
fuzz_target!(|data: &[u8]| {
    let _ = data;
});
