#![no_main]
//! DNS message bytes → the chain must not panic. Run: `cargo fuzz run message`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::message(data));
