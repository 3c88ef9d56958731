//! Helpers for replies that several plugins and the server share: what kind of reply a message
//! is and how long it may be kept (CoreDNS's `response.Typify` and `dnsutil.MinimalTTL`, used by
//! `cache`, `minimal` and the DoH listener's `Cache-Control`), whether it answers its question,
//! and EDNS0 options on a reply (Extended DNS Errors, RFC 8914).

use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// What kind of reply a message is (CoreDNS's `response.Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A positive answer.
    NoError,
    /// NOERROR with an SOA and no answer.
    NoData,
    /// NXDOMAIN with an SOA.
    NameError,
    /// SERVFAIL or NOTIMP.
    ServerError,
    /// NOERROR with NS records in the authority section and no answer.
    Delegation,
    /// A zone transfer (AXFR/IXFR question).
    Meta,
    /// Anything else (e.g. NXDOMAIN without an SOA, REFUSED).
    Other,
}

/// CoreDNS's `response.Typify` (without the DNSSEC expiry check).
pub fn typify(m: &Message) -> Kind {
    if m.queries
        .first()
        .is_some_and(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR))
    {
        return Kind::Meta;
    }
    let rcode = m.metadata.response_code;
    if !m.answers.is_empty() && rcode == ResponseCode::NoError {
        return Kind::NoError;
    }
    let soa = m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    let ns = m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NS);
    match rcode {
        ResponseCode::NoError if soa => Kind::NoData,
        ResponseCode::NXDomain if soa => Kind::NameError,
        ResponseCode::ServFail | ResponseCode::NotImp => Kind::ServerError,
        ResponseCode::NoError if ns => Kind::Delegation,
        ResponseCode::NoError => Kind::NoError,
        _ => Kind::Other,
    }
}

/// CoreDNS's `dnsutil.MinimalTTL`: the smallest TTL in the reply (at most an hour), 5 s when
/// there is none.
pub fn minimal_ttl(m: &Message, kind: Kind) -> Duration {
    minimal_ttl_with_maximum(m, kind, Duration::from_secs(3600))
}

/// CoreDNS's `dnsutil.MinimalTTLWithMaximum`: the smallest TTL in the reply, at most `max`
/// (the cache passes its bucket's maximum), 5 s when there is none.
pub fn minimal_ttl_with_maximum(m: &Message, kind: Kind, max: Duration) -> Duration {
    const FAIL_SAFE: Duration = Duration::from_secs(5);
    if !matches!(kind, Kind::NoError | Kind::NameError | Kind::NoData) {
        return FAIL_SAFE;
    }
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| Duration::from_secs(u64::from(r.ttl)))
        .min()
        .map_or(FAIL_SAFE, |t| t.min(max))
}

/// Whether a NOERROR reply answers `qname`/`qtype`/`qclass`: for CNAME the CNAME itself, for
/// ANY any record at the name, otherwise a record of the type at the end of the CNAME chain
/// from `qname` (a malformed chain — two targets for one owner, a loop — answers nothing).
/// Records of another class do not count.
pub fn answers_question(m: &Message, qname: &Name, qtype: RecordType, qclass: DNSClass) -> bool {
    if m.metadata.response_code != ResponseCode::NoError || m.answers.is_empty() {
        return false;
    }
    let at = |owner: &Name| -> Vec<&Record> {
        m.answers
            .iter()
            .filter(|r| r.name == *owner && (qclass == DNSClass::ANY || r.dns_class == qclass))
            .collect()
    };
    if qtype == RecordType::ANY {
        return !at(qname).is_empty();
    }
    let target = |owner: &Name| -> Result<Option<Name>, ()> {
        let mut found: Option<&Name> = None;
        for r in at(owner) {
            if let RData::CNAME(c) = &r.data {
                match found {
                    Some(t) if *t != c.0 => return Err(()),
                    _ => found = Some(&c.0),
                }
            }
        }
        Ok(found.cloned())
    };
    if qtype == RecordType::CNAME {
        return matches!(target(qname), Ok(Some(_)));
    }
    let mut name = qname.clone();
    for _ in 0..=m.answers.len() {
        match target(&name) {
            Err(()) => return false,
            Ok(Some(next)) => name = next,
            Ok(None) => return at(&name).iter().any(|r| r.record_type() == qtype),
        }
    }
    false // a loop
}

/// The option code of Extended DNS Errors (RFC 8914).
pub const EDE: u16 = 15;
/// EDE info code 15, "Blocked".
pub const EDE_BLOCKED: u16 = 15;
/// EDE info code 17, "Filtered".
pub const EDE_FILTERED: u16 = 17;

/// An Extended DNS Error option: INFO-CODE and EXTRA-TEXT.
pub fn ede(info_code: u16, extra_text: &str) -> EdnsOption {
    let mut data = Vec::with_capacity(2 + extra_text.len());
    data.extend_from_slice(&info_code.to_be_bytes());
    data.extend_from_slice(extra_text.as_bytes());
    EdnsOption::Unknown(EDE, data)
}

/// Puts `option` in the reply's OPT record (replacing one with the same code). The server
/// copies these options into the OPT record it sends — only to clients that sent one.
pub fn set_option(msg: &mut Message, option: EdnsOption) {
    let edns = msg.edns.get_or_insert_with(Edns::new);
    let code = EdnsCode::from(&option);
    edns.options_mut().remove(code);
    edns.options_mut().insert(option);
}

