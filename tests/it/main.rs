//! Integration tests: one binary, one module per area.

mod bad_corefiles;
mod conformance;
mod corefile_examples;
mod daemons;
mod dns;
mod dnstap;
mod etcd;
mod file;
mod forward;
mod hostile;
mod kubernetes;
mod lifecycle;
mod real_corefiles;
mod transports;
mod util;
