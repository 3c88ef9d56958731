//! DNS messages in wire format (RFC 1035 §4.1): walking records and patching header fields, TTLs
//! and names in place, for the paths that answer from bytes instead of a decoded `Message` —
//! cache hits, the reply's OPT record, the kubernetes fast path. hickory-proto decodes and
//! encodes everything else. Every reader here takes untrusted bytes and returns `None` on
//! anything malformed; none panics.

use std::ops::Range;

/// Size of the fixed header.
pub const HEADER: usize = 12;
/// Type code of the OPT pseudo-record.
pub const TYPE_OPT: u16 = 41;
/// Type code of SOA.
pub const TYPE_SOA: u16 = 6;
/// Type code of NS.
pub const TYPE_NS: u16 = 2;

/// Header flag bits, byte 2.
const QR: u8 = 0x80;
const OPCODE: u8 = 0x78;
const AA: u8 = 0x04;
const TC: u8 = 0x02;
const RD: u8 = 0x01;
/// Header flag bits, byte 3.
const RA: u8 = 0x80;
const AD: u8 = 0x20;
const CD: u8 = 0x10;
const RCODE: u8 = 0x0f;

/// The big-endian u16 at `at`.
pub fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]))
}

/// Offset just past the (possibly compressed) name at `at`, if it is well formed.
pub fn skip_name(buf: &[u8], mut at: usize) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let len = *buf.get(at)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(at + 1),
            0x00 => {
                total += usize::from(len) + 1;
                if total > 255 {
                    return None;
                }
                at += 1 + usize::from(len);
            }
            0xc0 => {
                buf.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// Where the question section ends (the first record starts): the header and `QDCOUNT`
/// questions.
pub fn question_end(buf: &[u8]) -> Option<usize> {
    let mut at = HEADER;
    for _ in 0..u16_at(buf, 4)? {
        at = skip_name(buf, at)? + 4;
    }
    (at <= buf.len()).then_some(at)
}

/// The section a record is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Answer.
    Answer,
    /// Authority.
    Authority,
    /// Additional.
    Additional,
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    /// Its section.
    pub section: Section,
    /// Where it starts (its owner name).
    pub start: usize,
    /// Where its owner name ends (TYPE starts).
    pub name_end: usize,
    /// TYPE.
    pub rtype: u16,
    /// RDATA.
    pub rdata: Range<usize>,
}

impl Rr {
    /// Where its TTL is.
    pub fn ttl_at(&self) -> usize {
        self.name_end + 4
    }
}

/// The records after the question, in order; `None` for the rest once anything is malformed.
pub struct Records<'a> {
    buf: &'a [u8],
    at: usize,
    left: [u16; 3],
}

/// Walks the records of `buf` (a whole message).
pub fn records(buf: &[u8]) -> Option<Records<'_>> {
    Some(Records {
        buf,
        at: question_end(buf)?,
        left: [u16_at(buf, 6)?, u16_at(buf, 8)?, u16_at(buf, 10)?],
    })
}

impl Iterator for Records<'_> {
    type Item = Option<Rr>;

    fn next(&mut self) -> Option<Option<Rr>> {
        let i = self.left.iter().position(|n| *n > 0)?;
        self.left[i] -= 1;
        let section = [Section::Answer, Section::Authority, Section::Additional][i];
        let rr = (|| {
            let start = self.at;
            let name_end = skip_name(self.buf, start)?;
            let rtype = u16_at(self.buf, name_end)?;
            let len = usize::from(u16_at(self.buf, name_end + 8)?);
            let rdata = name_end + 10..name_end + 10 + len;
            if rdata.end > self.buf.len() {
                return None;
            }
            self.at = rdata.end;
            Some(Rr {
                section,
                start,
                name_end,
                rtype,
                rdata,
            })
        })();
        if rr.is_none() {
            self.left = [0; 3];
        }
        Some(rr)
    }
}

/// The header flags a reply carries over from its request: id, opcode, RD and CD; QR is set.
pub fn set_reply_header(buf: &mut [u8], id: u16, opcode: u8, rd: bool, cd: bool) {
    if buf.len() < HEADER {
        return;
    }
    buf[..2].copy_from_slice(&id.to_be_bytes());
    buf[2] = QR | ((opcode << 3) & OPCODE) | (buf[2] & (AA | TC)) | if rd { RD } else { 0 };
    buf[3] = (buf[3] & !CD) | if cd { CD } else { 0 };
}

