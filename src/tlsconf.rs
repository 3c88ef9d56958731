//! rustls client configurations from PEM files for plugins that talk TLS to a backend (`etcd`):
//! a thin form of [`crate::tls::client_config`], which `forward` and the server transports
//! share.

use std::path::Path;
use std::sync::Arc;

/// A client configuration: `ca`'s certificates as roots (the system's when `None`) and, with
/// `cert` and `key`, a client certificate. TLS 1.2 or newer.
pub fn client_config(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let cert_key = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        _ => None,
    };
    crate::tls::client_config(ca, cert_key)
}
