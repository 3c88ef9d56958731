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

pub(super) fn n(s: &str) -> Name {
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

pub(super) fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(n(owner), 3600, RData::CNAME(CNAME(n(target))))
}

pub(super) fn a(owner: &str, ip: &str) -> Record {
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

// ---- Through the handler: a cache in front of an upstream that answers a fixed reply. ----

mod through_the_handler {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use hickory_proto::op::{Message, MessageType, ResponseCode};
    use hickory_proto::rr::{Name, Record, RecordType};

    use super::{a, cname, n};
    use crate::corefile::Dispenser;
    use crate::corefile::lexer::lex;
    use crate::plugins::cache::{Cache, CacheMetrics};
    use crate::plugins::{Chain, Handler, HandlerError, Next, Proto, Request, Response};

    /// What the upstream answers: rcode, answer, authority, QR bit, question override.
    #[derive(Clone)]
    struct Reply {
        rcode: ResponseCode,
        answer: Vec<Record>,
        authority: Vec<Record>,
        response: bool,
        question: Option<(Name, RecordType)>,
    }

    impl Reply {
        fn answer(answer: Vec<Record>) -> Self {
            Self {
                rcode: ResponseCode::NoError,
                answer,
                authority: Vec::new(),
                response: true,
                question: None,
            }
        }
    }

    struct Upstream {
        reply: Reply,
        seen: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Handler for Upstream {
        fn name(&self) -> &'static str {
            "upstream"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            let mut m = req.reply();
            m.metadata.recursion_available = true;
            m.metadata.response_code = self.reply.rcode;
            if !self.reply.response {
                m.metadata.message_type = MessageType::Query;
            }
            if let Some((name, qtype)) = &self.reply.question {
                m.queries[0].set_name(name.clone());
                m.queries[0].set_query_type(*qtype);
            }
            for r in &self.reply.answer {
                m.add_answer(r.clone());
            }
            for r in &self.reply.authority {
                m.add_authority(r.clone());
            }
            Ok(Response::new(m, "upstream"))
        }
    }

    fn chain(corefile: &str, reply: Reply) -> (Chain, Arc<Upstream>) {
        let toks = lex(&Arc::from("Corefile"), corefile);
        let cfg =
            crate::plugins::cache::parse(&mut Dispenser::new(&toks), &[".".to_string()]).unwrap();
        let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
        let up = Arc::new(Upstream {
            reply,
            seen: AtomicUsize::new(0),
        });
        (
            Chain::new(vec![Arc::new(Cache::new(cfg, metrics)), up.clone()]),
            up,
        )
    }

    async fn ask(chain: &Chain, qname: &str, qtype: RecordType) -> Message {
        let req = Request::new(
            n(qname),
            qtype,
            "127.0.0.1:5000".parse().unwrap(),
            Proto::Udp,
        );
        chain.run(&req).await.unwrap().msg
    }

    /// Asks twice; whether the second was answered from the cache, and that reply.
    async fn cached(
        corefile: &str,
        reply: Reply,
        qname: &str,
        qtype: RecordType,
    ) -> (bool, Message) {
        let (chain, up) = chain(corefile, reply);
        ask(&chain, qname, qtype).await;
        let second = ask(&chain, qname, qtype).await;
        (up.seen.load(Ordering::SeqCst) == 1, second)
    }

    fn soa(zone: &str, ttl: u32) -> Record {
        use hickory_proto::rr::RData;
        use hickory_proto::rr::rdata::SOA;
        Record::from_rdata(
            n(zone),
            ttl,
            RData::SOA(SOA::new(
                n(&format!("ns.{zone}")),
                n(&format!("hostmaster.{zone}")),
                1,
                7200,
                3600,
                1_209_600,
                ttl,
            )),
        )
    }

    // plugin/cache/cache_test.go: TestCacheInsertion, the CNAME-chain rows through the handler
    // (NOERROR without SOA: cached only when the chain answers the question).
    #[tokio::test]
    async fn coredns_test_cache_insertion_cname_chains() {
        let q = "alias.example.org.";
        let rows: Vec<(&str, RecordType, Vec<Record>, bool)> = vec![
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
                "chain ending in a different type",
                RecordType::A,
                vec![cname(q, "target.example.net."), {
                    use hickory_proto::rr::RData;
                    use hickory_proto::rr::rdata::AAAA;
                    Record::from_rdata(
                        n("target.example.net."),
                        3600,
                        RData::AAAA(AAAA("::1".parse().unwrap())),
                    )
                }],
                false,
            ),
            (
                "MX chain without MX",
                RecordType::MX,
                vec![cname(q, "target.example.net.")],
                false,
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
                "lone CNAME to ANY",
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
                "out of order",
                RecordType::A,
                vec![
                    a("target.example.net.", "127.0.0.1"),
                    cname(q, "target.example.net."),
                ],
                true,
            ),
            (
                "CNAME to a CNAME query",
                RecordType::CNAME,
                vec![cname(q, "target.example.net.")],
                true,
            ),
            (
                "two targets at one owner",
                RecordType::A,
                vec![
                    cname(q, "target1.example.net."),
                    cname(q, "target2.example.net."),
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
                "duplicate identical CNAME",
                RecordType::A,
                vec![
                    cname(q, "target.example.net."),
                    cname(q, "target.example.net."),
                    a("target.example.net.", "127.0.0.1"),
                ],
                true,
            ),
        ];
        for (name, qtype, answer, should_cache) in rows {
            let want = answer.clone();
            let (hit, reply) = cached("cache", Reply::answer(answer), q, qtype).await;
            assert_eq!(hit, should_cache, "{name}");
            if hit {
                assert_eq!(reply.answers.len(), want.len(), "{name}");
                assert!(reply.answers.iter().all(|r| r.ttl == 3600), "{name}");
                assert!(reply.metadata.recursion_available, "{name}");
            }
        }
    }

    // plugin/cache/cache_test.go: TestCNAMEWithSOAStoredAsNODATA (a CNAME that does not answer
    // the question, with an SOA: a denial entry, for the SOA's TTL)
    #[tokio::test(start_paused = true)]
    async fn coredns_test_cname_with_soa_stored_as_nodata() {
        let reply = Reply {
            authority: vec![soa("example.org.", 300)],
            ..Reply::answer(vec![{
                let mut r = cname("alias.example.org.", "missing.example.net.");
                r.ttl = 300;
                r
            }])
        };
        // `denial 10000 1800 5` kept, success disabled everywhere: only a denial entry can hit.
        let (chain, up) = chain("cache {\n disable success\n}", reply);
        ask(&chain, "alias.example.org.", RecordType::A).await;
        let r = ask(&chain, "alias.example.org.", RecordType::A).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 1, "stored as a denial");
        assert_eq!(r.answers[0].ttl, 300);
        tokio::time::advance(Duration::from_secs(301)).await;
        ask(&chain, "alias.example.org.", RecordType::A).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 2, "for the SOA's TTL");
    }

    // plugin/cache/cache_test.go: TestCacheHonorsConfiguredPositiveMaxTTLAboveDefault
    // (pttl 2h, minpttl 0, upstream TTL 86400: the reply's TTL is 7200)
    #[tokio::test]
    async fn coredns_test_honors_configured_positive_max_ttl_above_default() {
        let mut r = a("example.org.", "127.0.0.53");
        r.ttl = 86_400;
        let (chain, _) = chain("cache {\n success 10000 7200 0\n}", Reply::answer(vec![r]));
        let m = ask(&chain, "example.org.", RecordType::A).await;
        assert_eq!(m.answers[0].ttl, 7200);
    }

    // plugin/cache/cache_test.go: TestCacheZeroTTL (minpttl = minnttl = 0, upstream TTL 0: not
    // cached) and TestCacheServfailTTL0 (servfail 0: a SERVFAIL is not cached)
    #[tokio::test]
    async fn coredns_test_zero_ttl_and_servfail_ttl0() {
        let mut r = a("example.org.", "127.0.0.53");
        r.ttl = 0;
        let (hit, _) = cached(
            "cache {\n success 10000 3600 0\n denial 10000 1800 0\n}",
            Reply::answer(vec![r]),
            "example.org.",
            RecordType::A,
        )
        .await;
        assert!(!hit, "0 TTL cached");
        let servfail = Reply {
            rcode: ResponseCode::ServFail,
            ..Reply::answer(vec![])
        };
        let (hit, _) = cached(
            "cache {\n servfail 0\n}",
            servfail.clone(),
            "example.org.",
            RecordType::A,
        )
        .await;
        assert!(!hit, "SERVFAIL cached with servfail 0");
        let (hit, _) = cached("cache", servfail, "example.org.", RecordType::A).await;
        assert!(hit, "SERVFAIL is cached for servfail's default 5s");
    }

    // The remaining TTL (plugin/cache/item.go ttl: origTTL - int(elapsed)): 3599 after 1.3 s.
    #[tokio::test(start_paused = true)]
    async fn remaining_ttl_is_truncated() {
        let mut r = a("example.org.", "127.0.0.53");
        r.ttl = 3600;
        let (chain, up) = chain("cache", Reply::answer(vec![r]));
        assert_eq!(
            ask(&chain, "example.org.", RecordType::A).await.answers[0].ttl,
            3600
        );
        tokio::time::advance(Duration::from_millis(1300)).await;
        assert_eq!(
            ask(&chain, "example.org.", RecordType::A).await.answers[0].ttl,
            3599
        );
        tokio::time::advance(Duration::from_millis(3_598_400)).await;
        // 3599.7 s: 3600 - 3599 = 1 s left.
        assert_eq!(
            ask(&chain, "example.org.", RecordType::A).await.answers[0].ttl,
            1
        );
        assert_eq!(up.seen.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(400)).await;
        ask(&chain, "example.org.", RecordType::A).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 2, "0 s left is a miss");
    }

    // plugin/cache/spoof_test.go: TestSpoof (a reply for another name, or another type, is
    // not cached) and TestResponse (a message without QR is not cached); error_test.go:
    // TestFormErr (a FORMERR for another name is not cached).
    #[tokio::test]
    async fn coredns_test_spoof_response_formerr() {
        let spoof_name = Reply {
            question: Some((n("example.net."), RecordType::A)),
            ..Reply::answer(vec![a("example.org.", "127.0.0.53")])
        };
        assert!(
            !cached("cache", spoof_name, "example.org.", RecordType::A)
                .await
                .0
        );
        let spoof_type = Reply {
            question: Some((n("example.org."), RecordType::A)),
            ..Reply::answer(vec![{
                use hickory_proto::rr::RData;
                use hickory_proto::rr::rdata::MX;
                Record::from_rdata(
                    n("example.org."),
                    3600,
                    RData::MX(MX::new(10, n("mail.example.org."))),
                )
            }])
        };
        assert!(
            !cached("cache", spoof_type, "example.org.", RecordType::MX)
                .await
                .0
        );
        let not_response = Reply {
            response: false,
            ..Reply::answer(vec![a("example.org.", "127.0.0.53")])
        };
        assert!(
            !cached("cache", not_response, "example.net.", RecordType::A)
                .await
                .0
        );
        let formerr = Reply {
            rcode: ResponseCode::FormErr,
            question: Some((n("example.net."), RecordType::A)),
            ..Reply::answer(vec![])
        };
        assert!(
            !cached("cache", formerr, "example.org.", RecordType::A)
                .await
                .0
        );
    }

    // plugin/cache/cache_test.go: TestCacheKeepTTL (keepttl: a hit answers with the stored TTL)
    #[tokio::test(start_paused = true)]
    async fn coredns_test_keep_ttl() {
        let mut r = a("cached.org.", "127.0.0.53");
        r.ttl = 60;
        let (chain, _) = chain("cache {\n keepttl\n}", Reply::answer(vec![r]));
        assert_eq!(
            ask(&chain, "cached.org.", RecordType::A).await.answers[0].ttl,
            60
        );
        for (name, future) in [
            ("cached.org.", 0),
            ("cached.org.", 30),
            ("uncached.org.", 60),
        ] {
            tokio::time::advance(Duration::from_secs(future)).await;
            let m = ask(&chain, name, RecordType::A).await;
            // The upstream's record is owned by cached.org.; the TTL is what is compared.
            assert_eq!(m.answers[0].ttl, 60, "{name} +{future}s");
        }
    }

    /// An upstream answering NXDOMAIN (CH SOA) for class CH and an A for IN; records classes.
    struct ByClass(std::sync::Mutex<Vec<hickory_proto::rr::DNSClass>>);

    #[async_trait::async_trait]
    impl Handler for ByClass {
        fn name(&self) -> &'static str {
            "upstream"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            use hickory_proto::rr::DNSClass;
            self.0.lock().unwrap().push(req.qclass());
            let mut m = req.reply();
            if req.qclass() == DNSClass::CH {
                m.metadata.response_code = ResponseCode::NXDomain;
                let mut s = soa("cache-class.test.", 60);
                s.dns_class = DNSClass::CH;
                m.add_authority(s);
            } else {
                m.add_answer(a("victim.cache-class.test.", "192.0.2.1"));
            }
            Ok(Response::new(m, "upstream"))
        }
    }

    // plugin/cache/qclass_test.go: TestCacheSeparatesQuestionClasses
    #[tokio::test]
    async fn coredns_test_cache_separates_question_classes() {
        use hickory_proto::op::Query;
        use hickory_proto::rr::DNSClass;
        let toks = lex(&Arc::from("Corefile"), "cache");
        let cfg =
            crate::plugins::cache::parse(&mut Dispenser::new(&toks), &[".".to_string()]).unwrap();
        let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
        let up = Arc::new(ByClass(std::sync::Mutex::new(Vec::new())));
        let chain = Chain::new(vec![Arc::new(Cache::new(cfg, metrics)), up.clone()]);
        let ask = |class: DNSClass| {
            let mut q = Query::query(n("victim.cache-class.test."), RecordType::A);
            q.set_query_class(class);
            let req = Request::with_query(q, "127.0.0.1:5000".parse().unwrap(), Proto::Udp);
            let chain = &chain;
            async move { chain.run(&req).await.unwrap().msg }
        };
        assert_eq!(
            ask(DNSClass::CH).await.metadata.response_code,
            ResponseCode::NXDomain
        );
        let inet = ask(DNSClass::IN).await;
        assert_eq!(
            (inet.metadata.response_code, inet.answers.len()),
            (ResponseCode::NoError, 1)
        );
        assert_eq!(*up.0.lock().unwrap(), [DNSClass::CH, DNSClass::IN]);
    }

    /// plugin/cache/prefetch_test.go's prefetchHandler: an A record for `qname` with `ttl`,
    /// 127.0.0.1 first and the next address on every fetch; each fetch is signalled.
    struct Counting {
        ttl: u32,
        n: std::sync::atomic::AtomicU8,
        fetched: tokio::sync::mpsc::UnboundedSender<()>,
    }

    #[async_trait::async_trait]
    impl Handler for Counting {
        fn name(&self) -> &'static str {
            "upstream"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            use hickory_proto::rr::RData;
            use hickory_proto::rr::rdata::A;
            let i = self.n.fetch_add(1, Ordering::SeqCst) + 1;
            let mut m = req.reply();
            m.add_answer(Record::from_rdata(
                req.qname().clone(),
                self.ttl,
                RData::A(A::new(127, 0, 0, i)),
            ));
            let _ = self.fetched.send(());
            Ok(Response::new(m, "upstream"))
        }
    }

    // plugin/cache/prefetch_test.go: TestPrefetch. Each step: seconds after the first query,
    // the DO and CD bits, the expected answer (TTL, last octet), whether it reaches the upstream.
    #[tokio::test(start_paused = true)]
    async fn coredns_test_prefetch() {
        use hickory_proto::op::Edns;
        type Step = (u64, bool, bool, u32, u8, bool);
        let table: &[(&str, u32, u32, &[Step])] = &[
            (
                "hits.reset.example.org.",
                80,
                1,
                &[
                    (0, false, false, 80, 1, true),
                    (73, false, false, 7, 1, true),
                    (80, false, false, 73, 2, false),
                ],
            ),
            (
                "short.ttl.example.org.",
                5,
                1,
                &[
                    (0, false, false, 5, 1, true),
                    (1, false, false, 4, 1, false),
                    (4, false, false, 1, 1, true),
                    (5, false, false, 4, 2, false),
                ],
            ),
            (
                "no.prefetch.example.org.",
                30,
                0,
                &[
                    (0, false, false, 30, 1, true),
                    (15, false, false, 15, 1, false),
                    (29, false, false, 1, 1, false),
                    (30, false, false, 30, 2, true),
                ],
            ),
            (
                "do.prefetch.example.org.",
                80,
                1,
                &[
                    (0, true, false, 80, 1, true),
                    (73, true, false, 7, 1, true),
                    (80, true, false, 73, 2, false),
                    (80, false, false, 80, 3, true),
                ],
            ),
            (
                "cd.prefetch.example.org.",
                80,
                1,
                &[
                    (0, false, true, 80, 1, true),
                    (73, false, true, 7, 1, true),
                    (80, false, true, 73, 2, false),
                    (80, false, false, 80, 3, true),
                ],
            ),
        ];
        for (qname, ttl, prefetch, steps) in table {
            let corefile = if *prefetch == 0 {
                "cache".to_string()
            } else {
                format!("cache {{\n prefetch {prefetch}\n}}")
            };
            let toks = lex(&Arc::from("Corefile"), &corefile);
            let cfg = crate::plugins::cache::parse(&mut Dispenser::new(&toks), &[".".to_string()])
                .unwrap();
            let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let up = Arc::new(Counting {
                ttl: *ttl,
                n: std::sync::atomic::AtomicU8::new(0),
                fetched: tx,
            });
            let chain = Chain::new(vec![Arc::new(Cache::new(cfg, metrics)), up]);
            let start = tokio::time::Instant::now();
            for &(after, dnssec_ok, cd, want_ttl, octet, fetch) in *steps {
                tokio::time::advance(
                    (start + Duration::from_secs(after))
                        .saturating_duration_since(tokio::time::Instant::now()),
                )
                .await;
                let mut req = Request::new(
                    n(qname),
                    RecordType::A,
                    "127.0.0.1:5000".parse().unwrap(),
                    Proto::Udp,
                );
                req.checking_disabled = cd;
                if dnssec_ok {
                    let mut e = Edns::new();
                    e.set_dnssec_ok(true);
                    req.edns = Some(e);
                }
                let m = chain.run(&req).await.unwrap().msg;
                let got = (m.answers[0].ttl, m.answers[0].data.to_string());
                assert_eq!(
                    got,
                    (want_ttl, format!("127.0.0.{octet}")),
                    "{qname} +{after}s"
                );
                // A prefetch runs in the background: wait for its fetch (or make sure none).
                for _ in 0..50 {
                    tokio::task::yield_now().await;
                }
                assert_eq!(rx.try_recv().is_ok(), fetch, "{qname} +{after}s: fetch");
            }
        }
    }

    /// TestPrefetchDedup's upstream: counts calls; every call after the first waits for
    /// `release`; answers `dedup.example.org. 100 IN A 127.0.0.1`.
    struct Blocking {
        calls: AtomicUsize,
        release: tokio::sync::Notify,
        done: tokio::sync::mpsc::UnboundedSender<()>,
    }

    #[async_trait::async_trait]
    impl Handler for Blocking {
        fn name(&self) -> &'static str {
            "upstream"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n > 1 {
                self.release.notified().await;
            }
            let mut m = req.reply();
            let mut r = a("dedup.example.org.", "127.0.0.1");
            r.ttl = 100;
            m.add_answer(r);
            if n > 1 {
                let _ = self.done.send(());
            }
            Ok(Response::new(m, "upstream"))
        }
    }

    // plugin/cache/prefetch_test.go: TestPrefetchDedup (200 concurrent hits on an entry due a
    // refresh — stale with serve_stale, or within prefetch's 50% — start one refresh)
    #[tokio::test(start_paused = true)]
    async fn coredns_test_prefetch_dedup() {
        for (name, corefile, hit_at) in [
            ("serve_stale", "cache {\n serve_stale 1h\n}", 110),
            ("prefetch", "cache {\n prefetch 1 1m 50%\n}", 70),
        ] {
            let toks = lex(&Arc::from("Corefile"), corefile);
            let cfg = crate::plugins::cache::parse(&mut Dispenser::new(&toks), &[".".to_string()])
                .unwrap();
            let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
            let (tx, mut done) = tokio::sync::mpsc::unbounded_channel();
            let up = Arc::new(Blocking {
                calls: AtomicUsize::new(0),
                release: tokio::sync::Notify::new(),
                done: tx,
            });
            let chain = Arc::new(Chain::new(vec![
                Arc::new(Cache::new(cfg, metrics)),
                up.clone(),
            ]));
            ask(&chain, "dedup.example.org.", RecordType::A).await;
            assert_eq!(up.calls.load(Ordering::SeqCst), 1, "{name}: populate");
            tokio::time::advance(Duration::from_secs(hit_at)).await;
            let mut tasks = Vec::new();
            for _ in 0..200 {
                let chain = chain.clone();
                tasks.push(tokio::spawn(async move {
                    ask(&chain, "dedup.example.org.", RecordType::A).await
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            for _ in 0..50 {
                tokio::task::yield_now().await;
            }
            up.release.notify_one();
            tokio::time::timeout(Duration::from_secs(2), done.recv())
                .await
                .expect("the refresh never completed");
            assert_eq!(
                up.calls.load(Ordering::SeqCst),
                2,
                "{name}: populate + 1 refresh"
            );
        }
    }
}
