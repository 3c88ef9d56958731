//! TLS material shared by the encrypted server transports (`tls://`, `https://`), the `tls` and
//! `prometheus` plugins and `forward`'s DNS-over-TLS upstreams: PEM files in, rustls
//! configurations out (ring provider, TLS 1.2 and 1.3, as CoreDNS's minimum of TLS 1.2).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// The crypto provider every configuration uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (a chain: leaf first).
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// The certificates of a CA bundle, or the system's roots when there is none.
pub fn roots(ca: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(ca) => {
            for cert in certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// A client configuration: the roots of `ca` (the system's when `None`), and a client
/// certificate when `cert_key` is given.
pub fn client_config(
    ca: Option<&Path>,
    cert_key: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca)?);
    let cfg = match cert_key {
        Some((cert, k)) => builder
            .with_client_auth_cert(certs(cert)?, key(k)?)
            .map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// Which client certificates a server asks for and how it checks them: Go's
/// `tls.ClientAuthType`, as the `tls` plugin's `client_auth` and the Prometheus web
/// configuration's `client_auth_type` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// `nocert` / `NoClientCert`: none asked for.
    #[default]
    NoCert,
    /// `request` / `RequestClientCert`: asked for, not required, not verified.
    Request,
    /// `require` / `RequireAnyClientCert`: required, not verified against a CA.
    Require,
    /// `verify_if_given` / `VerifyClientCertIfGiven`: not required; verified when sent.
    VerifyIfGiven,
    /// `require_and_verify` / `RequireAndVerifyClientCert`: required and verified.
    RequireAndVerify,
}

/// The TLS versions a server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Versions {
    /// TLS 1.2 and 1.3.
    #[default]
    Both,
    /// TLS 1.2 only.
    Only12,
    /// TLS 1.3 only.
    Only13,
}

/// A server certificate, its key, and how clients are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM).
    pub key: PathBuf,
    /// CA bundle that verifies client certificates (the system's roots when absent).
    pub ca: Option<PathBuf>,
    /// Client authentication policy.
    pub client_auth: ClientAuth,
    /// Where to append the TLS secrets in NSS key log format (debugging only).
    pub keylog: Option<PathBuf>,
    /// Protocol versions.
    pub versions: Versions,
}

/// Builds the server configuration of `t` (ALPN unset: each transport sets its own).
pub fn server_config(t: &ServerTls) -> Result<rustls::ServerConfig, String> {
    let chain = certs(&t.cert).map_err(|e| format!("could not load TLS cert: {e}"))?;
    let key = key(&t.key).map_err(|e| format!("could not load TLS cert: {e}"))?;
    let versions: &[&rustls::SupportedProtocolVersion] = match t.versions {
        Versions::Both => rustls::DEFAULT_VERSIONS,
        Versions::Only12 => &[&rustls::version::TLS12],
        Versions::Only13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let verifier: Option<Arc<dyn ClientCertVerifier>> = match t.client_auth {
        ClientAuth::NoCert => None,
        ClientAuth::Request | ClientAuth::Require => Some(Arc::new(AnyClientCert {
            mandatory: t.client_auth == ClientAuth::Require,
            provider: provider(),
        })),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            let roots = roots(t.ca.as_deref())?;
            if roots.is_empty() {
                return Err("no CA to verify client certificates with".into());
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let b = if t.client_auth == ClientAuth::VerifyIfGiven {
                b.allow_unauthenticated()
            } else {
                b
            };
            Some(b.build().map_err(|e| e.to_string())?)
        }
    };
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("could not load TLS cert: {e}"))?;
    if let Some(path) = &t.keylog {
        cfg.key_log = Arc::new(KeyLogFile::open(path)?);
    }
    Ok(cfg)
}

/// Go's `RequestClientCert`/`RequireAnyClientCert`: any certificate is taken, but the handshake
/// still proves the client holds its key.
#[derive(Debug)]
struct AnyClientCert {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The `keylog FILE` of the `tls` plugin: TLS secrets appended in NSS key log format.
struct KeyLogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl KeyLogFile {
    fn open(path: &Path) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("unable to write TLS Key Log to {:?}: {e}", path.display()))?;
        tracing::warn!(target: "plugin/tls", "Writing TLS Key Log to {:?}", path.display());
        Ok(Self {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }
}

impl fmt::Debug for KeyLogFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyLogFile({})", self.path.display())
    }
}

impl rustls::KeyLog for KeyLogFile {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let line = format!("{label} {} {}\n", hex(client_random), hex(secret));
        if let Ok(mut f) = self.file.lock() {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn server_configs() {
        let base = ServerTls {
            cert: fixture("dot.crt"),
            key: fixture("dot.key"),
            ca: Some(fixture("dot-ca.crt")),
            client_auth: ClientAuth::NoCert,
            keylog: None,
            versions: Versions::Both,
        };
        for auth in [
            ClientAuth::NoCert,
            ClientAuth::Request,
            ClientAuth::Require,
            ClientAuth::VerifyIfGiven,
            ClientAuth::RequireAndVerify,
        ] {
            let t = ServerTls {
                client_auth: auth,
                ..base.clone()
            };
            server_config(&t).unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        }
        let bad = [
            (
                ServerTls {
                    cert: fixture("missing.crt"),
                    ..base.clone()
                },
                "could not load TLS cert",
            ),
            (
                ServerTls {
                    key: fixture("dot.crt"),
                    ..base.clone()
                },
                "could not load TLS cert",
            ),
            (
                ServerTls {
                    ca: Some(fixture("dot.key")),
                    client_auth: ClientAuth::RequireAndVerify,
                    ..base.clone()
                },
                "no certificate found",
            ),
            (
                ServerTls {
                    keylog: Some(fixture("no/such/dir/keys.log")),
                    ..base.clone()
                },
                "unable to write TLS Key Log",
            ),
        ];
        for (t, want) in bad {
            let e = server_config(&t).unwrap_err();
            assert!(e.contains(want), "{t:?}: {e}");
        }
    }
}
