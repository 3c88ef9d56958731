//! `tls`: the certificate, key and client authentication of a block's `tls://` and `https://`
//! listeners (plugin/tls). Configures the server only; it adds no handler.

mod setup;

pub use setup::parse;

use crate::corefile::{Error, Loc};
pub use crate::tls::{ClientAuth, ServerTls as TlsConfig};

/// Directive name.
pub const NAME: &str = "tls";

/// Loads the block's certificate and key (build phase): the rustls configuration every
/// encrypted listener of the block starts from (each sets its own ALPN).
pub fn server_config(c: &TlsConfig, loc: Option<Loc>) -> Result<rustls::ServerConfig, Error> {
    crate::tls::server_config(c).map_err(|e| Error::plugin(NAME, loc, Error::plain(None, e)))
}
