//! Integration tests: one binary, one module per area.

mod bad_corefiles;
mod conformance;
mod corefile_examples;
mod dns;
mod forward;
mod hostile;
mod kubernetes;
mod lifecycle;
mod real_corefiles;
mod util;
