//! `minimal`: positive answers carry only the answer section — no authority or additional
//! records (plugin/minimal).

use crate::corefile::{Dispenser, Error};
use crate::plugins::response::{Kind, typify};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "minimal";

/// Parses `minimal` (no arguments).
pub fn parse(d: &mut Dispenser<'_>) -> Result<(), Error> {
    d.next();
    if d.next_arg() {
        return Err(d.arg_err());
    }
    d.expect_no_block()
}

/// The handler.
pub struct Minimal;

#[async_trait::async_trait]
impl Handler for Minimal {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let mut resp = next.run(req).await?;
        // Denials, errors and delegations keep their records (a referral needs its NS and glue,
        // a denial its SOA); so do zone transfers.
        if typify(&resp.msg) == Kind::NoError {
            resp.msg.authorities.clear();
            resp.msg.additionals.clear();
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::rdata::{A, AAAA, NS};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    #[test]
    fn setup() {
        // CoreDNS's TestSetup: no arguments.
        let run = |s: &str| {
            let toks = lex(&Arc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks))
        };
        assert!(run("minimal").is_ok());
        assert!(
            run("minimal example.org")
                .unwrap_err()
                .to_string()
                .contains("Wrong argument count")
        );
        assert!(run("minimal {\n x\n}").is_err());
    }

    /// Answers with fixed sections (CoreDNS's testHandler).
    struct Fixed {
        answer: bool,
        ns: bool,
        rcode: ResponseCode,
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    #[async_trait::async_trait]
    impl Handler for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = req.reply();
            m.metadata.response_code = self.rcode;
            if self.answer {
                m.add_answer(Record::from_rdata(
                    n("example.com."),
                    293,
                    RData::A(A::new(142, 250, 76, 46)),
                ));
            }
            if self.ns {
                for i in 1..=4 {
                    m.add_authority(Record::from_rdata(
                        n("example.com."),
                        157127,
                        RData::NS(NS(n(&format!("ns{i}.example.com.")))),
                    ));
                }
            }
            for i in 1..=4u8 {
                let host = n(&format!("ns{i}.example.com."));
                m.add_additional(Record::from_rdata(
                    host.clone(),
                    316273,
                    RData::A(A::new(216, 239, 32 + 2 * i, 10)),
                ));
                m.add_additional(Record::from_rdata(
                    host,
                    157127,
                    RData::AAAA(AAAA::new(0x2001, 0x4860, 0x4802, 32, 0, 0, 0, 10)),
                ));
            }
            Ok(Response::new(m, "fixed"))
        }
    }

    #[tokio::test]
    async fn coredns_minimize_table() {
        // CoreDNS's TestMinimizeResponse: (answer?, ns?, rcode) → (answers, ns, extra) left.
        for (answer, ns, rcode, want) in [
            (true, false, ResponseCode::NoError, (1, 0, 0)),
            (false, true, ResponseCode::NoError, (0, 4, 8)),
            (true, true, ResponseCode::ServFail, (1, 4, 8)),
        ] {
            let chain = Chain::new(vec![
                Arc::new(Minimal),
                Arc::new(Fixed { answer, ns, rcode }),
            ]);
            let req = Request::new(
                n("example.com."),
                RecordType::A,
                "127.0.0.1:1".parse().unwrap(),
                Proto::Udp,
            );
            let m = chain.run(&req).await.unwrap().msg;
            assert_eq!(
                (m.answers.len(), m.authorities.len(), m.additionals.len()),
                want,
                "{rcode}"
            );
        }
    }
}
