//! `errors`: logs the errors the rest of the chain returns (plugin/errors).

mod handler;
mod setup;

pub use handler::Errors;
pub use setup::{Consolidate, ErrorsConfig, Level, parse};

/// Directive name.
pub const NAME: &str = "errors";
