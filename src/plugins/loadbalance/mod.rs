//! `loadbalance [round_robin]`: shuffles address records in replies (plugin/loadbalance).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use rand::seq::SliceRandom;

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "loadbalance";

/// Parses `loadbalance [round_robin]`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<(), Error> {
    d.next();
    let args = d.remaining_args();
    match args.first().map(String::as_str) {
        None | Some("round_robin") if args.len() <= 1 => {}
        Some("weighted") => return Err(d.err("weighted is not built yet in clusterdns")),
        Some(other) if args.len() == 1 => {
            return Err(d.err(format!("unknown policy: {other}")));
        }
        _ => return Err(d.arg_err()),
    }
    if d.next_block() {
        return Err(d.err(format!("unknown property '{}'", d.val())));
    }
    Ok(())
}

/// CoreDNS's `roundRobinShuffle`: all addresses → shuffled; otherwise CNAMEs, the rest,
/// then the shuffled addresses, then the shuffled MX records.
pub fn shuffle(records: &mut Vec<Record>) {
    if records.len() < 2 {
        return;
    }
    let is_addr = |r: &Record| matches!(r.record_type(), RecordType::A | RecordType::AAAA);
    let mut rng = rand::rng();
    if records.iter().all(is_addr) {
        records.shuffle(&mut rng);
        return;
    }
    let (mut cname, mut addr, mut mx, mut rest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in records.drain(..) {
        match r.record_type() {
            RecordType::CNAME => cname.push(r),
            RecordType::A | RecordType::AAAA => addr.push(r),
            RecordType::MX => mx.push(r),
            _ => rest.push(r),
        }
    }
    addr.shuffle(&mut rng);
    mx.shuffle(&mut rng);
    records.extend(cname);
    records.extend(rest);
    records.extend(addr);
    records.extend(mx);
}

/// The handler.
pub struct LoadBalance;

#[async_trait::async_trait]
impl Handler for LoadBalance {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let mut resp = next.run(req).await?;
        if resp.msg.metadata.response_code == ResponseCode::NoError
            && !matches!(req.qtype(), RecordType::AXFR | RecordType::IXFR)
        {
            shuffle(&mut resp.msg.answers);
            shuffle(&mut resp.msg.authorities);
            shuffle(&mut resp.msg.additionals);
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc;

    use hickory_proto::rr::rdata::{A, CNAME};
    use hickory_proto::rr::{Name, RData};

    use super::*;
    use crate::corefile::lexer::lex;

    #[test]
    fn setup() {
        let run = |s: &str| {
            let toks = lex(&Arc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks))
        };
        assert!(run("loadbalance").is_ok());
        assert!(run("loadbalance round_robin").is_ok());
        assert!(
            run("loadbalance fastest")
                .unwrap_err()
                .to_string()
                .contains("unknown policy: fastest")
        );
        assert!(run("loadbalance round_robin x").is_err());
    }

    #[test]
    fn cnames_stay_first_and_every_address_is_kept() {
        let n = Name::from_ascii("a.example.").unwrap();
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut rs = vec![Record::from_rdata(
                n.clone(),
                5,
                RData::CNAME(CNAME(n.clone())),
            )];
            for i in 0..4u8 {
                rs.push(Record::from_rdata(
                    n.clone(),
                    5,
                    RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
                ));
            }
            shuffle(&mut rs);
            assert_eq!(rs[0].record_type(), RecordType::CNAME);
            assert_eq!(rs.len(), 5);
            seen_first.insert(rs[1].data.clone());
        }
        assert!(seen_first.len() > 1, "addresses are shuffled");
    }
}
