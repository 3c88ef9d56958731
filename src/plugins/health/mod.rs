//! `health`: `/health` answers 200 `OK` while the process runs; `lameduck` delays shutdown.

mod setup;

pub use setup::{HealthConfig, address_arg, check_http_addr, parse};

/// Directive name.
pub const NAME: &str = "health";