/// The flags of a message's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    /// QR.
    pub response: bool,
    /// AA.
    pub authoritative: bool,
    /// TC.
    pub truncation: bool,
    /// RD.
    pub recursion_desired: bool,
    /// RA.
    pub recursion_available: bool,
    /// AD.
    pub authentic_data: bool,
    /// CD.
    pub checking_disabled: bool,
    /// The header's 4 bits of the rcode.
    pub rcode: u8,
}

impl Flags {
    /// The flags of `buf`'s header (all clear for a short buffer).
    pub fn of(buf: &[u8]) -> Self {
        let (Some(&a), Some(&b)) = (buf.get(2), buf.get(3)) else {
            return Self::default();
        };
        Self {
            response: a & QR != 0,
            authoritative: a & AA != 0,
            truncation: a & TC != 0,
            recursion_desired: a & RD != 0,
            recursion_available: b & RA != 0,
            authentic_data: b & AD != 0,
            checking_disabled: b & CD != 0,
            rcode: b & RCODE,
        }
    }

    /// Writes AA, TC, RA, AD and the rcode into `buf`'s header (QR, opcode, RD, CD stay).
    pub fn write_answer_bits(&self, buf: &mut [u8]) {
        if buf.len() < HEADER {
            return;
        }
        let bit = |on: bool, b: u8| if on { b } else { 0 };
        buf[2] = (buf[2] & !(AA | TC)) | bit(self.authoritative, AA) | bit(self.truncation, TC);
        buf[3] = (buf[3] & CD)
            | bit(self.recursion_available, RA)
            | bit(self.authentic_data, AD)
            | (self.rcode & RCODE);
    }
}

/// Appends an OPT record (no options; extended rcode 0, version 0) and counts it in ARCOUNT:
/// what hickory writes for an `Edns` with `payload` and the DO bit.
pub fn push_opt(buf: &mut Vec<u8>, payload: u16, dnssec_ok: bool) {
    if buf.len() < HEADER {
        return;
    }
    let p = payload.to_be_bytes();
    buf.extend_from_slice(&[
        0,
        0,
        TYPE_OPT as u8,
        p[0],
        p[1],
        0,
        0,
        if dnssec_ok { 0x80 } else { 0 },
        0,
        0,
        0,
    ]);
    let ar = u16_at(buf, 10).unwrap_or(0).wrapping_add(1);
    buf[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Writes `ttl` into every record's TTL field (OPT records keep theirs).
pub fn set_ttls(buf: &mut [u8], at: &[u16], ttl: u32) {
    let t = ttl.to_be_bytes();
    for &i in at {
        let i = usize::from(i);
        if let Some(dst) = buf.get_mut(i..i + 4) {
            dst.copy_from_slice(&t);
        }
    }
}

/// A plain query as the fast path takes it: QUERY opcode, one question of class IN, nothing in
/// the answer or authority section, at most an OPT record (version 0) in the additional
/// section, and a name of letters, digits, `-` and `_` (so its text needs no escapes).
#[derive(Debug)]
pub struct Question<'a> {
    /// The whole message.
    pub raw: &'a [u8],
    /// ID.
    pub id: u16,
    /// RD.
    pub recursion_desired: bool,
    /// CD.
    pub checking_disabled: bool,
    /// AD.
    pub authentic_data: bool,
    /// QTYPE.
    pub qtype: u16,
    /// Where the question section ends.
    pub end: usize,
    /// The OPT record's payload size and DO bit.
    pub edns: Option<(u16, bool)>,
    /// The name as sent then lower-case, each with its trailing dot.
    text: [u8; 2 * MAX_TEXT],
    text_len: usize,
}

/// The bytes a plain name's labels may hold: letters, digits, `-` and `_`.
static PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        i += 1;
    }
    t
};

/// The longest name text (253 characters and the root's dot; a longer name is not plain).
const MAX_TEXT: usize = 256;

