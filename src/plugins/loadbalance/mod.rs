//! `loadbalance [round_robin | weighted WEIGHTFILE { reload DURATION }] { prefer CIDR... }`:
//! reorders address records in replies (plugin/loadbalance).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use ipnet::IpNet;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};
use crate::dnswire::{self, Section};
use crate::plugins::fast::{FastQuery, FastStep};
use crate::plugins::request::lower_fqdn;
use crate::plugins::{BuildCtx, Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "loadbalance";

/// How the addresses are reordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Every address shuffled with equal chances (the default).
    RoundRobin,
    /// One address, drawn by the weights in the file, moved to the top.
    Weighted {
        /// The weight file.
        file: PathBuf,
        /// How often it is checked for changes (default 30s, 0 = never).
        reload: Duration,
    },
}

/// A parsed `loadbalance`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalanceConfig {
    /// The policy.
    pub policy: Policy,
    /// `prefer`: addresses in these networks go first, in this order.
    pub prefer: Vec<IpNet>,
}

/// Parses the directive (CoreDNS's plugin/loadbalance/setup.go).
pub fn parse(d: &mut Dispenser<'_>) -> Result<LoadBalanceConfig, Error> {
    let mut c = LoadBalanceConfig {
        policy: Policy::RoundRobin,
        prefer: Vec::new(),
    };
    while d.next() {
        let args = d.remaining_args();
        match args.first().map(String::as_str) {
            None => c.policy = Policy::RoundRobin,
            Some("round_robin") => {
                if args.len() > 1 {
                    return Err(d.err("unknown property for round_robin"));
                }
                c.policy = Policy::RoundRobin;
            }
            Some("weighted") => {
                let file = match &args[1..] {
                    [] => return Err(d.err("missing weight file argument")),
                    [f] => PathBuf::from(f),
                    _ => return Err(d.err("unexpected argument(s)")),
                };
                let mut reload = Duration::from_secs(30);
                // The weighted policy's block holds only `reload` (CoreDNS reads it here, so a
                // `prefer` line after `weighted` is an unknown property).
                while d.next_block() {
                    match d.val() {
                        "reload" => {
                            let t = d.remaining_args();
                            let [v] = t.as_slice() else {
                                return Err(d.err(if t.is_empty() {
                                    "reload duration value is missing"
                                } else {
                                    "unexpected argument"
                                }));
                            };
                            reload = parse_duration(v)
                                .ok_or_else(|| d.err(format!("invalid reload duration '{v}'")))?;
                        }
                        other => return Err(d.err(format!("unknown property '{other}'"))),
                    }
                }
                c.policy = Policy::Weighted { file, reload };
            }
            Some(other) => return Err(d.err(format!("unknown policy: {other}"))),
        }
        while d.next_block() {
            match d.val() {
                "prefer" => {
                    for cidr in d.remaining_args() {
                        let net = cidr
                            .parse::<IpNet>()
                            .map_err(|e| d.err(format!("invalid CIDR \"{cidr}\": {e}")))?;
                        c.prefer.push(net);
                    }
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
    }
    Ok(c)
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
    let (mut cname, mut addr, mut mx, mut rest) = split(std::mem::take(records));
    addr.shuffle(&mut rng);
    mx.shuffle(&mut rng);
    records.append(&mut cname);
    records.append(&mut rest);
    records.append(&mut addr);
    records.append(&mut mx);
}

type Groups = (Vec<Record>, Vec<Record>, Vec<Record>, Vec<Record>);

/// (CNAME, A/AAAA, MX, other) records, each in their order.
fn split(records: Vec<Record>) -> Groups {
    let (mut cname, mut addr, mut mx, mut rest) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in records {
        match r.record_type() {
            RecordType::CNAME => cname.push(r),
            RecordType::A | RecordType::AAAA => addr.push(r),
            RecordType::MX => mx.push(r),
            _ => rest.push(r),
        }
    }
    (cname, addr, mx, rest)
}

fn address(r: &Record) -> Option<IpAddr> {
    match &r.data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}

/// CoreDNS's `reorderRecords`: CNAMEs, the addresses in the preferred networks (network by
/// network, each in record order), the other addresses, MX, the rest.
pub fn prefer(records: &mut Vec<Record>, nets: &[IpNet]) {
    let (mut cname, addr, mut mx, mut rest) = split(std::mem::take(records));
    let mut taken = vec![false; addr.len()];
    let mut sorted = Vec::with_capacity(addr.len());
    for net in nets {
        for (i, r) in addr.iter().enumerate() {
            if !taken[i] && address(r).is_some_and(|ip| net.contains(&ip)) {
                taken[i] = true;
                sorted.push(r.clone());
            }
        }
    }
    sorted.extend(
        addr.into_iter()
            .zip(taken)
            .filter(|(_, t)| !t)
            .map(|(r, _)| r),
    );
    records.append(&mut cname);
    records.append(&mut sorted);
    records.append(&mut mx);
    records.append(&mut rest);
}

/// Weights by owner name (lower-case, with its trailing dot), in file order.
pub type Weights = HashMap<String, Vec<(IpAddr, u8)>>;

/// Parses a weight file (CoreDNS's `parseWeights`); `file` names it in errors.
pub fn parse_weights(text: &str, file: &str) -> Result<Weights, String> {
    let mut domains = Weights::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [name] => {
                if name.parse::<IpAddr>().is_ok() {
                    return Err(format!(
                        "wrong domain name:\"{name}\" in weight file {file}. (Maybe a missing weight value?)"
                    ));
                }
                let mut n = name.to_ascii_lowercase();
                if !n.ends_with('.') {
                    n.push('.');
                }
                domains.entry(n.clone()).or_default();
                current = Some(n);
            }
            [ip, weight] => {
                let ip: IpAddr = ip
                    .parse()
                    .map_err(|_| format!("wrong IP address:\"{ip}\" in weight file {file}"))?;
                let w: u8 = weight.parse().ok().filter(|w| *w > 0).ok_or_else(|| {
                    format!("wrong weight value:\"{weight}\" in weight file {file}")
                })?;
                let Some(d) = &current else {
                    return Err(format!("missing domain name in weight file {file}"));
                };
                domains.entry(d.clone()).or_default().push((ip, w));
            }
            _ => {
                return Err(format!(
                    "could not parse weight line:\"{line}\" in weight file {file}"
                ));
            }
        }
    }
    Ok(domains)
}

/// The index of the address moved to the top: weights (default 1) sorted from the heaviest,
/// and `draw(sum)` (uniform in `0..sum`) walks them (CoreDNS's `topAddressIndex`).
fn top_index(addrs: &[Record], weights: &Weights, draw: impl FnOnce(u32) -> u32) -> usize {
    let mut w: Vec<(usize, u8)> = addrs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let weight = address(r)
                .and_then(|ip| {
                    weights
                        .get(&lower_fqdn(&r.name))?
                        .iter()
                        .find(|(a, _)| *a == ip)
                        .map(|(_, w)| *w)
                })
                .unwrap_or(1);
            (i, weight)
        })
        .collect();
    let sum: u32 = w.iter().map(|(_, x)| u32::from(*x)).sum();
    w.sort_by_key(|x| std::cmp::Reverse(x.1));
    let v = draw(sum);
    let mut acc = 0u32;
    for (i, x) in w {
        acc += u32::from(x);
        if v < acc {
            return i;
        }
    }
    0
}

