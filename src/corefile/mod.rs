//! The Corefile: text → tokens → server blocks. Pure: no plugin knowledge, no sockets.
//!
//! Follows CoreDNS's caddy fork exactly (lexing, `import`, snippets, env substitution, error
//! texts); see `../shared/reference/coredns-behaviour.md` §1.

pub mod address;
pub mod dispenser;
pub mod error;
pub mod lexer;
pub mod parser;

pub use address::{Transport, ZoneAddr};
pub use dispenser::{Dispenser, parse_duration};
pub use error::{Error, ErrorKind, Loc};
pub use lexer::Token;
pub use parser::{Directive, Parsed, ServerBlock, parse};
