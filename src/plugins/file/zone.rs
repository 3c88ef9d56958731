//! One loaded zone and the authoritative lookup in it (CoreDNS's plugin/file zone.go and
//! lookup.go, with the differences listed in the README's Compatibility section).
//!
//! Names are kept in a `BTreeMap` ordered as RFC 4034 §6.1 orders them (hickory's `Name` order:
//! case-insensitive, label by label from the root), so a name's descendants follow it directly
//! and the name before a query name is the one whose NSEC covers it.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use hickory_proto::rr::rdata::CNAME;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::zonefile::{self, Entry};

/// Longest CNAME chain followed inside a zone.
const MAX_CHAIN: usize = 8;

/// How a lookup ended; decides the rcode, the AA flag and the authority section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An answer (possibly a CNAME chain).
    Success,
    /// The name exists, not with this type.
    NoData,
    /// The name does not exist.
    NameError,
    /// A referral to a child zone.
    Delegation,
    /// A DNAME substitution that made an over-long or looping name.
    ServerFailure,
    /// A DNAME substitution that made a name longer than 255 octets (RFC 6672 §2.2).
    YxDomain,
}

/// The sections of an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Lookup {
    /// Answer section.
    pub answer: Vec<Record>,
    /// Authority section.
    pub ns: Vec<Record>,
    /// Additional section.
    pub extra: Vec<Record>,
    /// How it ended.
    pub outcome: Outcome,
}

/// What [`Zone::lookup`] found: an answer, or a CNAME chain whose target must be looked up
/// outside this zone's data (through the server, as CoreDNS's `upstream` does).
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// The answer.
    Done(Lookup),
    /// `chain` ends in `target`, which this zone cannot answer by itself.
    Chase {
        /// The records so far (CNAMEs, DNAME, their signatures).
        chain: Vec<Record>,
        /// Where the chain leads.
        target: Name,
    },
}

/// An RRset and the RRSIGs that cover it.
#[derive(Debug, Clone, Default)]
struct RRset {
    records: Vec<Record>,
    sigs: Vec<Record>,
}

/// The data at one owner name.
#[derive(Debug, Clone, Default)]
struct Node {
    sets: Vec<(RecordType, RRset)>,
}

impl Node {
    fn get(&self, t: RecordType) -> Option<&RRset> {
        self.sets.iter().find(|(k, _)| *k == t).map(|(_, s)| s)
    }

    fn entry(&mut self, t: RecordType) -> &mut RRset {
        match self.sets.iter().position(|(k, _)| *k == t) {
            Some(i) => &mut self.sets[i].1,
            None => {
                self.sets.push((t, RRset::default()));
                &mut self.sets.last_mut().expect("just pushed").1
            }
        }
    }

    /// The records of type `t`, with their signatures when `dnssec`.
    fn typed(&self, t: RecordType, dnssec: bool) -> Vec<Record> {
        let mut out = Vec::new();
        if t == RecordType::RRSIG {
            for (_, s) in &self.sets {
                out.extend(s.sigs.iter().cloned());
            }
            return out;
        }
        if let Some(s) = self.get(t) {
            out.extend(s.records.iter().cloned());
            if dnssec {
                out.extend(s.sigs.iter().cloned());
            }
        }
        out
    }

    fn has(&self, t: RecordType) -> bool {
        self.get(t).is_some_and(|s| !s.records.is_empty())
    }
}

/// A loaded zone: immutable, swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    soa: Record,
    serial: u32,
    nodes: BTreeMap<Name, Node>,
    records: usize,
}

/// Why a zone file is not a zone.
pub type Error = zonefile::Error;

impl Zone {
    /// Reads the zone `origin` from `path`.
    pub fn load(path: &Path, origin: &Name) -> Result<Zone, Error> {
        let entries = zonefile::parse_file(path, origin)?;
        Self::from_entries(path, origin, entries)
    }

