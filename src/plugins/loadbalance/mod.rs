//! `loadbalance [round_robin]`: shuffles address records in replies (plugin/loadbalance).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Record, RecordType};
use rand::seq::SliceRandom;

use crate::corefile::{Dispenser, Error};
use crate::dnswire::{self, Section};
use crate::plugins::fast::{FastQuery, FastStep};
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

/// [`shuffle`] on each section of an encoded message, where it can be done in place: the
/// address records a section ends with change places, and everything before them is already
/// in [`shuffle`]'s order (CNAMEs, then the rest, no MX). Records with the same owner bytes,
/// type and TTL swap their data; records of one type whose owners are each a pointer to an
/// earlier name swap whole (nothing points into them). Anything else is left alone and `false`
/// returned (the caller shuffles the decoded message instead).
pub fn shuffle_wire(wire: &mut [u8]) -> bool {
    let Some(records) = dnswire::records(wire) else {
        return false;
    };
    let Some(rrs) = records.collect::<Option<Vec<dnswire::Rr>>>() else {
        return false;
    };
    let is_addr = |t: u16| t == u16::from(RecordType::A) || t == u16::from(RecordType::AAAA);
    // (address records, whether they swap whole)
    let mut groups: Vec<(&[dnswire::Rr], bool)> = Vec::new();
    for section in [Section::Answer, Section::Authority, Section::Additional] {
        // Records come section by section.
        let first = rrs.iter().position(|r| r.section == section).unwrap_or(0);
        let n = rrs.iter().filter(|r| r.section == section).count();
        let rs = &rrs[first..first + n];
        if rs.len() < 2 {
            continue;
        }
        let tail = rs.iter().rev().take_while(|r| is_addr(r.rtype)).count();
        let (head, addrs) = rs.split_at(rs.len() - tail);
        let cnames = head
            .iter()
            .take_while(|r| r.rtype == u16::from(RecordType::CNAME))
            .count();
        let ordered = head[cnames..].iter().all(|r| {
            r.rtype != u16::from(RecordType::CNAME) && r.rtype != u16::from(RecordType::MX)
        });
        if !ordered {
            return false;
        }
        if addrs.len() < 2 {
            continue;
        }
        // Same owner bytes, type, class and TTL: the records differ only in their data.
        let fixed = |r: &dnswire::Rr| &wire[r.start..r.rdata.start];
        let pointer_owned = |r: &dnswire::Rr| {
            r.name_end - r.start == 2 && wire[r.start] & 0xc0 == 0xc0 && r.rtype == addrs[0].rtype
        };
        if addrs.iter().all(|r| fixed(r) == fixed(&addrs[0])) {
            groups.push((addrs, false));
        } else if addrs.iter().all(pointer_owned) {
            groups.push((addrs, true));
        } else {
            return false;
        }
    }
    let mut rng = rand::rng();
    for (addrs, whole) in groups {
        // Equal lengths: the same type (and, swapping data, the same RDLENGTH).
        let part = |r: &dnswire::Rr| {
            if whole {
                r.start..r.rdata.end
            } else {
                r.rdata.clone()
            }
        };
        let data: Vec<u8> = addrs
            .iter()
            .flat_map(|r| wire[part(r)].iter().copied())
            .collect();
        let len = part(&addrs[0]).len();
        let mut order: Vec<usize> = (0..addrs.len()).collect();
        order.shuffle(&mut rng);
        for (r, i) in addrs.iter().zip(order) {
            wire[part(r)].copy_from_slice(&data[i * len..(i + 1) * len]);
        }
    }
    true
}