/// CoreDNS's `weightedRoundRobin` for one section: CNAMEs, the rest, the addresses with the
/// drawn one first, MX. A section without addresses is left as it is.
fn weighted(records: &mut Vec<Record>, weights: &Weights, draw: impl FnOnce(u32) -> u32) {
    if !records.iter().any(|r| address(r).is_some()) {
        return;
    }
    let (mut cname, mut addr, mut mx, mut rest) = split(std::mem::take(records));
    let top = top_index(&addr, weights, draw);
    addr.swap(0, top);
    records.append(&mut cname);
    records.append(&mut rest);
    records.append(&mut addr);
    records.append(&mut mx);
}

/// [`shuffle`] on each section of an encoded message, where it can be done in place: the
/// address records a section ends with change places, and everything before them is already
/// in [`shuffle`]'s order (CNAMEs, then the rest, no MX). Records with the same owner bytes,
/// type and TTL swap their data; records of one type whose owners are each a pointer to an
/// earlier name swap whole (nothing points into them). Anything else is left alone and `false`
/// returned (the caller shuffles the decoded message instead).
pub fn shuffle_wire(wire: &mut [u8]) -> bool {
    // Fewer than two records in every section (a single answer, OPT alone): nothing moves.
    if [6, 8, 10]
        .iter()
        .all(|&at| dnswire::u16_at(wire, at).is_some_and(|n| n < 2))
    {
        return true;
    }
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
pub struct LoadBalance {
    prefer: Vec<IpNet>,
    /// `Some` for the weighted policy: the current weights.
    weights: Option<Arc<ArcSwap<Weights>>>,
}

fn read_weights(path: &Path) -> Result<Weights, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("weight file open error: {}: {e}", path.display()))?;
    parse_weights(&text, &path.display().to_string())
}