impl<'a> Question<'a> {
    /// Parses `raw` if it is a plain query (see the type).
    pub fn parse(raw: &'a [u8]) -> Option<Self> {
        let h = raw.get(..HEADER)?;
        // QR clear, opcode QUERY; one question, no answers or authorities, at most an OPT.
        if h[2] & (QR | OPCODE) != 0
            || u16_at(h, 4)? != 1
            || u16_at(h, 6)? != 0
            || u16_at(h, 8)? != 0
            || u16_at(h, 10)? > 1
        {
            return None;
        }
        let mut text = [0u8; 2 * MAX_TEXT];
        let mut n = 0;
        let mut at = HEADER;
        loop {
            let len = usize::from(*raw.get(at)?);
            if len == 0 {
                break;
            }
            if len > 63 || n + len + 1 > MAX_TEXT - 1 {
                return None;
            }
            let label = raw.get(at + 1..at + 1 + len)?;
            if !label.iter().all(|&b| PLAIN[usize::from(b)]) {
                return None;
            }
            text[n..n + len].copy_from_slice(label);
            n += len;
            text[n] = b'.';
            n += 1;
            at += 1 + len;
        }
        if n == 0 {
            text[0] = b'.';
            n = 1;
        }
        let qtype = u16_at(raw, at + 1)?;
        if u16_at(raw, at + 3)? != 1 {
            return None;
        }
        let end = at + 5;
        let mut edns = None;
        if u16_at(h, 10)? == 1 {
            // The root name, TYPE OPT, CLASS = payload, TTL = ext-rcode, version, flags.
            if raw.get(end) != Some(&0) || u16_at(raw, end + 1)? != TYPE_OPT {
                return None;
            }
            let payload = u16_at(raw, end + 3)?;
            if *raw.get(end + 6)? != 0 {
                return None; // version 0 only (else BADVERS)
            }
            let dnssec_ok = raw.get(end + 7)? & 0x80 != 0;
            let rdlen = usize::from(u16_at(raw, end + 9)?);
            if end + 11 + rdlen != raw.len() {
                return None;
            }
            edns = Some((payload, dnssec_ok));
        } else if end != raw.len() {
            return None;
        }
        let (sent, lower) = text.split_at_mut(MAX_TEXT);
        lower[..n].copy_from_slice(&sent[..n]);
        lower[..n].make_ascii_lowercase();
        Some(Self {
            raw,
            id: u16_at(h, 0)?,
            recursion_desired: h[2] & RD != 0,
            checking_disabled: h[3] & CD != 0,
            authentic_data: h[3] & AD != 0,
            qtype,
            end,
            edns,
            text,
            text_len: n,
        })
    }

    /// The name as sent, with its trailing dot.
    pub fn sent(&self) -> &str {
        std::str::from_utf8(&self.text[..self.text_len]).unwrap_or(".")
    }

    /// The name in lower case, with its trailing dot.
    pub fn lower(&self) -> &str {
        std::str::from_utf8(&self.text[MAX_TEXT..MAX_TEXT + self.text_len]).unwrap_or(".")
    }

    /// The question section's bytes (name, type, class) as sent.
    pub fn question(&self) -> &'a [u8] {
        &self.raw[HEADER..self.end]
    }

    /// The question's name as sent, in wire format (labels, then the root label).
    pub fn name_wire(&self) -> &'a [u8] {
        &self.raw[HEADER..self.end - 4]
    }
}

/// Writes a message the way hickory-proto's encoder does, byte for byte, for the record types
/// the fast path answers with: names compressed against every name written before (the first
/// earlier name whose labels from some label on are the same bytes), except in SRV data (not
/// compressed, but later names may point into it); at most 64 names remembered and 120 names
/// compressed, as hickory. `None` from a write means the message cannot be written this way
/// (the caller takes the general path).
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    compressed: usize,
    /// Whether the thread's [`Remembered`] holds this writer's names (cleared on first use, so
    /// a reply that compresses nothing against memory never touches it).
    remembering: bool,
    /// Where the question's root label is, when [`Writer::question_name`] wrote the name at
    /// [`HEADER`]. Its labels are remembered by the first [`Writer::name`]: a reply whose only
    /// later names are the question's again ([`Writer::qname`]) never remembers them.
    question_end: Option<usize>,
}

/// Names a [`Writer`] remembers: where each starts in the message, and its labels
/// (uncompressed) in `seen`. One per thread, reused.
#[derive(Default)]
struct Remembered {
    names: Vec<(u16, u16, u16)>,
    seen: Vec<u8>,
    label_at: Vec<usize>,
}

