//! `bind`: the addresses a server block listens on (plugin/bind).

mod setup;

pub use setup::{BindConfig, parse};

/// Directive name.
pub const NAME: &str = "bind";
