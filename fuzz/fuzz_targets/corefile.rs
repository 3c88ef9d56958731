#![no_main]
//! Corefile bytes → parse and setup must not panic. Run: `cargo fuzz run corefile`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::corefile(data));
