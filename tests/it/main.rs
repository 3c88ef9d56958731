//! Integration tests: one binary, one module per area.

mod api_outage;
mod bad_corefiles;
mod client_addr;
mod conformance;
mod coredns_readmes;
mod coredns_test_corefiles;
mod corefile_examples;
mod corefiles_rewrite_dns64_loadbalance;
mod daemons;
mod dns;
mod dnstap;
mod etcd;
mod file;
mod file_transfer;
mod forward;
mod hostile;
mod kubernetes;
mod lifecycle;
mod log_coredns;
mod monitoring;
mod policy;
mod real_corefiles;
mod template;
mod transfer;
mod transports;
mod util;
