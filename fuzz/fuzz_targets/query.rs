#![no_main]
//! Bytes as a UDP datagram and as a TCP stream through a server with kubeadm's Corefile and
//! more; every reply checked (see `clusterdns::fuzzing::query`). Run: `fuzz/run.sh SECONDS`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::query(data));
