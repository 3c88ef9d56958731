#![no_main]
//! Zone file bytes → parse, build and look up must not panic. Run: `cargo fuzz run zonefile`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::zonefile(data));
