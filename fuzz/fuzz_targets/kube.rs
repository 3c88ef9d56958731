#![no_main]
//! Bytes as a Kubernetes object into the store and the index; the updated index must answer
//! as one built afresh (see `clusterdns::fuzzing::kube`).
libfuzzer_sys::fuzz_target!(|data: &[u8]| clusterdns::fuzzing::kube(data));