thread_local! {
    static REMEMBERED: std::cell::RefCell<Remembered> = std::cell::RefCell::default();
}

/// hickory's limits: names remembered, names compressed.
const MAX_REMEMBERED: usize = 64;
const MAX_COMPRESSED: usize = 120;

/// How a name is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    /// Pointing to an earlier name where it can.
    Yes,
    /// In full (SRV targets), though remembered for later names.
    No,
}

impl<'b> Writer<'b> {
    /// A writer appending to `buf` (the header comes first): names are remembered from here on.
    pub fn new(buf: &'b mut Vec<u8>) -> Self {
        Self {
            buf,
            compressed: 0,
            remembering: false,
            question_end: None,
        }
    }

    /// Writes the question's name as [`Writer::name`] with [`Compress::Yes`] would when it is
    /// the first name (at [`HEADER`]): `wire` is its labels as the query sent them (no pointers,
    /// ending in the root label) and `text` the same name as text (`Question::sent`). Its
    /// labels are remembered only when a later name needs them.
    pub fn question_name(&mut self, wire: &[u8], text: &str) -> Option<()> {
        if self.buf.len() != HEADER || self.remembering || self.compressed != 0 || wire.len() < 2 {
            return self.name(text, Compress::Yes);
        }
        if wire.len() > 255 {
            return None;
        }
        self.compressed += 1;
        self.buf.extend_from_slice(wire);
        self.question_end = Some(self.buf.len() - 1);
        Some(())
    }

    /// Writes the question's name `text` again, compressed: a pointer to it where
    /// [`Writer::question_name`] wrote it (the first name remembered, so the pointer
    /// [`Writer::name`] would write), else as [`Writer::name`].
    pub fn qname(&mut self, text: &str) -> Option<()> {
        if self.question_end.is_some() && self.pointer(0xc000 | HEADER as u16).is_some() {
            return Some(());
        }
        self.name(text, Compress::Yes)
    }

    /// Where the question's name from `offset` on (a label boundary of it; 0 is the whole name)
    /// is, as the compression pointer [`Writer::name`] writes for that suffix while the
    /// question written by [`Writer::question_name`] is all it could point to (nothing
    /// remembered yet), and the question's label just before it (`None` at the first label).
    /// `None` otherwise. Write the pointer with [`Writer::pointer`].
    pub fn question_suffix(&self, offset: usize) -> Option<(u16, Option<&[u8]>)> {
        let end = self.question_end.filter(|_| !self.remembering)?;
        if HEADER + offset >= end {
            return None;
        }
        let (mut at, mut prev) = (HEADER, None);
        while at < HEADER + offset {
            prev = Some(at);
            at += 1 + usize::from(self.buf[at]);
        }
        (at == HEADER + offset).then(|| (0xc000 | at as u16, prev.map(|p| &self.buf[p + 1..at])))
    }

    /// Writes the compression pointer `ptr` as a compressed name, counted as [`Writer::name`]
    /// counts one; `None`, writing nothing, once hickory's limit of compressed names is reached.
    pub fn pointer(&mut self, ptr: u16) -> Option<()> {
        if self.compressed >= MAX_COMPRESSED {
            return None;
        }
        self.compressed += 1;
        self.buf.extend_from_slice(&ptr.to_be_bytes());
        Some(())
    }

    /// The bytes so far.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// Writes the name whose text (without escapes) is `text`, e.g. `www.example.org.`.
    pub fn name(&mut self, text: &str, compress: Compress) -> Option<()> {
        self.name_of(&[text], compress)
    }

