//! `metadata [ZONES...]`: collects the metadata every later plugin provides for a query
//! (plugin/metadata), so `log` (`{/LABEL}`), `rewrite edns0 local … {LABEL}` and `template`
//! (`{{ .Meta "LABEL" }}`) can use it.
//!
//! Providers implement [`Handler::metadata`]; this plugin calls it on the handlers that follow
//! it in the chain, stores the labels in the request ([`Request::meta`]) and passes it on. A
//! block without `metadata` pays nothing.

use std::borrow::Cow;
use std::sync::Arc;

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response, is_subdomain, origins};

/// Directive name.
pub const NAME: &str = "metadata";

/// The labels collected for one request: `plugin/NAME` → value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    entries: Vec<(Cow<'static, str>, String)>,
}

impl Meta {
    /// Sets `label` to `value` (an existing value is replaced).
    pub fn set(&mut self, label: impl Into<Cow<'static, str>>, value: impl Into<String>) {
        let (label, value) = (label.into(), value.into());
        match self.entries.iter_mut().find(|(l, _)| *l == label) {
            Some(e) => e.1 = value,
            None => self.entries.push((label, value)),
        }
    }

    /// The value of `label`.
    pub fn get(&self, label: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v.as_str())
    }

    /// Every label, in the order they were set.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(l, _)| l.as_ref())
    }
}

/// Whether `label` is a metadata label: two non-empty parts around a `/` (CoreDNS's `IsLabel`).
pub fn is_label(label: &str) -> bool {
    matches!(label.find('/'), Some(p) if p > 0 && p < label.len() - 1)
}

/// A parsed `metadata`: the zones it collects for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// Zones (default: the block's).
    pub zones: Vec<String>,
}

/// Parses `metadata [ZONES...]` (once per block, no options).
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<MetadataConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let zones = origins(&args, block_zones).map_err(|e| d.err(e))?;
    if d.next_block() {
        return Err(d.arg_err());
    }
    Ok(MetadataConfig { zones })
}

/// The handler.
pub struct Metadata {
    zones: Vec<String>,
}

impl Metadata {
    /// A collector for `cfg`.
    pub fn new(cfg: &MetadataConfig) -> Self {
        Self {
            zones: cfg.zones.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Handler for Metadata {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let mut meta = Meta::default();
        if self
            .zones
            .iter()
            .any(|z| is_subdomain(z, req.qname_lower()))
        {
            for h in next.handlers() {
                h.metadata(req, &mut meta);
            }
        }
        let mut req = req.clone();
        req.meta = Some(Arc::new(meta));
        next.run(&req).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn run(input: &str) -> Result<MetadataConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks), &[".".to_string()])
    }

    #[test]
    fn setup_table() {
        // CoreDNS's TestSetup table; `metadata\nmetadata` is refused by the once-per-block
        // check in `plugins::parse` (tested in tests/it).
        for (input, zones) in [
            ("metadata", vec!["."]),
            ("metadata example.com.", vec!["example.com."]),
            ("metadata example.com. net.", vec!["example.com.", "net."]),
        ] {
            assert_eq!(run(input).unwrap().zones, zones, "{input}");
        }
        let e = run("metadata example.com. { some_param }").unwrap_err();
        assert!(e.to_string().contains("Wrong argument count"), "{e}");
    }

    #[test]
    fn label_format() {
        // CoreDNS's TestLabelFormat.
        for (label, ok) in [
            ("plugin/LABEL", true),
            ("p/LABEL", true),
            ("plugin/L", true),
            ("PLUGIN/LABEL/SUB-LABEL", true),
            ("LABEL", false),
            ("plugin.LABEL", false),
            ("/NO-PLUGIN-NOT-ACCEPTED", false),
            ("ONLY-PLUGIN-NOT-ACCEPTED/", false),
            ("/", false),
            ("//", false),
        ] {
            assert_eq!(is_label(label), ok, "{label}");
        }
    }

    /// Provides fixed labels, and answers with the metadata it sees as TXT-like text.
    struct Provider(&'static [(&'static str, &'static str)]);

    #[async_trait::async_trait]
    impl Handler for Provider {
        fn name(&self) -> &'static str {
            "provider"
        }
        fn metadata(&self, _: &Request, meta: &mut Meta) {
            for (l, v) in self.0 {
                meta.set(*l, *v);
            }
        }
        async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
            next.run(req).await
        }
    }

    struct Seen;

    #[async_trait::async_trait]
    impl Handler for Seen {
        fn name(&self) -> &'static str {
            "seen"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let meta = req.meta.as_deref().expect("metadata collected");
            let text: Vec<String> = meta
                .labels()
                .map(|l| format!("{l}={}", meta.get(l).unwrap()))
                .collect();
            Err(HandlerError::Internal(text.join(" ")))
        }
    }

    #[tokio::test]
    async fn collects_from_every_later_provider() {
        // CoreDNS's TestMetadataServeDNS: two providers, three labels, all visible downstream.
        let chain = Chain::new(vec![
            Arc::new(Metadata::new(&MetadataConfig {
                zones: vec!["example.org.".into()],
            })),
            Arc::new(Provider(&[("test/key1", "testvalue1")])),
            Arc::new(Provider(&[
                ("test/key2", "two"),
                ("test/key3", "testvalue3"),
            ])),
            Arc::new(Seen),
        ]);
        let ask = |name: &str| {
            Request::new(
                Name::from_ascii(name).unwrap(),
                RecordType::A,
                "127.0.0.1:1".parse().unwrap(),
                Proto::Udp,
            )
        };
        let e = chain.run(&ask("a.example.org.")).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "test/key1=testvalue1 test/key2=two test/key3=testvalue3"
        );
        // Outside its zones nothing is collected (but the request still carries a map).
        let e = chain.run(&ask("a.example.net.")).await.unwrap_err();
        assert_eq!(e.to_string(), "");
    }
}
