//! CoreDNS's plugin/cache tests ported (tables that need no handler internals), kept apart from
//! handler.rs so they merge independently of it.

use hickory_proto::op::{MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, SOA};

use hickory_proto::op::Message;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::plugins::response::answers_question as answers;

fn answers_question(m: &Message) -> bool {
    let q = &m.queries[0];
    answers(m, q.name(), q.query_type(), q.query_class())
}

fn has_soa(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

fn is_nodata(m: &Message) -> bool {
    !m.answers.is_empty() && !answers_question(m)
}

fn n(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn reply(qname: &str, qtype: RecordType, answer: Vec<Record>) -> Message {
    let mut m = Message::new(1, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(n(qname), qtype));
    for r in answer {
        m.add_answer(r);
    }
    m
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(n(owner), 3600, RData::CNAME(CNAME(n(target))))
}

fn a(owner: &str, ip: &str) -> Record {
    Record::from_rdata(n(owner), 3600, RData::A(A(ip.parse().unwrap())))
}

// plugin/cache/cache_test.go: TestAnswersQuestionStrictEligibility
#[test]
fn coredns_test_answers_question_strict_eligibility() {
    let mut ch = a("cached.org.", "192.0.2.20");
    ch.dns_class = DNSClass::CH;
    let cases: Vec<(&str, RecordType, Vec<Record>, bool)> = vec![
        (
            "direct A",
            RecordType::A,
            vec![a("cached.org.", "192.0.2.10")],
            true,
        ),
        (
            "ANY matching owner",
            RecordType::ANY,
            vec![a("cached.org.", "192.0.2.10")],
            true,
        ),
        (
            "ANY unrelated owner",
            RecordType::ANY,
            vec![a("unrelated.org.", "192.0.2.10")],
            false,
        ),
        (
            "duplicate equivalent CNAME targets",
            RecordType::CNAME,
            vec![
                cname("cached.org.", "target.org."),
                cname("cached.org.", "target.org."),
            ],
            true,
        ),
        (
            "multiple CNAME targets",
            RecordType::CNAME,
            vec![
                cname("cached.org.", "first.org."),
                cname("cached.org.", "second.org."),
            ],
            false,
        ),
        ("wrong RR class", RecordType::A, vec![ch], false),
    ];
    for (name, qtype, answer, want) in cases {
        assert_eq!(
            answers_question(&reply("cached.org.", qtype, answer)),
            want,
            "{name}"
        );
    }
}

// plugin/cache/cache_test.go: TestCacheInsertion, the CNAME-chain rows: whether the reply
// answers its question (all NOERROR without SOA: those that do not are not cached).
#[test]
fn coredns_test_cache_insertion_cname_chains() {
    let q = "alias.example.org.";
    let cases: Vec<(&str, RecordType, Vec<Record>, bool)> = vec![
        (
            "dangling CNAME chain",
            RecordType::A,
            vec![
                cname(q, "target1.example.net."),
                cname("target1.example.net.", "target2.example.net."),
            ],
            false,
        ),
        (
            "CNAME chain ending in a different type",
            RecordType::A,
            vec![
                cname(q, "target.example.net."),
                Record::from_rdata(
                    n("target.example.net."),
                    3600,
                    RData::AAAA(AAAA("::1".parse().unwrap())),
                ),
            ],
            false,
        ),
        (
            "MX query, chain without terminal MX",
            RecordType::MX,
            vec![cname(q, "target.example.net.")],
            false,
        ),
        (
            "MX query, chain terminating in MX",
            RecordType::MX,
            vec![
                cname(q, "target.example.net."),
                Record::from_rdata(
                    n("target.example.net."),
                    3600,
                    RData::MX(MX::new(10, n("mail.example.net."))),
                ),
            ],
            true,
        ),
        (
            "unrelated A off the chain",
            RecordType::A,
            vec![
                cname(q, "target.example.net."),
                a("unrelated.example.net.", "192.0.2.1"),
            ],
            false,
        ),
        (
            "lone CNAME answer to ANY",
            RecordType::ANY,
            vec![cname(q, "target.example.net.")],
            true,
        ),
        (
            "chain terminating in A",
            RecordType::A,
            vec![
                cname(q, "target.example.net."),
                a("target.example.net.", "127.0.0.1"),
            ],
            true,
        ),
        (
            "chain terminating in A, out of order",
            RecordType::A,
            vec![
                a("target.example.net.", "127.0.0.1"),
                cname(q, "target.example.net."),
            ],
            true,
        ),
        (
            "CNAME answer to a CNAME query",
            RecordType::CNAME,
            vec![cname(q, "target.example.net.")],
            true,
        ),
        (
            "two distinct targets at one owner",
            RecordType::A,
            vec![
                cname(q, "target1.example.net."),
                cname(q, "target2.example.net."),
                a("target1.example.net.", "192.0.2.1"),
            ],
            false,
        ),
        (
            "two distinct targets at one owner, reversed",
            RecordType::A,
            vec![
                cname(q, "target2.example.net."),
                cname(q, "target1.example.net."),
                a("target1.example.net.", "192.0.2.1"),
            ],
            false,
        ),
        (
            "CNAME loop with co-located A",
            RecordType::A,
            vec![
                cname(q, "target.example.net."),
                cname("target.example.net.", q),
                a(q, "192.0.2.1"),
            ],
            false,
        ),
        (
            "duplicate identical CNAME terminating in A",
            RecordType::A,
            vec![
                cname(q, "target.example.net."),
                cname(q, "target.example.net."),
                a("target.example.net.", "127.0.0.1"),
            ],
            true,
        ),
    ];
    for (name, qtype, answer, want) in cases {
        let m = reply(q, qtype, answer);
        assert_eq!(answers_question(&m), want, "{name}");
        assert_eq!(is_nodata(&m), !want, "{name}");
        assert!(!has_soa(&m));
    }
    // An empty answer (whoami answers in the additional section) is not a NODATA.
    assert!(!is_nodata(&reply(q, RecordType::A, vec![])));
    let mut m = reply(q, RecordType::A, vec![cname(q, "missing.example.net.")]);
    m.add_authority(Record::from_rdata(
        n("example.org."),
        300,
        RData::SOA(SOA::new(
            n("ns.example.org."),
            n("hostmaster.example.org."),
            1,
            7200,
            3600,
            1_209_600,
            300,
        )),
    ));
    assert!(has_soa(&m) && is_nodata(&m));
}
