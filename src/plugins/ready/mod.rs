//! `ready`: `/ready` answers 200 once every plugin that reports readiness is ready.

mod readiness;
mod setup;

pub use readiness::{Probe, Readiness};
pub use setup::{Monitor, ReadyConfig, parse};

/// Directive name.
pub const NAME: &str = "ready";
