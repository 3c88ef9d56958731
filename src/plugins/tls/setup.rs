//! `tls CERT KEY [CA] { client_auth nocert|request|require|verify_if_given|require_and_verify;
//! keylog FILE }`

use std::path::PathBuf;

use super::{ClientAuth, TlsConfig};
use crate::corefile::{Dispenser, Error};

/// Parses the `tls` directive (the files are read at build time).
pub fn parse(d: &mut Dispenser<'_>) -> Result<TlsConfig, Error> {
    let mut out = None;
    while d.next() {
        let args = d.remaining_args();
        if args.is_empty() {
            return Err(d.err(
                "certificates from ACME ('tls { acme … }') are not built in clusterdns: give 'tls CERT KEY [CA]'",
            ));
        }
        if args.len() > 3 || args.len() < 2 {
            return Err(d.arg_err());
        }
        let mut client_auth = ClientAuth::NoCert;
        let mut keylog = None;
        while d.next_block() {
            match d.val() {
                "client_auth" => {
                    let a = d.single_arg()?;
                    client_auth = match a.as_str() {
                        "nocert" => ClientAuth::NoCert,
                        "request" => ClientAuth::Request,
                        "require" => ClientAuth::Require,
                        "verify_if_given" => ClientAuth::VerifyIfGiven,
                        "require_and_verify" => ClientAuth::RequireAndVerify,
                        other => {
                            return Err(d.err(format!("unknown authentication type '{other}'")));
                        }
                    };
                }
                "keylog" => keylog = Some(PathBuf::from(d.single_arg()?)),
                other => return Err(d.err(format!("unknown option '{other}'"))),
            }
        }
        out = Some(TlsConfig {
            cert: PathBuf::from(&args[0]),
            key: PathBuf::from(&args[1]),
            ca: args.get(2).map(PathBuf::from),
            client_auth,
            keylog,
            versions: crate::tls::Versions::Both,
        });
    }
    out.ok_or_else(|| d.arg_err())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<TlsConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    /// CoreDNS's plugin/tls/tls_test.go TestTLS and TestTLSClientAuthentication.
    #[test]
    fn table() {
        let ok: &[(&str, ClientAuth)] = &[
            (
                "tls test_cert.pem test_key.pem test_ca.pem",
                ClientAuth::NoCert,
            ),
            ("tls test_cert.pem test_key.pem", ClientAuth::NoCert),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth nocert\n}",
                ClientAuth::NoCert,
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth request\n}",
                ClientAuth::Request,
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth require\n}",
                ClientAuth::Require,
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth verify_if_given\n}",
                ClientAuth::VerifyIfGiven,
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth require_and_verify\n}",
                ClientAuth::RequireAndVerify,
            ),
        ];
        for (input, want) in ok {
            let c = run(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(c.client_auth, *want, "{input}");
            assert_eq!(c.cert, PathBuf::from("test_cert.pem"));
            assert_eq!(c.key, PathBuf::from("test_key.pem"));
        }
        let c = run("tls c.pem k.pem ca.pem {\nkeylog /tmp/tls.log\n}").unwrap();
        assert_eq!(c.ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(c.keylog, Some(PathBuf::from("/tmp/tls.log")));
        assert_eq!(run("tls c.pem k.pem").unwrap().ca, None);

        let bad: &[(&str, &str)] = &[
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nunknown\n}",
                "unknown option 'unknown'",
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth\n}",
                "Wrong argument",
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth none bogus\n}",
                "Wrong argument",
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nclient_auth bogus\n}",
                "unknown authentication type 'bogus'",
            ),
            (
                "tls test_cert.pem test_key.pem test_ca.pem {\nkeylog\n}",
                "Wrong argument",
            ),
            ("tls test_cert.pem", "Wrong argument count"),
            ("tls a b c d", "Wrong argument count"),
            ("tls", "ACME"),
            ("tls {\n acme dns.example.org\n}", "not built in clusterdns"),
        ];
        for (input, want) in bad {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }
}