/// [`shuffle`] on each section of an encoded message: in place when [`shuffle_wire`] can, else
/// by decoding, shuffling and encoding it again (header, question and OPT record unchanged).
pub fn shuffle_encoded(wire: &mut Vec<u8>) {
    if shuffle_wire(wire) {
        return;
    }
    let Ok(mut m) = hickory_proto::op::Message::from_vec(wire) else {
        return;
    };
    shuffle(&mut m.answers);
    shuffle(&mut m.authorities);
    shuffle(&mut m.additionals);
    if let Ok(v) = m.to_vec() {
        *wire = v;
    }
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
        if resp.rcode() == ResponseCode::NoError
            && !matches!(req.qtype(), RecordType::AXFR | RecordType::IXFR)
        {
            // An encoded reply (a cache hit) stays encoded.
            if let Some(w) = resp.msg.wire_mut() {
                shuffle_encoded(w);
                return Ok(resp);
            }
            shuffle(&mut resp.msg.answers);
            shuffle(&mut resp.msg.authorities);
            shuffle(&mut resp.msg.additionals);
        }
        Ok(resp)
    }

    fn fast(&self, _: &FastQuery<'_>, _: &mut Vec<u8>) -> FastStep {
        FastStep::Pass
    }

    fn fast_after(&self, q: &FastQuery<'_>, out: &mut Vec<u8>) {
        if dnswire::Flags::of(out).rcode == 0
            && !matches!(q.qtype(), RecordType::AXFR | RecordType::IXFR)
        {
            shuffle_encoded(out);
        }
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

    fn encoded(answers: Vec<Record>) -> Vec<u8> {
        let mut m = hickory_proto::op::Message::new(
            1,
            hickory_proto::op::MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        m.add_query(hickory_proto::op::Query::query(
            answers[0].name.clone(),
            RecordType::A,
        ));
        m.add_answers(answers);
        m.to_vec().unwrap()
    }

    #[test]
    fn encoded_replies_are_shuffled_in_place() {
        let n = Name::from_ascii("www.example.").unwrap();
        let t = Name::from_ascii("cdn.example.net.").unwrap();
        let mut rs = vec![Record::from_rdata(
            n.clone(),
            5,
            RData::CNAME(CNAME(t.clone())),
        )];
        for i in 0..4u8 {
            rs.push(Record::from_rdata(
                t.clone(),
                5,
                RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
            ));
        }
        let wire = encoded(rs.clone());
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut w = wire.clone();
            assert!(shuffle_wire(&mut w));
            let m = hickory_proto::op::Message::from_vec(&w).unwrap();
            assert_eq!(m.answers[0], rs[0], "the CNAME stays first");
            let mut got: Vec<_> = m.answers[1..].iter().map(|r| r.data.clone()).collect();
            seen_first.insert(got[0].clone());
            got.sort_by_key(|d| format!("{d}"));
            let want: Vec<_> = rs[1..].iter().map(|r| r.data.clone()).collect();
            assert_eq!(got, want, "every address kept, with its owner");
            assert!(m.answers[1..].iter().all(|r| r.name == t && r.ttl == 5));
        }
        assert!(seen_first.len() > 1, "addresses are shuffled");
        // Not in shuffle's order, or addresses of different owners: left to the decoded path.
        let mut odd = rs.clone();
        odd.rotate_left(1);
        assert!(!shuffle_wire(&mut encoded(odd)));
        let mut two = rs[1..].to_vec();
        two[0].name = n;
        assert!(!shuffle_wire(&mut encoded(two)));
    }

    #[test]
    fn address_records_of_different_owners_swap_whole() {
        // The additional section of a headless SRV answer: each owner points into an SRV target.
        let q = Name::from_ascii("_pg._tcp.db.ns.svc.cluster.local.").unwrap();
        let mut m = hickory_proto::op::Message::new(
            1,
            hickory_proto::op::MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        m.add_query(hickory_proto::op::Query::query(q.clone(), RecordType::SRV));
        let mut extra = Vec::new();
        for i in 0..3u8 {
            let t = Name::from_ascii(format!("db-{i}.db.ns.svc.cluster.local.")).unwrap();
            m.add_answer(Record::from_rdata(
                q.clone(),
                5,
                RData::SRV(hickory_proto::rr::rdata::SRV::new(0, 33, 5432, t.clone())),
            ));
            extra.push(Record::from_rdata(
                t,
                5,
                RData::A(A(Ipv4Addr::new(10, 0, 0, i))),
            ));
        }
        m.add_additionals(extra.clone());
        let wire = m.to_vec().unwrap();
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..100 {
            let mut w = wire.clone();
            assert!(shuffle_wire(&mut w));
            let got = hickory_proto::op::Message::from_vec(&w).unwrap();
            assert_eq!(got.answers, m.answers);
            let mut add = got.additionals.clone();
            seen_first.insert(add[0].name.clone());
            add.sort_by_key(|r| r.name.to_string());
            assert_eq!(add, extra, "every record kept whole");
        }
        assert!(seen_first.len() > 1, "shuffled");
    }
}