/// Builds the handler; the weighted policy reads its file now, and re-reads it every `reload`
/// when it changed (a bad or missing file keeps the weights in use).
pub fn build(cfg: &LoadBalanceConfig, ctx: &mut BuildCtx<'_>) -> Result<Arc<dyn Handler>, Error> {
    let weights = match &cfg.policy {
        Policy::RoundRobin => None,
        Policy::Weighted { file, reload } => {
            let seen = crate::fswatch::mtimes(std::slice::from_ref(file));
            let initial = match read_weights(file) {
                Ok(w) => w,
                // As CoreDNS: a missing file is retried when it is reloaded, else fatal.
                Err(e) if !reload.is_zero() && !file.exists() => {
                    tracing::warn!(target: "plugin/loadbalance", "Failed to open weight file:{e}. Will try again in {reload:?}");
                    Weights::new()
                }
                Err(e) => {
                    return Err(Error::plugin(NAME, ctx.loc.clone(), Error::plain(None, e)));
                }
            };
            let w = Arc::new(ArcSwap::from_pointee(initial));
            if !reload.is_zero() {
                let (w2, path, every) = (w.clone(), file.clone(), *reload);
                ctx.services.starters.0.push(Box::new(move |start| {
                    Box::pin(async move {
                        let mut watch = crate::fswatch::FileWatch::new(vec![path.clone()], seen, every);
                        tokio::spawn(async move {
                            while watch.changed(&start.stop).await {
                                match read_weights(&path) {
                                    Ok(new) => {
                                        w2.store(Arc::new(new));
                                        tracing::info!(target: "plugin/loadbalance", "Successfully reloaded weight file {}", path.display());
                                    }
                                    Err(e) => tracing::error!(target: "plugin/loadbalance", "{e}"),
                                }
                            }
                        });
                        Ok(())
                    })
                }));
            }
            Some(w)
        }
    };
    Ok(Arc::new(LoadBalance {
        prefer: cfg.prefer.clone(),
        weights,
    }))
}

impl LoadBalance {
    /// Round robin without `prefer`: what [`shuffle_encoded`] does to an encoded reply.
    fn shuffles_only(&self) -> bool {
        self.weights.is_none() && self.prefer.is_empty()
    }

