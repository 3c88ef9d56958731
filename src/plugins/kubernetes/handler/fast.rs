//! The kubernetes plugin on the fast path ([`crate::plugins::fast`]): A, AAAA, SRV and PTR
//! questions (and the NXDOMAIN and NODATA answers of any of them) written straight to bytes
//! from the same lookups the handler makes. Anything else — other types, ExternalName targets
//! (they need lookups through the server), an unsynced index, `fallthrough`, multicluster
//! zones, `zonal` — takes the general path.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::{Kubernetes, NotFound, Query, Target, srv_plan};
use crate::dnswire::{Compress, Writer};
use crate::plugins::fast::{FastQuery, FastStep};
use crate::plugins::is_subdomain;

const NOERROR: u8 = 0;
const NXDOMAIN: u8 = 3;

/// What the answer holds.
enum Answer {
    /// NXDOMAIN.
    NotFound,
    /// Address records owned by the question.
    Addrs(Vec<IpAddr>),
    /// SRV records (target, port) and the targets' addresses.
    Srv(u16, Vec<(String, u16)>, Vec<(String, IpAddr)>),
    /// PTR records.
    Ptr(Vec<String>),
}

impl Kubernetes {
    pub(super) fn answer_fast(&self, fq: &FastQuery<'_>, out: &mut Vec<u8>) -> FastStep {
        let lower = fq.lower;
        let sent = fq.sent;
        let Some(zone) = self
            .cfg
            .zones
            .iter()
            .filter(|z| is_subdomain(z, lower))
            .max_by_key(|z| z.len())
        else {
            return FastStep::Pass;
        };
        // Multicluster zones (ServiceImports, their own SOA serial) and `zonal` names take
        // the general path.
        let mc = !self.cfg.multicluster.is_empty() && self.cfg.is_multicluster(zone);
        if mc || self.cfg.zonal {
            return FastStep::No;
        }
        let idx = self.index.load();
        if !idx.synced {
            return FastStep::No;
        }
        let qtype = fq.qtype();
        let q = Query {
            k: self,
            idx: &idx,
            zone,
            zone_q: &sent[sent.len() - zone.len()..],
            mc,
            owners: !matches!(qtype, RecordType::A | RecordType::AAAA),
        };
        let answer = match qtype {
            RecordType::A | RecordType::AAAA => match q.services(lower, qtype) {
                Err(NotFound) => Answer::NotFound,
                Ok(items) => {
                    let mut ips: Vec<IpAddr> = Vec::with_capacity(items.len());
                    for item in items {
                        match item.target {
                            // A CNAME to chase through the server.
                            Target::Name(_) => return FastStep::No,
                            Target::Ip(ip) => {
                                let wanted = match qtype {
                                    RecordType::A => ip.is_ipv4(),
                                    _ => ip.is_ipv6(),
                                };
                                if wanted && !ips.contains(&ip) {
                                    ips.push(ip);
                                }
                            }
                            Target::Text => {}
                        }
                    }
                    Answer::Addrs(ips)
                }
            },
            RecordType::SRV => match q.services(lower, RecordType::SRV) {
                Err(NotFound) => Answer::NotFound,
                Ok(items) => {
                    let candidates: Vec<(&str, IpAddr, i32)> = items
                        .iter()
                        .filter_map(|i| match i.target {
                            Target::Ip(ip) => Some((i.owner.as_str(), ip, i.port)),
                            _ => None,
                        })
                        .collect();
                    let plan = srv_plan(&candidates);
                    Answer::Srv(
                        plan.weight,
                        plan.answers
                            .iter()
                            .map(|&(t, p)| (t.to_string(), p))
                            .collect(),
                        plan.extra
                            .iter()
                            .map(|&(t, ip)| (t.to_string(), ip))
                            .collect(),
                    )
                }
            },
            RecordType::PTR => match q.ptr_targets(lower) {
                Err(NotFound) => Answer::NotFound,
                Ok(targets) => Answer::Ptr(targets),
            },
            _ => return FastStep::No,
        };
        if matches!(answer, Answer::NotFound) && self.cfg.fall.through(lower) {
            return FastStep::No;
        }
        match write(fq, &q, &answer, out) {
            Some(()) => FastStep::Answered,
            None => FastStep::No,
        }
    }
}