    /// Builds the zone from parsed entries (records outside `origin` are dropped with a
    /// warning, as knotd and BIND drop them).
    pub fn from_entries(path: &Path, origin: &Name, entries: Vec<Entry>) -> Result<Zone, Error> {
        let origin = origin.to_lowercase();
        let mut nodes: BTreeMap<Name, Node> = BTreeMap::new();
        let mut soa: Option<Record> = None;
        let mut records = 0;
        for Entry {
            mut record,
            file,
            line,
        } in entries
        {
            let at = |msg: String| Error {
                file: file.to_path_buf(),
                line,
                msg,
            };
            if record.dns_class != DNSClass::IN {
                return Err(at(format!("class {} is not IN", record.dns_class)));
            }
            record.name = record.name.to_lowercase();
            if !origin.zone_of(&record.name) {
                tracing::warn!(target: "plugin/file", "{}:{line}: {} is outside the zone {origin}, ignored", file.display(), record.name);
                continue;
            }
            let rtype = record.record_type();
            match rtype {
                RecordType::NSEC3 | RecordType::NSEC3PARAM => {
                    return Err(at(format!(
                        "NSEC3 zone is not supported, dropping RR: {} for zone: {origin}",
                        record.name
                    )));
                }
                RecordType::SOA => {
                    if record.name != origin {
                        return Err(at(format!(
                            "SOA owner {} is not the zone origin {origin}",
                            record.name
                        )));
                    }
                    if soa.is_some() {
                        return Err(at(format!("more than one SOA for origin {origin}")));
                    }
                    soa = Some(record.clone());
                }
                _ => {}
            }
            let node = nodes.entry(record.name.clone()).or_default();
            if rtype == RecordType::RRSIG {
                let covered = covered_type(&record).ok_or_else(|| at("bad RRSIG".into()))?;
                node.entry(covered).sigs.push(record);
            } else {
                let set = node.entry(rtype);
                if !set.records.iter().any(|r| r.data == record.data) {
                    set.records.push(record);
                }
            }
            records += 1;
        }
        let Some(soa) = soa else {
            return Err(Error {
                file: path.to_path_buf(),
                line: 0,
                msg: format!(
                    "file {:?} has no SOA record for origin {origin}",
                    path.display().to_string()
                ),
            });
        };
        let RData::SOA(s) = &soa.data else {
            unreachable!("an SOA record has SOA data")
        };
        Ok(Zone {
            serial: s.serial,
            origin,
            soa,
            nodes,
            records,
        })
    }

    /// The zone's name (lower-case).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The SOA serial.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// How many records the file held (inside the zone).
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether the zone holds no records (never: it has an SOA).
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The SOA record.
    pub fn soa(&self) -> &Record {
        &self.soa
    }