    /// Writes the name whose labels are those of each of `parts` in turn (`["ns.dns",
    /// "cluster.local."]` is `ns.dns.cluster.local.`).
    pub fn name_of(&mut self, parts: &[&str], compress: Compress) -> Option<()> {
        let compress = compress == Compress::Yes && self.compressed < MAX_COMPRESSED;
        if compress {
            self.compressed += 1;
        }
        let fresh = !std::mem::replace(&mut self.remembering, true);
        // `question_name` writes lazily only before anything is remembered.
        let pending = self.question_end.filter(|_| fresh);
        let buf = &mut *self.buf;
        REMEMBERED.with(|r| {
            let r = &mut *r.borrow_mut();
            if fresh {
                r.names.clear();
                r.seen.clear();
            }
            if let Some(end) = pending {
                // The question's labels, remembered as writing its text would have: none of a
                // name's own suffixes can be compressed against another.
                let mut at = HEADER;
                while at < end && r.names.len() < MAX_REMEMBERED {
                    r.names
                        .push((at as u16, r.seen.len() as u16, (end - at) as u16));
                    r.seen.extend_from_slice(&buf[at..end]);
                    at += 1 + usize::from(buf[at]);
                }
            }
            let start = buf.len();
            r.label_at.clear();
            for part in parts {
                // Where the current label's length byte is.
                let mut open: Option<usize> = None;
                for &b in part.as_bytes() {
                    if b == b'.' {
                        if let Some(at) = open.take() {
                            buf[at] = u8::try_from(buf.len() - at - 1).ok().filter(|n| *n <= 63)?;
                        }
                    } else {
                        // Only names whose text needs no escapes (hickory would read
                        // those differently).
                        if !PLAIN[usize::from(b)] {
                            return None;
                        }
                        if open.is_none() {
                            r.label_at.push(buf.len());
                            open = Some(buf.len());
                            buf.push(0);
                        }
                        buf.push(b);
                    }
                }
                if let Some(at) = open {
                    buf[at] = u8::try_from(buf.len() - at - 1).ok().filter(|n| *n <= 63)?;
                }
            }
            let end = buf.len();
            for i in 0..r.label_at.len() {
                let at = r.label_at[i];
                if compress {
                    let suffix = &buf[at..end];
                    let found = r.names.iter().find(|&&(_, s, l)| {
                        r.seen.get(usize::from(s)..usize::from(s) + usize::from(l)) == Some(suffix)
                    });
                    if let Some(&(ptr, _, _)) = found {
                        if ptr & 0xc000 == 0 {
                            buf.truncate(at);
                            // hickory's `trim`: names remembered from here on are forgotten.
                            while r.names.last().is_some_and(|n| usize::from(n.0) >= at) {
                                let (_, s, _) = r.names.pop()?;
                                r.seen.truncate(usize::from(s));
                            }
                            buf.extend_from_slice(&(0xc000 | ptr).to_be_bytes());
                            return (buf.len() - start <= 255).then_some(());
                        }
                    }
                }
                // hickory's `store_label_pointer`.
                if end < 0x3fff && r.names.len() < MAX_REMEMBERED {
                    r.names
                        .push((at as u16, r.seen.len() as u16, (end - at) as u16));
                    r.seen.extend_from_slice(&buf[at..end]);
                }
            }
            buf.push(0);
            (buf.len() - start <= 255).then_some(())
        })
    }

    /// A record's fixed fields after its owner name: TYPE, CLASS IN, TTL; returns where
    /// RDLENGTH goes (see [`Writer::rdata_done`]).
    pub fn record_head(&mut self, rtype: u16, ttl: u32) -> usize {
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&1u16.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        at
    }

