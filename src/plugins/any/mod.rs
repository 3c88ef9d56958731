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
            RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
        ));
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::rr::Name;

    use super::*;
    use crate::plugins::{Chain, Proto};

    #[tokio::test]
    async fn any_gets_hinfo_and_the_rest_passes() {
        let chain = Chain::new(vec![Arc::new(Any)]);
        let q = |t| {
            Request::new(
                Name::from_ascii("example.org.").unwrap(),
                t,
                "127.0.0.1:1".parse().unwrap(),
                Proto::Udp,
            )
        };
        let r = chain.run(&q(RecordType::ANY)).await.unwrap().msg;
        assert_eq!(r.answers[0].ttl, 8482);
        assert_eq!(r.answers[0].record_type(), RecordType::HINFO);
        assert!(
            chain.run(&q(RecordType::A)).await.is_err(),
            "A goes to the (missing) next plugin"
        );
    }
}