    /// Every record but the SOA (its signatures included), in canonical order of owner names:
    /// the body of a transfer, which the caller frames with the SOA.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.nodes.values().flat_map(|n| {
            n.sets.iter().flat_map(|(t, s)| {
                let own = s.records.iter().filter(move |_| *t != RecordType::SOA);
                own.chain(s.sigs.iter())
            })
        })
    }

    fn apex(&self) -> &Node {
        self.nodes
            .get(&self.origin)
            .expect("the apex holds the SOA")
    }

    /// The SOA for a negative answer: its TTL is the smaller of its own and its MINIMUM
    /// (RFC 2308 §3), as is that of its signatures.
    fn negative_soa(&self, dnssec: bool) -> Vec<Record> {
        let RData::SOA(s) = &self.soa.data else {
            unreachable!()
        };
        let ttl = self.soa.ttl.min(s.minimum);
        let mut out = self.apex().typed(RecordType::SOA, dnssec);
        for r in &mut out {
            r.ttl = r.ttl.min(ttl);
        }
        out
    }

    fn search(&self, name: &Name) -> Option<&Node> {
        self.nodes.get(name)
    }

    /// Whether a name strictly below `name` exists (then `name` is at least an empty
    /// non-terminal).
    fn has_descendant(&self, name: &Name) -> bool {
        self.nodes
            .range((Bound::Excluded(name), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| name.zone_of(k))
    }

    /// The NSEC (and its signatures) of the nearest name before `name` that has one.
    fn covering_nsec(&self, name: &Name) -> Vec<Record> {
        self.nodes
            .range(..=name)
            .rev()
            .find(|(_, n)| n.has(RecordType::NSEC))
            .map(|(_, n)| n.typed(RecordType::NSEC, true))
            .unwrap_or_default()
    }

    /// `origin` plus the `i` labels of `qname` below it; `None` past the whole name.
    fn name_from_right(&self, qname: &Name, i: usize) -> Option<Name> {
        let n = labels(&self.origin) + i;
        (n <= labels(qname)).then(|| qname.trim_to(n))
    }

    /// A delegation at `node` (not the apex) for `qname`: the NS (with DS when `dnssec`) and
    /// their glue. A DS query at the cut itself is the parent's to answer.
    fn delegation(
        &self,
        owner: &Name,
        node: &Node,
        qname: &Name,
        qtype: RecordType,
        dnssec: bool,
    ) -> Option<(Vec<Record>, Vec<Record>)> {
        if *owner == self.origin || !node.has(RecordType::NS) {
            return None;
        }
        if qtype == RecordType::DS && owner == qname {
            return None;
        }
        // The NS of a cut are not authoritative data: never signed, sent without signatures.
        let mut ns = node.typed(RecordType::NS, false);
        let extra = self.glue(&ns, dnssec);
        if dnssec {
            // The DS, or the NSEC proving there is none (RFC 4035 §3.1.4).
            let ds = node.typed(RecordType::DS, true);
            if ds.is_empty() {
                ns.extend(node.typed(RecordType::NSEC, true));
            }
            ns.extend(ds);
        }
        Some((ns, extra))
    }

    /// Addresses (and their signatures) of NS targets held in the zone.
    fn glue(&self, ns: &[Record], dnssec: bool) -> Vec<Record> {
        let mut out = Vec::new();
        for r in ns {
            let RData::NS(target) = &r.data else { continue };
            if let Some(node) = self.search(&target.0) {
                out.extend(node.typed(RecordType::A, dnssec));
                out.extend(node.typed(RecordType::AAAA, dnssec));
            }
        }
        out
    }

    /// Additional-section addresses for in-zone SRV, MX, SVCB and HTTPS targets, each target
    /// once.
    fn additional(&self, answer: &[Record], dnssec: bool) -> Vec<Record> {
        let mut seen: Vec<&Name> = Vec::new();
        let mut out = Vec::new();
        for r in answer {
            let target = match &r.data {
                RData::SRV(s) => &s.target,
                RData::MX(m) => &m.exchange,
                RData::SVCB(s) => &s.target_name,
                RData::HTTPS(h) => &h.0.target_name,
                _ => continue,
            };
            if !self.origin.zone_of(target) || seen.contains(&target) {
                continue;
            }
            seen.push(target);
            if let Some(node) = self.search(target) {
                out.extend(node.typed(RecordType::A, dnssec));
                out.extend(node.typed(RecordType::AAAA, dnssec));
            }
        }
        out
    }

    fn done(answer: Vec<Record>, ns: Vec<Record>, extra: Vec<Record>, outcome: Outcome) -> Found {
        Found::Done(Lookup {
            answer,
            ns,
            extra,
            outcome,
        })
    }

    /// Answers `qname`/`qtype` from the zone (`qname` must be in it). `dnssec`: the DO bit.
    pub fn lookup(&self, qname: &Name, qtype: RecordType, dnssec: bool) -> Found {
        self.lookup_in(qname, qtype, dnssec, &mut Vec::new())
    }

    /// [`Zone::lookup`] inside a CNAME chain whose owners are `seen`.
    fn lookup_in(
        &self,
        qname: &Name,
        qtype: RecordType,
        dnssec: bool,
        seen: &mut Vec<Name>,
    ) -> Found {
        if *qname == self.origin {
            match qtype {
                RecordType::SOA => {
                    return Self::done(
                        self.apex().typed(RecordType::SOA, dnssec),
                        Vec::new(),
                        Vec::new(),
                        Outcome::Success,
                    );
                }
                RecordType::NS => {
                    let ns = self.apex().typed(RecordType::NS, dnssec);
                    let glue = self.glue(&ns, dnssec);
                    return Self::done(ns, Vec::new(), glue, Outcome::Success);
                }
                _ => {}
            }
        }

        // Walk down from the apex one label at a time: a zone cut or DNAME on the way decides
        // the answer; names that are not there may be empty non-terminals, so keep going, and
        // remember the deepest wildcard seen where a name was missing.
        let mut i = 0;
        let mut found: Option<&Node> = None;
        let mut wild: Option<(Name, Option<&Node>)> = None;
        while let Some(parts) = self.name_from_right(qname, i) {
            i += 1;
            let Some(node) = self.search(&parts) else {
                found = None;
                let wildcard = parts.base_name().prepend_label("*").ok();
                if let Some(wc) = wildcard {
                    if let Some(w) = self.search(&wc) {
                        wild = Some((wc, Some(w)));
                    } else if self.has_descendant(&wc) {
                        wild = Some((wc, None));
                    }
                }
                continue;
            };
            found = Some(node);
            if let Some(dname) = node.get(RecordType::DNAME).and_then(|s| s.records.first()) {
                if let Some(f) = self.dname(qname, qtype, dnssec, node, dname, seen) {
                    return f;
                }
            }
            if let Some((ns, extra)) = self.delegation(&parts, node, qname, qtype, dnssec) {
                return Self::done(Vec::new(), ns, extra, Outcome::Delegation);
            }
        }

        if let Some(node) = found {
            if follows_cname(qtype) {
                if let Some(cname) = node
                    .get(RecordType::CNAME)
                    .filter(|s| !s.records.is_empty())
                {
                    let mut chain = cname.records.clone();
                    if dnssec {
                        chain.extend(cname.sigs.iter().cloned());
                    }
                    return self.follow(chain, qtype, dnssec, seen);
                }
            }
            let rrs = node.typed(qtype, dnssec);
            if rrs.is_empty() {
                let mut ns = self.negative_soa(dnssec);
                if dnssec {
                    ns.extend(node.typed(RecordType::NSEC, true));
                }
                return Self::done(Vec::new(), ns, Vec::new(), Outcome::NoData);
            }
            let extra = self.additional(&rrs, dnssec);
            return Self::done(rrs, Vec::new(), extra, Outcome::Success);
        }

        // Not there: a wildcard may synthesize it (RFC 4592), unless an empty non-terminal
        // closer to the name is the closest encloser.
        if let Some((_, wnode)) = wild.filter(|(wc, _)| !self.closer_ent_exists(qname, wc)) {
            let Some(wnode) = wnode else {
                return Self::done(
                    Vec::new(),
                    self.negative_soa(dnssec),
                    Vec::new(),
                    Outcome::NoData,
                );
            };
            let owner = qname.to_lowercase();
            let synth = |t: RecordType| -> Vec<Record> {
                wnode
                    .typed(t, dnssec)
                    .into_iter()
                    .map(|mut r| {
                        r.name = owner.clone();
                        r
                    })
                    .collect()
            };
            if follows_cname(qtype) && wnode.has(RecordType::CNAME) {
                let mut f = self.follow(synth(RecordType::CNAME), qtype, dnssec, seen);
                if let Found::Done(l) = &mut f {
                    if dnssec && matches!(l.outcome, Outcome::Success | Outcome::NoData) {
                        // No closer name exists: the NSEC that covers the query name says so.
                        l.ns.extend(self.covering_nsec(qname));
                    }
                }
                return f;
            }
            let rrs = synth(qtype);
            if rrs.is_empty() {
                let mut ns = self.negative_soa(dnssec);
                if dnssec {
                    ns.extend(wnode.typed(RecordType::NSEC, true));
                }
                return Self::done(Vec::new(), ns, Vec::new(), Outcome::NoData);
            }
            let extra = self.additional(&rrs, dnssec);
            let mut ns = Vec::new();
            if dnssec && qtype != RecordType::NSEC {
                // No closer name exists: the NSEC that covers the query name says so.
                ns.extend(self.covering_nsec(qname));
            }
            return Self::done(rrs, ns, extra, Outcome::Success);
        }

        // An empty non-terminal is NODATA; anything else NXDOMAIN.
        let outcome = if self.has_descendant(qname) {
            Outcome::NoData
        } else {
            Outcome::NameError
        };
        let mut ns = self.negative_soa(dnssec);
        if dnssec {
            let deny = self.covering_nsec(qname);
            let deny_owner = deny.first().map(|r| r.name.clone());
            ns.extend(deny);
            if outcome == Outcome::NameError {
                // …and no wildcard at the closest encloser.
                if let Some(ce) = self.closest_encloser(qname) {
                    if let Ok(wc) = ce.prepend_label("*") {
                        let wdeny = self.covering_nsec(&wc);
                        if wdeny.first().map(|r| &r.name) != deny_owner.as_ref() {
                            ns.extend(wdeny);
                        }
                    }
                }
            }
        }
        Self::done(Vec::new(), ns, Vec::new(), outcome)
    }

    /// DNAME substitution (RFC 6672) for a `qname` below `owner`'s DNAME.
    fn dname(
        &self,
        qname: &Name,
        qtype: RecordType,
        dnssec: bool,
        node: &Node,
        dname: &Record,
        seen: &mut Vec<Name>,
    ) -> Option<Found> {
        let owner = &dname.name;
        if qname == owner || !owner.zone_of(qname) {
            return None;
        }
        let target = rdata_name(dname)?;
        let lower = qname.to_lowercase();
        let keep = labels(qname) - labels(owner);
        let mut dname_rrs = node.typed(RecordType::DNAME, dnssec);
        let Ok(mut new) = Name::from_labels(lower.iter().take(keep)) else {
            return Some(Self::done(
                dname_rrs,
                Vec::new(),
                Vec::new(),
                Outcome::YxDomain,
            ));
        };
        new.set_fqdn(false);
        let Ok(new) = new.append_name(&target) else {
            return Some(Self::done(
                dname_rrs,
                Vec::new(),
                Vec::new(),
                Outcome::YxDomain,
            ));
        };
        if new == *qname {
            return Some(Self::done(
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Outcome::ServerFailure,
            ));
        }
        let cname = Record::from_rdata(qname.to_lowercase(), dname.ttl, RData::CNAME(CNAME(new)));
        if qtype == RecordType::CNAME {
            dname_rrs.push(cname);
            return Some(Self::done(
                dname_rrs,
                Vec::new(),
                Vec::new(),
                Outcome::Success,
            ));
        }
        dname_rrs.push(cname);
        Some(self.follow(dname_rrs, qtype, dnssec, seen))
    }

    /// Follows the CNAME that ends `chain`: a target in the zone is looked up here (its
    /// records, a referral, a wildcard, NXDOMAIN or NODATA with their proofs, the next CNAME),
    /// one outside it is left to the server. A chain that comes back to a name it holds, or
    /// grows past [`MAX_CHAIN`], stops where it is (knotd's answer to a loop).
    fn follow(
        &self,
        chain: Vec<Record>,
        qtype: RecordType,
        dnssec: bool,
        seen: &mut Vec<Name>,
    ) -> Found {
        for r in &chain {
            if r.record_type() == RecordType::CNAME && !seen.contains(&r.name) {
                seen.push(r.name.clone());
            }
        }
        let Some(target) = chain.iter().rev().find_map(|r| match &r.data {
            RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        }) else {
            return Self::done(chain, Vec::new(), Vec::new(), Outcome::Success);
        };
        if seen.contains(&target) || seen.len() > MAX_CHAIN {
            return Self::done(chain, Vec::new(), Vec::new(), Outcome::Success);
        }
        if !self.origin.zone_of(&target) {
            // Outside the zone: ask the server, as CoreDNS's upstream lookup does.
            return Found::Chase { chain, target };
        }
        match self.lookup_in(&target, qtype, dnssec, seen) {
            Found::Done(l) => {
                let mut answer = chain;
                answer.extend(l.answer);
                let extra = match l.outcome {
                    Outcome::Success => self.additional(&answer, dnssec),
                    _ => l.extra,
                };
                Self::done(answer, l.ns, extra, l.outcome)
            }
            Found::Chase {
                chain: rest,
                target,
            } => {
                let mut all = chain;
                all.extend(rest);
                Found::Chase { chain: all, target }
            }
        }
    }

    /// Completes a [`Found::Chase`] with what the server answered for the target (`None` when
    /// the lookup failed): the answer's records join the chain, rcode and authority follow it.
    pub fn finish_chase(
        &self,
        mut chain: Vec<Record>,
        qtype: RecordType,
        upstream: Option<(hickory_proto::op::ResponseCode, Vec<Record>)>,
        dnssec: bool,
    ) -> Lookup {
        use hickory_proto::op::ResponseCode;
        let outcome = match &upstream {
            None => Outcome::ServerFailure,
            Some((ResponseCode::NXDomain, _)) => Outcome::NameError,
            Some((ResponseCode::ServFail, _)) => Outcome::ServerFailure,
            // No record of the asked type at the end of the chain: NODATA.
            Some((ResponseCode::NoError, a))
                if qtype != RecordType::CNAME && !a.iter().any(|r| r.record_type() == qtype) =>
            {
                Outcome::NoData
            }
            Some(_) => Outcome::Success,
        };
        if let Some((_, answers)) = upstream {
            chain.extend(answers);
        }
        let ns = match outcome {
            Outcome::NameError | Outcome::NoData => self.negative_soa(dnssec),
            _ => Vec::new(),
        };
        let extra = self.additional(&chain, dnssec);
        Lookup {
            answer: chain,
            ns,
            extra,
            outcome,
        }
    }

    /// Whether an empty non-terminal lies between the wildcard's parent and `qname`: then it
    /// is the closest encloser and the wildcard does not apply (RFC 4592 §2.2.1).
    fn closer_ent_exists(&self, qname: &Name, wildcard: &Name) -> bool {
        let parent = wildcard.base_name();
        // The query name itself counts: an empty non-terminal exists, so no wildcard covers
        // it (RFC 4592 §2.2.2; CoreDNS synthesizes there).
        let mut name = qname.clone();
        while name != parent && parent.zone_of(&name) && !name.is_root() {
            if self.has_descendant(&name) {
                return true;
            }
            name = name.base_name();
        }
        false
    }

    /// The closest existing ancestor of `qname` in the zone.
    fn closest_encloser(&self, qname: &Name) -> Option<Name> {
        let mut name = qname.base_name();
        while self.origin.zone_of(&name) {
            // An empty non-terminal exists too (RFC 4592 §3.3.1).
            if self.search(&name).is_some() || self.has_descendant(&name) {
                return Some(name);
            }
            if name.is_root() {
                break;
            }
            name = name.base_name();
        }
        None
    }
}

/// Whether a CNAME at the name answers for `qtype`: not for CNAME itself, nor for the types
/// that live beside a CNAME (RFC 4035 §2.5: RRSIG and NSEC), as knotd does.
fn follows_cname(qtype: RecordType) -> bool {
    !matches!(
        qtype,
        RecordType::CNAME | RecordType::RRSIG | RecordType::NSEC
    )
}

/// The number of labels of `name`, a leading `*` included (hickory's `num_labels` leaves it
/// out, as RRSIG's label count does).
fn labels(name: &Name) -> usize {
    name.iter().count()
}

/// The type an RRSIG covers (the first two octets of its data).
fn covered_type(r: &Record) -> Option<RecordType> {
    match &r.data {
        RData::Unknown { rdata, .. } if rdata.anything.len() >= 2 => {
            Some(RecordType::from(u16::from_be_bytes([
                rdata.anything[0],
                rdata.anything[1],
            ])))
        }
        _ => None,
    }
}

/// The target of a DNAME (an uncompressed name, kept as opaque data by hickory).
fn rdata_name(r: &Record) -> Option<Name> {
    match &r.data {
        RData::Unknown { rdata, .. } => Name::read(&mut BinDecoder::new(&rdata.anything)).ok(),
        _ => None,
    }
}