    fn reorder(&self, msg: &mut Message, qtype: RecordType) {
        match &self.weights {
            None => {
                shuffle(&mut msg.answers);
                shuffle(&mut msg.authorities);
                shuffle(&mut msg.additionals);
            }
            Some(w) if matches!(qtype, RecordType::A | RecordType::AAAA | RecordType::SRV) => {
                let w = w.load();
                let mut rng = rand::rng();
                weighted(&mut msg.answers, &w, |sum| rng.random_range(0..sum.max(1)));
                weighted(&mut msg.additionals, &w, |sum| {
                    rng.random_range(0..sum.max(1))
                });
            }
            Some(_) => {}
        }
        if !self.prefer.is_empty() {
            prefer(&mut msg.answers, &self.prefer);
            prefer(&mut msg.additionals, &self.prefer);
        }
    }
}

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
            // An encoded reply (a cache hit) stays encoded when it is only shuffled.
            if self.shuffles_only() {
                if let Some(w) = resp.msg.wire_mut() {
                    shuffle_encoded(w);
                    return Ok(resp);
                }
            }
            self.reorder(&mut resp.msg, req.qtype());
        }
        Ok(resp)
    }

    fn fast(&self, _: &FastQuery<'_>, _: &mut Vec<u8>) -> FastStep {
        // The byte path only shuffles; weights and `prefer` take the general path.
        if self.shuffles_only() {
            FastStep::Pass
        } else {
            FastStep::No
        }
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

    use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX};
    use hickory_proto::rr::{Name, RData};

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(s: &str) -> Result<LoadBalanceConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn coredns_setup_table() {
        // CoreDNS's TestSetup (plugin/loadbalance/setup_test.go).
        let w = |f: &str, s: u64| Policy::Weighted {
            file: f.into(),
            reload: Duration::from_secs(s),
        };
        for (input, want) in [
            ("loadbalance", Ok(Policy::RoundRobin)),
            ("loadbalance round_robin", Ok(Policy::RoundRobin)),
            ("loadbalance weighted wfile", Ok(w("wfile", 30))),
            ("loadbalance weighted wf {\n reload 10s\n}", Ok(w("wf", 10))),
            ("loadbalance weighted wf {\n reload 0s\n}", Ok(w("wf", 0))),
            ("loadbalance fleeb", Err("unknown policy")),
            ("loadbalance round_robin a", Err("unknown property")),
            ("loadbalance weighted", Err("missing weight file argument")),
            ("loadbalance weighted a b", Err("unexpected argument")),
            (
                "loadbalance weighted wfile {\n susu\n}",
                Err("unknown property"),
            ),
            (
                "loadbalance weighted wfile {\n reload a\n}",
                Err("invalid reload duration"),
            ),
            (
                "loadbalance weighted wfile {\n reload 30s a\n}",
                Err("unexpected argument"),
            ),
            // Not in CoreDNS's table: prefer.
            (
                "loadbalance weighted wfile {\n prefer 10.0.0.0/8\n}",
                Err("unknown property 'prefer'"),
            ),
            (
                "loadbalance {\n prefer 10.9.20.0/33\n}",
                Err("invalid CIDR \"10.9.20.0/33\""),
            ),
            (
                "loadbalance {\n reload 1s\n}",
                Err("unknown property 'reload'"),
            ),
        ] {
            match (run(input), want) {
                (Ok(c), Ok(p)) => assert_eq!(c.policy, p, "{input}"),
                (Err(e), Err(w)) => assert!(e.to_string().contains(w), "{input}: {e}"),
                (got, want) => panic!("{input}: {got:?} want {want:?}"),
            }
        }
        let c = run("loadbalance round_robin {\n prefer 10.9.20.0/24 192.168.1.0/24\n}").unwrap();
        assert_eq!(c.prefer.len(), 2);
    }

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }
    fn a(owner: &str, ip: &str) -> Record {
        let data = match ip.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        };
        Record::from_rdata(n(owner), 300, data)
    }
    fn cname(owner: &str, target: &str) -> Record {
        Record::from_rdata(n(owner), 300, RData::CNAME(CNAME(n(target))))
    }
    fn mx(owner: &str, pref: u16, host: &str) -> Record {
        Record::from_rdata(n(owner), 300, RData::MX(MX::new(pref, n(host))))
    }
    fn show(rs: &[Record]) -> Vec<String> {
        rs.iter().map(|r| r.data.to_string()).collect()
    }

    #[test]
    fn cnames_stay_first_and_every_address_is_kept() {
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut rs = vec![cname("a.example.", "a.example.")];
            for i in 0..4u8 {
                rs.push(Record::from_rdata(
                    n("a.example."),
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
        // One record in each section: done, nothing touched (not re-encoded).
        let one = encoded(rs[1..2].to_vec());
        let mut w = one.clone();
        assert!(shuffle_wire(&mut w));
        assert_eq!(w, one);
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

    #[test]
    fn coredns_sort_preferred() {
        // CoreDNS's TestSortPreferred.
        let mut rs = vec![
            a("example.org.", "10.9.30.1"),
            a("example.org.", "10.9.20.5"),
            a("example.org.", "192.168.1.2"),
            a("example.org.", "10.10.0.1"),
            a("example.org.", "10.9.20.3"),
            a("example.org.", "172.16.0.1"),
            a("example.org.", "2001:db8::1"),
            a("example.org.", "2001:db8:abcd::1"),
            a("example.org.", "fd00::1"),
            cname("example.org.", "alias.example.org."),
        ];
        let nets: Vec<IpNet> = ["2001:db8::/32", "10.9.20.0/24", "10.9.30.0/24"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        prefer(&mut rs, &nets);
        assert_eq!(
            show(&rs),
            [
                "alias.example.org.",
                "2001:db8::1",
                "2001:db8:abcd::1",
                "10.9.20.5",
                "10.9.20.3",
                "10.9.30.1",
                "192.168.1.2",
                "10.10.0.1",
                "172.16.0.1",
                "fd00::1",
            ]
        );
    }

    const ONE_DOMAIN: &str = "\nw1,example.org\n192.168.1.15 10\n192.168.1.14 20\n";
    const TWO_DOMAINS: &str = "\n# domain 1\nw1.example.org\n192.168.1.15   10\n192.168.1.14   20\n\n# domain 2\nw2.example.org\n # domain 3\n w3.example.org\n 192.168.2.16 11\n 192.168.2.15 12\n 192.168.2.14 13\n";

    #[test]
    fn coredns_weight_file_table() {
        // CoreDNS's TestWeightFileUpdate.
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(parse_weights("", "f").unwrap().is_empty());
        let w = parse_weights(ONE_DOMAIN, "f").unwrap();
        assert_eq!(
            w["w1,example.org."],
            [(ip("192.168.1.15"), 10), (ip("192.168.1.14"), 20)]
        );
        let w = parse_weights(TWO_DOMAINS, "f").unwrap();
        assert_eq!(w.len(), 3);
        assert!(w["w2.example.org."].is_empty());
        assert_eq!(w["w3.example.org."].len(), 3);
        for (text, want) in [
            (
                "\nw1,example.org\n192.168.1.14\n192.168.1.15 20\n",
                "wrong domain name",
            ),
            (
                "\n# missing domain\n192.168.1.14 10\nw2,example.org\n",
                "missing domain name",
            ),
            ("\nw1,example.org\n192.168.1.300 10\n", "wrong IP address"),
            ("\nw1,example.org\n192.168.1.14 300\n", "wrong weight value"),
            ("\nw1,example.org\n192.168.1.14 0\n", "wrong weight value"),
            ("\nw1\n1.2.3.4 1 2\n", "could not parse weight line"),
        ] {
            let e = parse_weights(text, "f").unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn coredns_weighted_table() {
        // CoreDNS's TestLoadBalanceWRR: a fake draw picks the top address.
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut two = Weights::new();
        two.insert(
            "endpoint.region2.skydns.test.".into(),
            vec![(ip("10.240.0.2"), 5), (ip("10.240.0.1"), 2)],
        );
        two.insert(
            "endpoint.region1.skydns.test.".into(),
            vec![(ip("::2"), 4), (ip("::1"), 3)],
        );
        let mut one = Weights::new();
        one.insert(
            "endpoint.region2.skydns.test.".into(),
            vec![(ip("10.240.0.2"), 3), (ip("10.240.0.1"), 2)],
        );
        let answer1 = vec![
            cname("cname1.region2.skydns.test.", "cname2.region2.skydns.test."),
            cname("cname2.region2.skydns.test.", "cname3.region2.skydns.test."),
            cname("cname5.region2.skydns.test.", "cname6.region2.skydns.test."),
            cname(
                "cname6.region2.skydns.test.",
                "endpoint.region2.skydns.test.",
            ),
            a("endpoint.region2.skydns.test.", "10.240.0.1"),
            a("endpoint.region2.skydns.test.", "10.240.0.2"),
            a("endpoint.region2.skydns.test.", "10.240.0.3"),
            a("endpoint.region1.skydns.test.", "::1"),
            a("endpoint.region1.skydns.test.", "::2"),
            mx("mx.region2.skydns.test.", 1, "mx1.region2.skydns.test."),
            mx("mx.region2.skydns.test.", 2, "mx2.region2.skydns.test."),
            mx("mx.region2.skydns.test.", 3, "mx3.region2.skydns.test."),
        ];
        let answer2 = vec![
            a("endpoint.region2.skydns.test.", "10.240.0.1"),
            mx("mx.region2.skydns.test.", 1, "mx1.region2.skydns.test."),
            cname(
                "cname.region2.skydns.test.",
                "endpoint.region2.skydns.test.",
            ),
            a("endpoint.region2.skydns.test.", "10.240.0.2"),
            a("endpoint.region1.skydns.test.", "10.240.0.3"),
        ];
        type Case<'a> = (&'a [Record], &'a Weights, u32, &'a [(u32, &'a str)]);
        let cases: &[Case<'_>] = &[
            (
                &answer1,
                &two,
                15,
                &[
                    (0, "10.240.0.2"),
                    (4, "10.240.0.2"),
                    (5, "::2"),
                    (8, "::2"),
                    (9, "::1"),
                    (11, "::1"),
                    (12, "10.240.0.1"),
                    (13, "10.240.0.1"),
                    (14, "10.240.0.3"),
                ],
            ),
            (
                &answer2,
                &one,
                6,
                &[
                    (0, "10.240.0.2"),
                    (2, "10.240.0.2"),
                    (3, "10.240.0.1"),
                    (4, "10.240.0.1"),
                    (5, "10.240.0.3"),
                ],
            ),
        ];
        for (answer, weights, sum, queries) in cases {
            for (v, top) in *queries {
                let mut rs = answer.to_vec();
                weighted(&mut rs, weights, |s| {
                    assert_eq!(s, *sum);
                    *v
                });
                let kinds: Vec<RecordType> = rs.iter().map(|r| r.record_type()).collect();
                let first_addr = rs.iter().position(|r| address(r).is_some()).unwrap();
                assert_eq!(rs[first_addr].data.to_string(), *top, "draw {v}");
                // CNAMEs, then addresses, then MX.
                let mut sorted = kinds.clone();
                sorted.sort_by_key(|k| match k {
                    RecordType::CNAME => 0,
                    RecordType::A | RecordType::AAAA => 1,
                    _ => 2,
                });
                assert_eq!(kinds, sorted);
                assert_eq!(rs.len(), answer.len());
            }
        }
        // No address records: left as it is.
        let mut rs = vec![
            mx("mx.region2.skydns.test.", 1, "mx1.region2.skydns.test."),
            cname(
                "cname.region2.skydns.test.",
                "endpoint.region2.skydns.test.",
            ),
        ];
        let before = show(&rs);
        weighted(&mut rs, &one, |_| panic!("no draw without addresses"));
        assert_eq!(show(&rs), before);
    }

    /// Answers with the records it was built with (CoreDNS's handler() echoing the request).
    struct Canned(Vec<Record>, Vec<Record>);

    #[async_trait::async_trait]
    impl Handler for Canned {
        fn name(&self) -> &'static str {
            "canned"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = req.reply();
            m.answers = self.0.clone();
            m.additionals = self.1.clone();
            Ok(Response::new(m, "canned"))
        }
    }

    fn rr(s: &str) -> Record {
        crate::zonefile::parse_str(s, std::path::Path::new("t"), &Name::root())
            .unwrap()
            .remove(0)
            .record
    }

    async fn through(qtype: RecordType, answer: &[&str], extra: &[&str]) -> Message {
        let lb: Arc<dyn Handler> = Arc::new(LoadBalance {
            prefer: vec![],
            weights: None,
        });
        let next = Arc::new(Canned(
            answer.iter().map(|s| rr(s)).collect(),
            extra.iter().map(|s| rr(s)).collect(),
        ));
        let chain = crate::plugins::Chain::new(vec![lb, next]);
        let req = Request::new(
            n("region2.skydns.test."),
            qtype,
            "127.0.0.1:1".parse().unwrap(),
            crate::plugins::Proto::Udp,
        );
        chain.run(&req).await.unwrap().msg.into_message()
    }

    /// CoreDNS's countRecords: CNAMEs, addresses and MX records, and whether they come in
    /// that order.
    fn count(rs: &[Record]) -> (usize, usize, usize, bool) {
        let (mut c, mut a, mut m, mut state, mut sorted) = (0, 0, 0, 0, true);
        for r in rs {
            let s = match r.record_type() {
                RecordType::CNAME => {
                    c += 1;
                    1
                }
                RecordType::A | RecordType::AAAA => {
                    a += 1;
                    2
                }
                RecordType::MX => {
                    m += 1;
                    3
                }
                _ => 4,
            };
            if s < 4 {
                sorted = sorted && state <= s;
            }
            state = s;
        }
        (c, a, m, sorted)
    }

    #[tokio::test]
    async fn coredns_load_balance_random() {
        // plugin/loadbalance/loadbalance_test.go: TestLoadBalanceRandom — (answer, extra,
        // (CNAME, address, MX) counts in answer and extra), CNAMEs then addresses then MX.
        const C1: &str = "cname1.region2.skydns.test. 300 IN CNAME cname2.region2.skydns.test.";
        const C2: &str = "cname2.region2.skydns.test. 300 IN CNAME cname3.region2.skydns.test.";
        const C5: &str = "cname5.region2.skydns.test. 300 IN CNAME cname6.region2.skydns.test.";
        const C6: &str = "cname6.region2.skydns.test. 300 IN CNAME endpoint.region2.skydns.test.";
        const C: &str = "cname.region2.skydns.test. 300 IN CNAME endpoint.region2.skydns.test.";
        const A1: &str = "endpoint.region2.skydns.test. 300 IN A 10.240.0.1";
        const A2: &str = "endpoint.region2.skydns.test. 300 IN A 10.240.0.2";
        const A3: &str = "endpoint.region2.skydns.test. 300 IN A 10.240.0.3";
        const Q1: &str = "endpoint.region2.skydns.test. 300 IN AAAA ::1";
        const Q2: &str = "endpoint.region2.skydns.test. 300 IN AAAA ::2";
        const M1: &str = "mx.region2.skydns.test. 300 IN MX 1 mx1.region2.skydns.test.";
        const M2: &str = "mx.region2.skydns.test. 300 IN MX 2 mx2.region2.skydns.test.";
        const M3: &str = "mx.region2.skydns.test. 300 IN MX 3 mx3.region2.skydns.test.";
        type Row<'a> = (
            &'a [&'a str],
            &'a [&'a str],
            (usize, usize, usize),
            (usize, usize, usize),
        );
        let rows: &[Row<'_>] = &[
            (&[C1, C2, C5, C6, A1, M1, M2, M3], &[], (4, 1, 3), (0, 0, 0)),
            (&[A1, M1, C], &[], (1, 1, 1), (0, 0, 0)),
            (
                &[M1, A1, A2, M2, C2, A3, M3],
                &[A1, Q1, M1, C2, M2, A3, Q2, M3],
                (1, 3, 3),
                (1, 4, 3),
            ),
        ];
        for (i, (answer, extra, wa, we)) in rows.iter().enumerate() {
            let m = through(RecordType::SRV, answer, extra).await;
            let (c, a, x, sorted) = count(&m.answers);
            assert!(sorted, "row {i}: answer order");
            assert_eq!((c, a, x), *wa, "row {i}: answer");
            let (c, a, x, sorted) = count(&m.additionals);
            assert!(sorted, "row {i}: extra order");
            assert_eq!((c, a, x), *we, "row {i}: extra");
        }
    }

    #[tokio::test]
    async fn coredns_load_balance_xfr() {
        // plugin/loadbalance/loadbalance_test.go: TestLoadBalanceXFR — a transfer keeps its
        // SOA first and last.
        let soa = "skydns.test. 30 IN SOA ns.dns.skydns.test. hostmaster.skydns.test. 1542756695 7200 1800 86400 30";
        let answer = [
            soa,
            "mx.region2.skydns.test. 300 IN MX 1 mx1.region2.skydns.test.",
            "endpoint.region2.skydns.test. 300 IN A 10.240.0.1",
            "endpoint.region2.skydns.test. 300 IN A 10.240.0.2",
            "mx.region2.skydns.test. 300 IN MX 1 mx2.region2.skydns.test.",
            "cname2.region2.skydns.test. 300 IN CNAME cname3.region2.skydns.test.",
            "endpoint.region2.skydns.test. 300 IN A 10.240.0.3",
            "mx.region2.skydns.test. 300 IN MX 1 mx3.region2.skydns.test.",
            soa,
        ];
        for t in [RecordType::IXFR, RecordType::AXFR] {
            let m = through(t, &answer, &[]).await;
            assert_eq!(m.answers[0].record_type(), RecordType::SOA, "{t}");
            assert_eq!(
                m.answers.last().unwrap().record_type(),
                RecordType::SOA,
                "{t}"
            );
        }
    }

    #[test]
    fn coredns_round_robin_keeps_every_record() {
        // plugin/loadbalance/loadbalance_test.go: TestRoundRobinDoesNotMutateInput — the
        // shuffle gives back every record (the input is moved here, so it cannot be mutated
        // behind the caller's back).
        for input in [
            vec![
                "a.example.org. 300 IN A 10.0.0.1",
                "a.example.org. 300 IN A 10.0.0.2",
                "a.example.org. 300 IN A 10.0.0.3",
                "a.example.org. 300 IN A 10.0.0.4",
            ],
            vec![
                "a.example.org. 300 IN CNAME b.example.org.",
                "b.example.org. 300 IN A 10.0.0.1",
                "b.example.org. 300 IN A 10.0.0.2",
                "example.org. 300 IN MX 10 mx.example.org.",
            ],
        ] {
            let before: Vec<Record> = input.iter().map(|s| rr(s)).collect();
            for _ in 0..50 {
                let mut out = before.clone();
                shuffle(&mut out);
                let mut got = show(&out);
                let mut want = show(&before);
                got.sort();
                want.sort();
                assert_eq!(got, want);
            }
        }
    }
}
