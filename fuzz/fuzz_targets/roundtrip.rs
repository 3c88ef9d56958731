#![no_main]
//! Bytes as a name and type asked of the kubernetes plugin: its answer must decode to what was
//! encoded, and the server must send exactly it (see `clusterdns::fuzzing::roundtrip`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::roundtrip(data));
