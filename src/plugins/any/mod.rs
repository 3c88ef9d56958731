//! `any`: answers ANY queries with RFC 8482's minimal response (plugin/any).

use hickory_proto::rr::rdata::HINFO;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "any";

/// Parses `any` (no arguments).
pub fn parse(d: &mut Dispenser<'_>) -> Result<(), Error> {
    d.next();
    if d.next_arg() {
        return Err(d.arg_err());
    }
    d.expect_no_block()
}

/// The handler.
pub struct Any;

#[async_trait::async_trait]
impl Handler for Any {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        if req.qtype() != RecordType::ANY {
            return next.run(req).await;
        }
        let mut msg = req.reply();
        msg.add_answer(Record::from_rdata(
            req.qname().clone(),
            8482,
            RData::HINFO(HINFO::new("ANY obsoleted".into(), "See RFC 8482".into())),
        ));
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::rr::{DNSClass, Name};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn q(t: RecordType) -> Request {
        Request::new(
            Name::from_ascii("example.org.").unwrap(),
            t,
            "10.240.0.1:40212".parse().unwrap(),
            Proto::Udp,
        )
    }

    /// A next plugin that answers, so "next was called" shows as its answer.
    struct Next;

    #[async_trait::async_trait]
    impl Handler for Next {
        fn name(&self) -> &'static str {
            "next"
        }
        async fn serve(
            &self,
            req: &Request,
            _: crate::plugins::Next<'_>,
        ) -> Result<Response, HandlerError> {
            Ok(Response::new(req.reply(), "next"))
        }
    }

    // plugin/any/any_test.go: TestAny (and any.go: the HINFO's class, TTL and OS).
    #[tokio::test]
    async fn test_any() {
        let chain = Chain::new(vec![Arc::new(Any)]);
        let r = chain.run(&q(RecordType::ANY)).await.unwrap();
        assert_eq!(r.plugin, NAME);
        let a = &r.msg.answers[0];
        assert_eq!(r.msg.answers.len(), 1);
        assert_eq!(a.name.to_string(), "example.org.");
        assert_eq!(a.ttl, 8482);
        assert_eq!(a.dns_class, DNSClass::IN);
        let RData::HINFO(h) = &a.data else {
            panic!("{a:?}")
        };
        assert_eq!(&*h.cpu, b"ANY obsoleted");
        assert_eq!(&*h.os, b"See RFC 8482");
    }

    // plugin/any/any_test.go: TestAnyNonANYQuery (5 cases).
    #[tokio::test]
    async fn test_any_non_any_query() {
        let chain = Chain::new(vec![Arc::new(Any), Arc::new(Next)]);
        for t in [
            RecordType::A,
            RecordType::AAAA,
            RecordType::MX,
            RecordType::TXT,
            RecordType::CNAME,
        ] {
            let r = chain.run(&q(t)).await.unwrap();
            assert_eq!(r.plugin, "next", "{t}");
        }
    }

    // plugin/any/setup_test.go: TestSetup, TestSetupRejectsArgs, TestSetupRejectsBlockOptions.
    #[test]
    fn setup() {
        let run = |s: &str| {
            let toks = lex(&Arc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks))
        };
        assert!(run("any").is_ok());
        assert!(run("any example.org").is_err());
        assert!(run("any { foo }").is_err());
    }
}