/// Writes the reply the handler's `serve` makes for `answer`, as the server encodes it.
fn write(fq: &FastQuery<'_>, q: &Query<'_>, answer: &Answer, out: &mut Vec<u8>) -> Option<()> {
    let ttl = q.ttl();
    let rcode = if matches!(answer, Answer::NotFound) {
        NXDOMAIN
    } else {
        NOERROR
    };
    let mut w = Writer::new(out);
    fq.reply_head(&mut w, rcode)?;
    let qname = fq.sent;
    let mut counts = [0u16; 3];
    match answer {
        Answer::Addrs(ips) if !ips.is_empty() => {
            for ip in ips {
                w.qname(qname)?;
                address_data(&mut w, ttl, *ip)?;
            }
            counts[0] = u16::try_from(ips.len()).ok()?;
        }
        Answer::Srv(weight, answers, extra) if !answers.is_empty() => {
            for (target, port) in answers {
                w.qname(qname)?;
                let at = w.record_head(u16::from(RecordType::SRV), ttl);
                let b = w.buf();
                b.extend_from_slice(&0u16.to_be_bytes());
                b.extend_from_slice(&weight.to_be_bytes());
                b.extend_from_slice(&port.to_be_bytes());
                w.name(target, Compress::No)?;
                w.rdata_done(at)?;
            }
            for (target, ip) in extra {
                address(&mut w, target, ttl, *ip)?;
            }
            counts = [
                u16::try_from(answers.len()).ok()?,
                0,
                u16::try_from(extra.len()).ok()?,
            ];
        }
        Answer::Ptr(targets) if !targets.is_empty() => {
            for target in targets {
                w.qname(qname)?;
                let at = w.record_head(u16::from(RecordType::PTR), ttl);
                w.name(target, Compress::Yes)?;
                w.rdata_done(at)?;
            }
            counts[0] = u16::try_from(targets.len()).ok()?;
        }
        // NXDOMAIN, or NODATA: the SOA.
        _ => {
            let zone_at = qname.len() - q.zone_q.len();
            let at = if let Some(at) = soa_head_by_pointers(&mut w, zone_at, ttl) {
                at
            } else {
                w.name(q.zone_q, Compress::Yes)?;
                let at = w.record_head(u16::from(RecordType::SOA), ttl.min(300));
                // `join("ns.dns", zone)` and `join("hostmaster", zone)`, as the handler's SOA.
                w.name_of(&["ns.dns", q.zone_q], Compress::Yes)?;
                w.name_of(&["hostmaster", q.zone_q], Compress::Yes)?;
                at
            };
            let b = w.buf();
            for v in [q.idx.serial, 7200, 1800, 86400, ttl] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            w.rdata_done(at)?;
            counts[1] = 1;
        }
    }
    fq.reply_end(out, counts)?;
    fq.push_opt(out);
    Some(())
}

/// The SOA's owner, fixed fields and names up to its serial when the zone is the question's
/// suffix from `zone_at` on: pointers into the question, as compression writes them then (the
/// owner a pointer to the zone, `ns.dns` and `hostmaster` each a label or two and a pointer to
/// the zone) — unless the question's label before the zone is `dns` or `hostmaster`, where
/// compression points into the question instead. Returns where RDLENGTH goes, or `None` having
/// written nothing (the caller writes the names in full).
fn soa_head_by_pointers(w: &mut Writer<'_>, zone_at: usize, ttl: u32) -> Option<usize> {
    let (zone, before) = w.question_suffix(zone_at)?;
    if before
        .is_some_and(|l| l.eq_ignore_ascii_case(b"dns") || l.eq_ignore_ascii_case(b"hostmaster"))
    {
        return None;
    }
    let start = w.buf().len();
    w.pointer(zone)?;
    let at = w.record_head(u16::from(RecordType::SOA), ttl.min(300));
    for labels in [&b"\x02ns\x03dns"[..], b"\x0ahostmaster"] {
        w.buf().extend_from_slice(labels);
        if w.pointer(zone).is_none() {
            w.buf().truncate(start);
            return None;
        }
    }
    Some(at)
}

fn address(w: &mut Writer<'_>, owner: &str, ttl: u32, ip: IpAddr) -> Option<()> {
    w.name(owner, Compress::Yes)?;
    address_data(w, ttl, ip)
}

/// An address record after its owner name.
fn address_data(w: &mut Writer<'_>, ttl: u32, ip: IpAddr) -> Option<()> {
    let (rtype, data): (RecordType, &[u8]) = match &ip {
        IpAddr::V4(v4) => (RecordType::A, &v4.octets()[..]),
        IpAddr::V6(v6) => (RecordType::AAAA, &v6.octets()[..]),
    };
    let at = w.record_head(u16::from(rtype), ttl);
    w.buf().extend_from_slice(data);
    w.rdata_done(at)
}