    /// Fills in RDLENGTH at `at` (from [`Writer::record_head`]).
    pub fn rdata_done(&mut self, at: usize) -> Option<()> {
        let len = u16::try_from(self.buf.len() - at - 2).ok()?;
        self.buf[at..at + 2].copy_from_slice(&len.to_be_bytes());
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    fn sample() -> Vec<u8> {
        let name = Name::from_ascii("www.example.org.").unwrap();
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.add_answer(Record::from_rdata(
            name.clone(),
            30,
            RData::A(A::new(192, 0, 2, 1)),
        ));
        m.add_answer(Record::from_rdata(name, 30, RData::A(A::new(192, 0, 2, 2))));
        let zone = Name::from_ascii("example.org.").unwrap();
        m.add_authority(Record::from_rdata(
            zone.clone(),
            60,
            RData::SOA(SOA::new(zone.clone(), zone, 1, 2, 3, 4, 5)),
        ));
        m.to_vec().unwrap()
    }

    #[test]
    fn walks_records_and_patches_ttls() {
        let mut buf = sample();
        let rrs: Vec<Rr> = records(&buf).unwrap().map(Option::unwrap).collect();
        assert_eq!(rrs.len(), 3);
        assert_eq!(
            rrs.iter().map(|r| (r.section, r.rtype)).collect::<Vec<_>>(),
            [
                (Section::Answer, 1),
                (Section::Answer, 1),
                (Section::Authority, TYPE_SOA)
            ]
        );
        assert_eq!(&buf[rrs[1].rdata.clone()], &[192, 0, 2, 2]);
        let at: Vec<u16> = rrs.iter().map(|r| r.ttl_at() as u16).collect();
        set_ttls(&mut buf, &at, 17);
        let m = Message::from_vec(&buf).unwrap();
        assert!(m.answers.iter().chain(&m.authorities).all(|r| r.ttl == 17));
    }

    #[test]
    fn malformed_input_ends_the_walk() {
        let buf = sample();
        for cut in 0..buf.len() {
            // Never panics; a cut message yields a `None` somewhere or fewer records.
            if let Some(it) = records(&buf[..cut]) {
                let v: Vec<_> = it.collect();
                assert!(v.len() < 3 || v.iter().any(Option::is_none), "{cut}");
            }
        }
        // A name longer than 255 bytes.
        let mut long = vec![0u8; HEADER];
        long[5] = 1;
        for _ in 0..5 {
            long.push(63);
            long.extend([b'a'; 63]);
        }
        long.push(0);
        assert!(question_end(&long).is_none());
    }

    #[test]
    fn header_and_opt_match_hickory() {
        let mut buf = sample();
        set_reply_header(&mut buf, 0xbeef, 0, true, true);
        let f = Flags {
            authoritative: true,
            recursion_available: true,
            rcode: 3,
            ..Flags::default()
        };
        f.write_answer_bits(&mut buf);
        push_opt(&mut buf, 1232, true);
        let m = Message::from_vec(&buf).unwrap();
        let md = &m.metadata;
        assert_eq!(md.id, 0xbeef);
        assert!(md.recursion_desired && md.checking_disabled && md.authoritative);
        assert!(md.recursion_available && !md.authentic_data && !md.truncation);
        assert_eq!(u16::from(md.response_code), 3);
        let e = m.edns.as_ref().unwrap();
        assert_eq!((e.max_payload(), e.flags().dnssec_ok), (1232, true));
        // Byte for byte what hickory encodes for the same message.
        let mut want = m.clone();
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        edns.set_dnssec_ok(true);
        want.set_edns(edns);
        assert_eq!(want.to_vec().unwrap(), buf);
        assert_eq!(Flags::of(&buf).rcode, 3);
    }

    /// The question written from its wire bytes (its labels remembered only when a later name
    /// needs them) and written again as a pointer gives the bytes that writing its text does.
    #[test]
    fn question_name_writes_what_name_writes() {
        // None: the question's name again; Some: another name.
        type Op = Option<(&'static str, Compress)>;
        let sequences: [&[Op]; 6] = [
            &[],
            &[None, None],
            &[None, Some(("ns.dns.cluster.local.", Compress::Yes))],
            &[Some(("cluster.local.", Compress::Yes)), None],
            &[
                None,
                Some(("a-1.Svc.ns.svc.cluster.local.", Compress::No)),
                Some(("a-1.svc.ns.svc.cluster.local.", Compress::Yes)),
                None,
            ],
            &[Some(("other.example.", Compress::Yes)), None, None],
        ];
        for qtext in [
            "Svc.ns.svc.cluster.local.",
            "x.",
            "_dns._udp.a-b.example.",
            ".",
        ] {
            let mut wire = Vec::new();
            for label in qtext.split('.').filter(|l| !l.is_empty()) {
                wire.push(label.len() as u8);
                wire.extend_from_slice(label.as_bytes());
            }
            wire.push(0);
            for ops in sequences {
                let (mut lazy, mut plain) = (vec![0u8; HEADER], vec![0u8; HEADER]);
                let mut w = Writer::new(&mut lazy);
                w.question_name(&wire, qtext).unwrap();
                for op in ops {
                    match op {
                        None => w.qname(qtext).unwrap(),
                        Some((t, c)) => w.name(t, *c).unwrap(),
                    }
                }
                let mut w = Writer::new(&mut plain);
                w.name(qtext, Compress::Yes).unwrap();
                for op in ops {
                    let (t, c) = op.unwrap_or((qtext, Compress::Yes));
                    w.name(t, c).unwrap();
                }
                assert_eq!(lazy, plain, "{qtext} {ops:?}");
            }
        }
    }
}
