//! `timeouts`: the read, write and idle timeouts of a server's connection-oriented listeners,
//! and the queries served on one connection (plugin/timeouts). It adds no handler: the server
//! applies it to the listener's [`ConnLimits`](crate::server::ConnLimits).

mod setup;

pub use setup::{TimeoutsConfig, parse};

/// Directive name.
pub const NAME: &str = "timeouts";
