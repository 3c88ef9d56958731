#![no_main]
//! Bytes as a Corefile: load, then build every plugin (see `clusterdns::fuzzing::corefile`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::corefile(data));