/// The EDNS option code as a number.
pub fn code_of(option: &EdnsOption) -> u16 {
    u16::from(EdnsCode::from(option))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::{A, NS, SOA};
    use hickory_proto::rr::{Name, RData, Record};

    fn msg(rcode: ResponseCode, answer: bool, auth: Option<RecordType>) -> Message {
        let n = Name::from_ascii("example.org.").unwrap();
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(n.clone(), RecordType::A));
        m.metadata.response_code = rcode;
        if answer {
            m.add_answer(Record::from_rdata(
                n.clone(),
                5,
                RData::A(A::new(192, 0, 2, 1)),
            ));
        }
        match auth {
            Some(RecordType::SOA) => {
                m.add_authority(Record::from_rdata(
                    n.clone(),
                    5,
                    RData::SOA(SOA::new(n.clone(), n.clone(), 1, 1, 1, 1, 1)),
                ));
            }
            Some(_) => {
                m.add_authority(Record::from_rdata(n.clone(), 5, RData::NS(NS(n.clone()))));
            }
            None => {}
        }
        m
    }

    #[test]
    fn typify_table() {
        use ResponseCode as R;
        for (m, want) in [
            (msg(R::NoError, true, None), Kind::NoError),
            (msg(R::NoError, false, Some(RecordType::SOA)), Kind::NoData),
            (
                msg(R::NXDomain, false, Some(RecordType::SOA)),
                Kind::NameError,
            ),
            (msg(R::ServFail, false, None), Kind::ServerError),
            (msg(R::NotImp, false, None), Kind::ServerError),
            (
                msg(R::NoError, false, Some(RecordType::NS)),
                Kind::Delegation,
            ),
            (msg(R::NoError, false, None), Kind::NoError),
            (msg(R::NXDomain, false, None), Kind::Other),
            (msg(R::Refused, false, None), Kind::Other),
            (msg(R::ServFail, true, None), Kind::ServerError),
        ] {
            assert_eq!(typify(&m), want, "{m:?}");
        }
        let mut axfr = msg(R::NoError, true, None);
        axfr.queries[0].set_query_type(RecordType::AXFR);
        assert_eq!(typify(&axfr), Kind::Meta);
    }

    #[test]
    fn answers_question_follows_the_cname_chain() {
        use hickory_proto::rr::rdata::CNAME;
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let cname = |o: &str, t: &str| Record::from_rdata(n(o), 5, RData::CNAME(CNAME(n(t))));
        let a = |o: &str| Record::from_rdata(n(o), 5, RData::A(A::new(192, 0, 2, 1)));
        let reply = |rs: Vec<Record>| {
            let mut m = Message::new(1, MessageType::Response, OpCode::Query);
            m.answers = rs;
            m
        };
        let q = n("www.Example.org.");
        assert!(answers_question(
            &reply(vec![a("www.example.org.")]),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        assert!(!answers_question(
            &reply(vec![a("other.example.org.")]),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        assert!(!answers_question(
            &reply(vec![a("www.example.org.")]),
            &q,
            RecordType::AAAA,
            DNSClass::IN
        ));
        let chain = vec![
            cname("www.example.org.", "cdn.example.net."),
            a("cdn.example.net."),
        ];
        assert!(answers_question(
            &reply(chain.clone()),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        assert!(answers_question(
            &reply(chain),
            &q,
            RecordType::CNAME,
            DNSClass::IN
        ));
        // A CNAME chain that ends nowhere (NODATA after a CNAME) answers nothing.
        assert!(!answers_question(
            &reply(vec![cname("www.example.org.", "cdn.example.net.")]),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        // Two targets for one owner, and a loop.
        let two = vec![
            cname("www.example.org.", "a."),
            cname("www.example.org.", "b."),
            a("a."),
        ];
        assert!(!answers_question(
            &reply(two),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        let looped = vec![
            cname("www.example.org.", "x."),
            cname("x.", "www.example.org."),
        ];
        assert!(!answers_question(
            &reply(looped),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        assert!(answers_question(
            &reply(vec![cname("www.example.org.", "x.")]),
            &q,
            RecordType::ANY,
            DNSClass::IN
        ));
        // CoreDNS's TestAnswersQuestionStrictEligibility: a CH record does not answer IN.
        let mut ch = a("www.example.org.");
        ch.dns_class = DNSClass::CH;
        assert!(!answers_question(
            &reply(vec![ch]),
            &q,
            RecordType::A,
            DNSClass::IN
        ));
        let dup = vec![
            cname("www.example.org.", "t."),
            cname("www.example.org.", "t."),
        ];
        assert!(answers_question(
            &reply(dup),
            &q,
            RecordType::CNAME,
            DNSClass::IN
        ));
        let mut nx = reply(vec![a("www.example.org.")]);
        nx.metadata.response_code = ResponseCode::ServFail;
        assert!(!answers_question(&nx, &q, RecordType::A, DNSClass::IN));
    }

    #[test]
    fn ede_wire_form_and_set_option_replaces() {
        let o = ede(EDE_BLOCKED, "no");
        assert_eq!(o, EdnsOption::Unknown(15, vec![0, 15, b'n', b'o']));
        let mut m = Message::new(1, MessageType::Response, OpCode::Query);
        set_option(&mut m, ede(EDE_BLOCKED, ""));
        set_option(&mut m, ede(EDE_FILTERED, ""));
        let opts = m.edns.as_ref().unwrap().options().as_ref().to_vec();
        assert_eq!(opts.len(), 1);
        assert_eq!(code_of(&opts[0].1), EDE);
        assert_eq!(opts[0].1, EdnsOption::Unknown(15, vec![0, 17]));
    }
}
