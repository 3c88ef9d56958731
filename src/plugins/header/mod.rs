//! `header`: sets or clears header flags of queries (for the plugins after it) and of
//! responses (plugin/header).

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "header";

/// A header flag `header` can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// `aa`, Authoritative Answer.
    Aa,
    /// `ra`, Recursion Available.
    Ra,
    /// `rd`, Recursion Desired.
    Rd,
}

/// Set (`true`) or clear a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The flag.
    pub flag: Flag,
    /// Its new state.
    pub state: bool,
}

/// A parsed `header` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderConfig {
    /// Rules for queries, in order (the last one for a flag wins).
    pub query: Vec<Rule>,
    /// Rules for responses, in order.
    pub response: Vec<Rule>,
}

fn rules(action: Option<&str>, flags: &[String]) -> Result<Vec<Rule>, String> {
    let Some(action) = action else {
        return Err("no flag action provided".into());
    };
    if flags.is_empty() {
        return Err("invalid length for flags, at least one should be provided".into());
    }
    let state = match action.to_ascii_lowercase().as_str() {
        "set" => true,
        "clear" => false,
        other => {
            return Err(format!(
                "unknown flag action={other}, should be set or clear"
            ));
        }
    };
    flags
        .iter()
        .map(|f| {
            let flag = match f.to_ascii_lowercase().as_str() {
                "aa" => Flag::Aa,
                "ra" => Flag::Ra,
                "rd" => Flag::Rd,
                other => return Err(format!("unknown/unsupported flag={other}")),
            };
            Ok(Rule { flag, state })
        })
        .collect()
}

/// Parses `header { query|response set|clear FLAGS... }` (CoreDNS's plugin/header/setup.go).
pub fn parse(d: &mut Dispenser<'_>) -> Result<HeaderConfig, Error> {
    let mut c = HeaderConfig::default();
    while d.next() {
        if !d.remaining_args().is_empty() {
            return Err(d.arg_err());
        }
        while d.next_block() {
            let selector = d.val().to_ascii_lowercase();
            if selector != "query" && selector != "response" {
                return Err(d.err(format!(
                    "setting up rule: invalid selector={selector} should be query or response"
                )));
            }
            let mut args = d.remaining_args();
            let action = (!args.is_empty()).then(|| args.remove(0));
            let r = rules(action.as_deref(), &args)
                .map_err(|e| d.err(format!("setting up rule: {e}")))?;
            if selector == "response" {
                c.response.extend(r);
            } else {
                c.query.extend(r);
            }
        }
    }
    if c.query.is_empty() && c.response.is_empty() {
        return Err(d.arg_err());
    }
    Ok(c)
}

/// The handler.
pub struct Header {
    cfg: HeaderConfig,
}

impl Header {
    /// A handler for `cfg`.
    pub fn new(cfg: HeaderConfig) -> Self {
        Self { cfg }
    }
}

#[async_trait::async_trait]
impl Handler for Header {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let mut resp = if self.cfg.query.is_empty() {
            next.run(req).await?
        } else {
            let mut q = req.clone();
            for r in &self.cfg.query {
                match r.flag {
                    Flag::Rd => q.recursion_desired = r.state,
                    // A query's AA and RA bits mean nothing to the plugins after this one, and
                    // the query `forward` sends is built fresh: accepted, without effect.
                    Flag::Aa | Flag::Ra => {}
                }
            }
            next.run(&q).await?
        };
        let md = &mut resp.msg.metadata;
        for r in &self.cfg.response {
            match r.flag {
                Flag::Aa => md.authoritative = r.state,
                Flag::Ra => md.recursion_available = r.state,
                Flag::Rd => md.recursion_desired = r.state,
            }
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn run(input: &str) -> Result<HeaderConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn coredns_setup_table() {
        // CoreDNS's TestSetupHeader (plugin/header/setup_test.go).
        for (input, want) in [
            (
                "header {}",
                Some("Wrong argument count or unexpected line ending after"),
            ),
            (
                "header {\n foo\n}",
                Some("invalid selector=foo should be query or response"),
            ),
            (
                "header {\n response set\n}",
                Some("invalid length for flags, at least one should be provided"),
            ),
            (
                "header {\n query foo\n}",
                Some("invalid length for flags, at least one should be provided"),
            ),
            (
                "header {\n query foo rd\n}",
                Some("unknown flag action=foo, should be set or clear"),
            ),
            ("header {\n query set rd\n}", None),
            ("header {\n response set aa\n}", None),
            ("header {\n response set ra aa\n query clear rd\n}", None),
            // Not in CoreDNS's table.
            ("header", Some("Wrong argument count")),
            ("header x {\n query set rd\n}", Some("Wrong argument count")),
            (
                "header {\n response set cd\n}",
                Some("unknown/unsupported flag=cd"),
            ),
            ("header {\n response\n}", Some("no flag action provided")),
        ] {
            match (run(input), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{input}: {e}"),
                (got, _) => panic!("{input}: {got:?}"),
            }
        }
        let c = run("header {\n response set ra aa\n response clear rd\n query set rd\n}").unwrap();
        assert_eq!(c.response.len(), 3);
        assert_eq!(
            c.query,
            [Rule {
                flag: Flag::Rd,
                state: true
            }]
        );
    }

    /// Answers with the RD bit it was asked with, AA and RA clear.
    struct Echo;

    #[async_trait::async_trait]
    impl Handler for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            Ok(Response::new(req.reply(), "echo"))
        }
    }

    async fn flags(config: &str, rd: bool) -> (bool, bool, bool) {
        let chain = Chain::new(vec![
            Arc::new(Header::new(run(config).unwrap())),
            Arc::new(Echo),
        ]);
        let mut req = Request::new(
            Name::from_ascii("example.org.").unwrap(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        req.recursion_desired = rd;
        let m = chain.run(&req).await.unwrap().msg.metadata;
        (m.authoritative, m.recursion_available, m.recursion_desired)
    }

    #[tokio::test]
    async fn response_and_query_rules() {
        // CoreDNS's TestHeaderResponseRules and TestHeaderQueryRules: (aa, ra, rd).
        assert_eq!(
            flags("header {\n response set ra\n}", false).await,
            (false, true, false)
        );
        assert_eq!(
            flags("header {\n response clear ra\n}", false).await,
            (false, false, false)
        );
        assert_eq!(
            flags("header {\n response set rd\n}", false).await,
            (false, false, true)
        );
        assert_eq!(
            flags("header {\n response set aa\n}", false).await,
            (true, false, false)
        );
        // A query rule changes what the next plugin sees (and so what it echoes).
        assert_eq!(
            flags("header {\n query set rd\n}", false).await,
            (false, false, true)
        );
        assert_eq!(
            flags("header {\n query clear rd\n}", true).await,
            (false, false, false)
        );
        // The last rule for a flag wins.
        assert_eq!(
            flags("header {\n response set ra aa\n response clear aa\n}", true).await,
            (false, true, true)
        );
    }
}
