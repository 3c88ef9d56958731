//! `chaos [VERSION] [AUTHORS...]`: answers `CH TXT` queries for `version.bind`,
//! `version.server`, `authors.bind`, `hostname.bind` and `id.server` (plugin/chaos).

use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use rand::seq::SliceRandom;

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "chaos";

/// A parsed `chaos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChaosConfig {
    /// `version.bind`/`version.server` (default `clusterdns-VERSION`).
    pub version: String,
    /// `authors.bind`, sorted and without duplicates.
    pub authors: Vec<String>,
}

/// A TXT string holds at most 255 bytes (CoreDNS cuts there too).
fn trim(s: &str) -> String {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Parses `chaos [VERSION] [AUTHORS...]`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<ChaosConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let mut c = ChaosConfig {
        version: format!("clusterdns-{}", env!("CARGO_PKG_VERSION")),
        authors: vec!["clusterdns authors".into()],
    };
    if let Some((version, authors)) = args.split_first() {
        c.version = trim(version);
        if !authors.is_empty() {
            let mut list: Vec<String> = authors.iter().map(|a| trim(a)).collect();
            list.sort();
            list.dedup();
            c.authors = list;
        }
    }
    if d.next_block() {
        return Err(d.err(format!("unknown property '{}'", d.val())));
    }
    Ok(c)
}

/// The handler.
pub struct Chaos {
    cfg: ChaosConfig,
    hostname: String,
}

impl Chaos {
    /// A handler for `cfg`.
    pub fn new(cfg: ChaosConfig) -> Self {
        Self {
            cfg,
            hostname: trim(&super::nsid::hostname()),
        }
    }
}

#[async_trait::async_trait]
impl Handler for Chaos {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        if req.qclass() != DNSClass::CH || req.qtype() != RecordType::TXT {
            return next.run(req).await;
        }
        let texts: Vec<&str> = match req.qname_lower() {
            "authors.bind." => {
                let mut a: Vec<&str> = self.cfg.authors.iter().map(String::as_str).collect();
                a.shuffle(&mut rand::rng());
                a
            }
            "version.bind." | "version.server." => vec![&self.cfg.version],
            "hostname.bind." | "id.server." => vec![&self.hostname],
            _ => return next.run(req).await,
        };
        let mut msg = req.reply();
        for t in texts {
            let mut r = Record::from_rdata(
                req.qname().clone(),
                0,
                RData::TXT(TXT::new(vec![t.to_string()])),
            );
            r.dns_class = DNSClass::CH;
            msg.add_answer(r);
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn run(s: &str) -> Result<ChaosConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn coredns_setup_table() {
        // CoreDNS's TestSetupChaos.
        let c = run("chaos v2").unwrap();
        assert_eq!(c.version, "v2");
        let c = run("chaos v3 \"Miek Gieben\"").unwrap();
        assert_eq!(
            (c.version.as_str(), c.authors[0].as_str()),
            ("v3", "Miek Gieben")
        );
        let e = run("chaos v2 {\n unknown\n}").unwrap_err().to_string();
        assert!(e.contains("unknown property"), "{e}");
        // Defaults, sorting, de-duplication, the 255-byte cut.
        assert!(run("chaos").unwrap().version.starts_with("clusterdns-"));
        let c = run("chaos v b a b").unwrap();
        assert_eq!(c.authors, ["a", "b"]);
        assert_eq!(
            run(&format!("chaos {}", "v".repeat(300)))
                .unwrap()
                .version
                .len(),
            255
        );
    }

    /// The next plugin: NOERROR, nothing.
    struct Empty;

    #[async_trait::async_trait]
    impl Handler for Empty {
        fn name(&self) -> &'static str {
            "next"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            Ok(Response::new(req.reply(), "next"))
        }
    }

    #[tokio::test]
    async fn coredns_chaos_table() {
        let chain = Chain::new(vec![
            Arc::new(Chaos::new(ChaosConfig {
                version: "CoreDNS-001".into(),
                authors: vec!["Miek Gieben".into()],
            })),
            Arc::new(Empty),
        ]);
        // CoreDNS's TestChaos: (name, type, expected first TXT or none).
        for (name, qtype, want) in [
            ("version.bind.", RecordType::TXT, Some("CoreDNS-001")),
            ("authors.bind.", RecordType::TXT, Some("Miek Gieben")),
            ("authors.bind.", RecordType::SRV, None),
            ("version.server.", RecordType::TXT, Some("CoreDNS-001")),
            ("other.bind.", RecordType::TXT, None),
        ] {
            let mut q = Query::query(Name::from_ascii(name).unwrap(), qtype);
            q.set_query_class(DNSClass::CH);
            let req = Request::with_query(q, "127.0.0.1:1".parse().unwrap(), Proto::Udp);
            let r = chain.run(&req).await.unwrap();
            match want {
                Some(w) => {
                    assert_eq!(r.plugin, NAME, "{name}");
                    let a = &r.msg.answers[0];
                    assert_eq!((a.dns_class, a.ttl), (DNSClass::CH, 0));
                    assert_eq!(a.data.to_string(), w, "{name}");
                }
                None => assert_eq!(r.plugin, "next", "{name}"),
            }
        }
        // IN-class TXT goes on.
        let req = Request::new(
            Name::from_ascii("version.bind.").unwrap(),
            RecordType::TXT,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        assert_eq!(chain.run(&req).await.unwrap().plugin, "next");
    }
}
