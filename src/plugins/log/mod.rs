//! `log`: one line per query in CoreDNS's common log format (plugin/log).

mod handler;
mod setup;

pub(crate) use handler::render;
pub use handler::{Log, ResponseType, rcode_from_name, rcode_name};
pub use setup::{COMBINED, COMMON, Classes, LogConfig, Rule, parse};

/// Directive name.
pub const NAME: &str = "log";
