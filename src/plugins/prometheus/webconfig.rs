//! `prometheus { tls CONFIGFILE }` (CoreDNS ≥ 1.12): the Prometheus exporter-toolkit web
//! configuration file, its `tls_server_config` part, turned into a rustls server configuration.
//! Paths in the file are relative to the file's directory, as in exporter-toolkit.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::tls::{ClientAuth, ServerTls, Versions};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfig {
    #[serde(default)]
    tls_server_config: Option<TlsServerConfig>,
    #[serde(default)]
    http_server_config: Option<serde_json::Value>,
    #[serde(default)]
    basic_auth_users: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsServerConfig {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: String,
    #[serde(default)]
    client_ca_file: String,
    #[serde(default)]
    min_version: String,
    #[serde(default)]
    max_version: String,
    #[serde(default)]
    cipher_suites: Option<serde_json::Value>,
    #[serde(default)]
    curve_preferences: Option<serde_json::Value>,
    #[serde(default)]
    prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    client_allowed_sans: Option<serde_json::Value>,
}

/// Reads a web configuration file: `Ok(None)` when it configures no TLS (exporter-toolkit then
/// serves plain HTTP).
pub fn load(path: &Path) -> Result<Option<ServerTls>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("TLS config file {}: {e}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("TLS config file {}: {e}", path.display()))
}

fn parse(text: &str, dir: &Path) -> Result<Option<ServerTls>, String> {
    let cfg: WebConfig = if text.trim().is_empty() {
        WebConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())?
    };
    if cfg.basic_auth_users.is_some() {
        return Err("basic_auth_users is not built in clusterdns".into());
    }
    if cfg.http_server_config.is_some() {
        return Err("http_server_config is not built in clusterdns".into());
    }
    let Some(t) = cfg.tls_server_config else {
        return Ok(None);
    };
    for (set, name) in [
        (t.cipher_suites.is_some(), "cipher_suites"),
        (t.curve_preferences.is_some(), "curve_preferences"),
        (
            t.prefer_server_cipher_suites.is_some(),
            "prefer_server_cipher_suites",
        ),
        (t.client_allowed_sans.is_some(), "client_allowed_sans"),
    ] {
        if set {
            return Err(format!(
                "{name} is not built in clusterdns (rustls chooses suites and curves)"
            ));
        }
    }
    if t.cert_file.is_empty() {
        return Err("missing cert_file".into());
    }
    if t.key_file.is_empty() {
        return Err("missing key_file".into());
    }
    let client_auth = match t.client_auth_type.as_str() {
        "" | "NoClientCert" => ClientAuth::NoCert,
        "RequestClientCert" => ClientAuth::Request,
        "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::Require,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
        other => return Err(format!("Invalid ClientAuth: {other}")),
    };
    let version = |v: &str| -> Result<u8, String> {
        match v {
            "" => Ok(0),
            // rustls speaks TLS 1.2 and 1.3 only: a lower minimum means 1.2.
            "TLS10" | "TLS11" | "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            other => Err(format!("unknown TLS version: {other}")),
        }
    };
    let versions = match (version(&t.min_version)?, version(&t.max_version)?) {
        (13, 12) => return Err("max_version must be greater than or equal to min_version".into()),
        (13, _) => Versions::Only13,
        (_, 12) => Versions::Only12,
        _ => Versions::Both,
    };
    let at = |p: &str| -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() { p } else { dir.join(p) }
    };
    Ok(Some(ServerTls {
        cert: at(&t.cert_file),
        key: at(&t.key_file),
        ca: (!t.client_ca_file.is_empty()).then(|| at(&t.client_ca_file)),
        client_auth,
        keylog: None,
        versions,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CoreDNS's plugin/metrics/test_data/configs and exporter-toolkit's checks.
    #[test]
    fn table() {
        let dir = Path::new("/etc/coredns");
        let ok = parse(
            "tls_server_config:\n  cert_file: \"../server.crt\"\n  key_file: \"/abs/server.key\"\n  client_auth_type: \"RequireAnyClientCert\"\n",
            dir,
        )
        .unwrap()
        .unwrap();
        assert_eq!(ok.cert, PathBuf::from("/etc/coredns/../server.crt"));
        assert_eq!(ok.key, PathBuf::from("/abs/server.key"));
        assert_eq!(ok.client_auth, ClientAuth::Require);
        let v = parse(
            "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.pem\n  min_version: TLS13\n",
            dir,
        )
        .unwrap()
        .unwrap();
        assert_eq!(v.client_auth, ClientAuth::VerifyIfGiven);
        assert_eq!(v.ca, Some(PathBuf::from("/etc/coredns/ca.pem")));
        assert_eq!(v.versions, Versions::Only13);
        // An empty file, or one without tls_server_config: plain HTTP.
        assert_eq!(parse("", dir).unwrap(), None);
        assert_eq!(parse("# nothing\n", dir).unwrap(), None);
        let bad: &[(&str, &str)] = &[
            (
                "tls_server_config:\n  cert_file: \"\"\n  key_file: \"../server.key\"\n",
                "missing cert_file",
            ),
            (
                "tls_server_config:\n  cert_file: \"../server.crt\"\n  key_file: \"\"\n",
                "missing key_file",
            ),
            ("hWkNKCp3fvIx3jKnsaBI\nTuEjdwNS8A2vYdFbiKqr\n", ""),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  client_auth_type: Bogus\n",
                "Invalid ClientAuth: Bogus",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS9\n",
                "unknown TLS version",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  min_version: TLS13\n  max_version: TLS12\n",
                "max_version",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                "cipher_suites is not built",
            ),
            (
                "tls_server_config:\n  cert_file: c\n  key_file: k\n  bogus: 1\n",
                "bogus",
            ),
            (
                "basic_auth_users:\n  alice: $2y$10$abc\n",
                "basic_auth_users is not built",
            ),
            ("other: 1\n", "other"),
        ];
        for (text, want) in bad {
            let e = parse(text, dir).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
