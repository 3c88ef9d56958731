//! `whoami`: answers every query with the client's address and port (plugin/whoami).

mod handler;
mod setup;

pub use handler::Whoami;
pub use setup::parse;

/// Directive name.
pub const NAME: &str = "whoami";
