//! CoreDNS's own test tables for *rewrite* (plugin/rewrite/*_test.go at CoreDNS's main), run
//! through the parsed rules and the handler with real messages. Each table names the Go file
//! and test it comes from; the expected values are the Go tests'.
//!
//! CoreDNS's unit tests choose a revert policy the Corefile cannot: `NoRevertPolicy` shows the
//! reply as the next plugin wrote it for the rewritten question. Here that reply is what the
//! next handler sees and answers (`Printer` records it); rows that test only the internal
//! `noRevert` knob are left out (their count is given with each table).

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Arc as StdArc, Mutex};

use hickory_proto::op::{Edns, Query};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::rdata::opt::{ClientSubnet, NSIDPayload};

use super::*;
use crate::corefile::lexer::lex;
use crate::plugins::{Chain, Proto};

/// One record from zone-file text.
fn rr(s: &str) -> Record {
    crate::zonefile::parse_str(s, Path::new("t"), &Name::root())
        .unwrap()
        .remove(0)
        .record
}

/// CoreDNS's `newRule(args...)`.
fn new_rule(args: &[&str]) -> Result<RewriteRule, Error> {
    let toks = lex(&StdArc::from("Corefile"), "rewrite");
    let mut d = Dispenser::new(&toks);
    d.next();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    parse_rule(&d, &args)
}

/// CoreDNS's `newNameRule(next, args...)` etc.: the rule type after the mode.
fn typed_rule(mode: &str, kind: &str, args: &[&str]) -> Result<RewriteRule, Error> {
    let mut all = vec![mode, kind];
    all.extend_from_slice(args);
    new_rule(&all)
}

/// CoreDNS's msgPrinter: answers with the records given (the request's own in the Go tests),
/// or `QNAME 5 IN A 10.0.0.1` when there are none, with the request's OPT record; the
/// question it was asked is kept in `seen`.
#[derive(Default)]
struct Printer {
    answer: Vec<Record>,
    extra: Vec<Record>,
    no_opt: bool,
    no_question: bool,
    seen: Mutex<Option<Query>>,
}

#[async_trait::async_trait]
impl Handler for Printer {
    fn name(&self) -> &'static str {
        "printer"
    }
    async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
        *self.seen.lock().unwrap() = Some(req.query().clone());
        let mut m = req.reply();
        m.answers = if self.answer.is_empty() {
            vec![Record::from_rdata(
                req.qname().clone(),
                5,
                RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
            )]
        } else {
            self.answer.clone()
        };
        m.additionals = self.extra.clone();
        if !self.no_opt {
            m.edns = req.edns.clone();
        }
        if self.no_question {
            m.queries.clear();
        }
        Ok(Response::new(m, "printer"))
    }
}

/// Runs `rules` in front of `next` for a question: the reply and the question `next` saw.
async fn serve(
    rules: Vec<RewriteRule>,
    next: Printer,
    q: &str,
    t: RecordType,
    class: DNSClass,
    edns: Option<Edns>,
) -> (
    Result<hickory_proto::op::Message, HandlerError>,
    Option<Query>,
) {
    let next = StdArc::new(next);
    let chain = Chain::new(vec![Rewrite::handler(rules), next.clone()]);
    let mut req = Request::new(
        Name::from_ascii(q).unwrap(),
        t,
        "10.240.0.1:40212".parse().unwrap(),
        Proto::Udp,
    );
    req.set_qclass(class);
    req.edns = edns;
    let out = chain.run(&req).await.map(|r| r.msg);
    let seen = next.seen.lock().unwrap().clone();
    (out, seen)
}

async fn ask(rules: Vec<RewriteRule>, next: Printer, q: &str, t: RecordType) -> Message {
    serve(rules, next, q, t, DNSClass::IN, None)
        .await
        .0
        .unwrap()
}

use hickory_proto::op::Message;

#[test]
fn test_new_rule() {
    // plugin/rewrite/rewrite_test.go: TestNewRule (the rows but the two with invalid UTF-8,
    // which a Corefile cannot hold; the edns0 rows also run in edns0.rs's table).
    let rows: &[(&[&str], bool)] = &[
        (&[], true),
        (&["foo"], true),
        (&["name"], true),
        (&["name", "a.com"], true),
        (&["name", "a.com", "b.com", "c.com"], true),
        (&["name", "a.com", "b.com"], false),
        (&["name", "exact", "a.com", "b.com"], false),
        (&["name", "prefix", "a.com", "b.com"], false),
        (&["name", "suffix", "a.com", "b.com"], false),
        (&["name", "substring", "a.com", "b.com"], false),
        (&["name", "regex", "([a])\\.com", "new-{1}.com"], false),
        (&["name", "regex", "([a]\\.com", "new-{1}.com"], true),
        (
            &[
                "name",
                "regex",
                "(dns)\\.(core)\\.(rocks)",
                "{2}.{1}.{3}",
                "answer",
                "name",
                "(core)\\.(dns)\\.(rocks)",
                "{2}.{1}.{3}",
            ],
            false,
        ),
        (
            &[
                "name",
                "regex",
                "(adns)\\.(core)\\.(rocks)",
                "{2}.{1}.{3}",
                "answer",
                "name",
                "(core)\\.(adns)\\.(rocks)",
                "{2}.{1}.{3}",
                "too.long",
                "way.too.long",
            ],
            true,
        ),
        (
            &[
                "name",
                "regex",
                "(bdns)\\.(core)\\.(rocks)",
                "{2}.{1}.{3}",
                "NoAnswer",
                "name",
                "(core)\\.(bdns)\\.(rocks)",
                "{2}.{1}.{3}",
            ],
            true,
        ),
        (
            &[
                "name",
                "regex",
                "(cdns)\\.(core)\\.(rocks)",
                "{2}.{1}.{3}",
                "answer",
                "ttl",
                "(core)\\.(cdns)\\.(rocks)",
                "{2}.{1}.{3}",
            ],
            true,
        ),
        (
            &[
                "name",
                "substring",
                "fcore.dns.rocks",
                "dns.fcore.rocks",
                "answer",
                "name",
                "(fcore)\\.(dns)\\.(rocks)",
                "{2}.{1}.{3}",
            ],
            false,
        ),
        (&["name", "substring", "a.com", "b.com", "c.com"], true),
        (&["type"], true),
        (&["type", "a"], true),
        (&["type", "any", "a", "a"], true),
        (&["type", "any", "a"], false),
        (&["type", "XY", "WV"], true),
        (&["type", "ANY", "WV"], true),
        (&["class"], true),
        (&["class", "IN"], true),
        (&["class", "ch", "in", "in"], true),
        (&["class", "ch", "in"], false),
        (&["class", "XY", "WV"], true),
        (&["class", "IN", "WV"], true),
        (&["edns0"], true),
        (&["edns0", "unknown-rule-type", "set"], true),
        (&["edns0", "local", "set", "0xffee", "abcdefg"], false),
        (&["edns0", "subnet", "set", "24", "56"], false),
        (&["unknown-action", "name", "a.com", "b.com"], true),
        (&["stop", "name", "a.com", "b.com"], false),
        (&["continue", "name", "a.com", "b.com"], false),
        (&["unknown-action", "type", "any", "a"], true),
        (&["stop", "type", "any", "a"], false),
        (&["continue", "type", "any", "a"], false),
        (&["unknown-action", "class", "ch", "in"], true),
        (&["stop", "class", "ch", "in"], false),
        (&["continue", "class", "ch", "in"], false),
        (
            &[
                "unknown-action",
                "edns0",
                "local",
                "set",
                "0xffee",
                "abcedef",
            ],
            true,
        ),
        (
            &["stop", "edns0", "local", "set", "0xffee", "abcdefg"],
            false,
        ),
        (&["continue", "edns0", "nsid", "set"], false),
        (&["unknown-action", "edns0", "nsid", "set"], true),
        (
            &["unknown-action", "edns0", "subnet", "set", "24", "64"],
            true,
        ),
        (&["continue", "edns0", "subnet", "unset"], false),
    ];
    for (args, fails) in rows {
        assert_eq!(new_rule(args).is_err(), *fails, "{args:?}");
    }
}

#[tokio::test]
async fn test_rewrite_default_revert_policy() {
    // plugin/rewrite/rewrite_test.go: TestRewriteDefaultRevertPolicy — name rules without
    // `answer auto` leave the answer's owner as the rewritten name.
    let rules: Vec<RewriteRule> = [
        &["prefix", "prefix", "to"][..],
        &["suffix", ".suffix.", ".nl."],
        &["substring", "from.substring", "to"],
        &["regex", "(f.*m)\\.regex\\.(nl)", "to.{2}"],
    ]
    .iter()
    .map(|a| typed_rule("stop", "name", a).unwrap())
    .collect();
    for (from, to) in [
        ("prefix.nl.", "to.nl."),
        ("to.suffix.", "to.nl."),
        ("from.substring.nl.", "to.nl."),
        ("from.regex.nl.", "to.nl."),
    ] {
        let m = ask(rules.clone(), Printer::default(), from, RecordType::A).await;
        assert_eq!(m.answers[0].name.to_ascii(), to, "{from}");
    }
}

#[tokio::test]
async fn test_rewrite() {
    // plugin/rewrite/rewrite_test.go: TestRewrite (NoRevertPolicy: the question the next
    // plugin sees).
    let mut rules: Vec<RewriteRule> = [
        ("stop", "name", &["from.nl.", "to.nl."][..]),
        (
            "stop",
            "name",
            &[
                "regex",
                "(core)\\.(dns)\\.(rocks)\\.(nl)",
                "{2}.{1}.{3}.{4}",
                "answer",
                "name",
                "(dns)\\.(core)\\.(rocks)\\.(nl)",
                "{2}.{1}.{3}.{4}",
            ],
        ),
        ("stop", "name", &["exact", "from.exact.nl.", "to.nl."]),
        ("stop", "name", &["prefix", "prefix", "to"]),
        ("stop", "name", &["suffix", ".suffix.", ".nl."]),
        ("stop", "name", &["substring", "from.substring", "to"]),
        (
            "stop",
            "name",
            &["regex", "(f.*m)\\.regex\\.(nl)", "to.{2}"],
        ),
        (
            "continue",
            "name",
            &["regex", "consul\\.(rocks)", "core.dns.{1}"],
        ),
        ("stop", "name", &["core.dns.rocks", "to.nl."]),
        ("continue", "class", &["HS", "CH"]),
        ("stop", "class", &["CH", "IN"]),
        ("stop", "type", &["ANY", "HINFO"]),
    ]
    .iter()
    .map(|(m, k, a)| typed_rule(m, k, a).unwrap())
    .collect();
    rules.shrink_to_fit();
    use DNSClass::{CH, HS, IN};
    use RecordType::{A, ANY, HINFO};
    let rows: &[(&str, RecordType, DNSClass, &str, RecordType, DNSClass)] = &[
        ("from.nl.", A, IN, "to.nl.", A, IN),
        ("a.nl.", A, IN, "a.nl.", A, IN),
        ("a.nl.", A, CH, "a.nl.", A, IN),
        ("a.nl.", ANY, IN, "a.nl.", HINFO, IN),
        ("from.nl.", ANY, IN, "to.nl.", ANY, IN),
        ("from.exact.nl.", A, IN, "to.nl.", A, IN),
        ("prefix.nl.", A, IN, "to.nl.", A, IN),
        ("to.suffix.", A, IN, "to.nl.", A, IN),
        ("from.substring.nl.", A, IN, "to.nl.", A, IN),
        ("from.regex.nl.", A, IN, "to.nl.", A, IN),
        ("consul.rocks.", A, IN, "to.nl.", A, IN),
        ("a.nl.", ANY, CH, "a.nl.", ANY, IN),
        ("a.nl.", ANY, HS, "a.nl.", ANY, IN),
        ("core.dns.rocks.nl.", A, IN, "dns.core.rocks.nl.", A, IN),
    ];
    for (from, ft, fc, to, tt, tc) in rows {
        let (_, seen) = serve(rules.clone(), Printer::default(), from, *ft, *fc, None).await;
        let seen = seen.unwrap();
        assert_eq!(seen.name().to_ascii(), *to, "{from} {ft} {fc}");
        assert_eq!(seen.query_type(), *tt, "{from} {ft} {fc}");
        assert_eq!(seen.query_class(), *tc, "{from} {ft} {fc}");
    }
}

#[tokio::test]
async fn test_rewrite_illegal_name() {
    // plugin/rewrite/name_test.go: TestRewriteIllegalName.
    let r = typed_rule("stop", "name", &["example.org.", "example..org."]).unwrap();
    let (out, _) = serve(
        vec![r],
        Printer::default(),
        "example.org.",
        RecordType::A,
        DNSClass::IN,
        None,
    )
    .await;
    assert!(out.unwrap_err().to_string().contains("invalid name"));
}

#[tokio::test]
async fn test_rewrite_name_tables() {
    // plugin/rewrite/name_test.go: TestRewriteNamePrefixSuffix (the question seen),
    // TestRewriteNameNoRewrite and TestRewriteNamePrefixSuffixNoAutoAnswer (the answer's owner),
    // TestRewriteNamePrefixSuffixAutoAnswer, TestRewriteNameExactAnswer and
    // TestRewriteNameRegexAnswer (the question seen and the answer's owner).
    let prefix_suffix: &[(&[&str], &str, &str)] = &[
        (
            &["prefix", "foo", "bar"],
            "foo.example.com.",
            "bar.example.com.",
        ),
        (
            &["prefix", "foo.", "bar."],
            "foo.example.com.",
            "bar.example.com.",
        ),
        (
            &["suffix", "com", "org"],
            "foo.example.com.",
            "foo.example.org.",
        ),
        (
            &["suffix", ".com", ".org"],
            "foo.example.com.",
            "foo.example.org.",
        ),
    ];
    for (args, q, want) in prefix_suffix {
        let r = typed_rule("stop", "name", args).unwrap();
        let (_, seen) = serve(
            vec![r],
            Printer::default(),
            q,
            RecordType::A,
            DNSClass::IN,
            None,
        )
        .await;
        assert_eq!(seen.unwrap().name().to_ascii(), *want, "{args:?}");
    }
    let answer_owner: &[(&[&str], &str, &str)] = &[
        // TestRewriteNameNoRewrite
        (&["prefix", "foo", "bar"], "coredns.foo.", "coredns.foo."),
        (&["prefix", "foo", "bar."], "coredns.foo.", "coredns.foo."),
        (&["suffix", "com", "org"], "com.coredns.", "com.coredns."),
        (&["suffix", "com", "org."], "com.coredns.", "com.coredns."),
        (
            &["substring", "service", "svc"],
            "com.coredns.",
            "com.coredns.",
        ),
        // TestRewriteNamePrefixSuffixNoAutoAnswer
        (
            &["prefix", "foo", "bar"],
            "foo.example.com.",
            "bar.example.com.",
        ),
        (
            &["prefix", "foo.", "bar."],
            "foo.example.com.",
            "bar.example.com.",
        ),
        (
            &["suffix", "com", "org"],
            "foo.example.com.",
            "foo.example.org.",
        ),
        (
            &["suffix", ".com", ".org"],
            "foo.example.com.",
            "foo.example.org.",
        ),
        (
            &["suffix", ".ingress.coredns.rocks", "nginx.coredns.rocks"],
            "coredns.ingress.coredns.rocks.",
            "corednsnginx.coredns.rocks.",
        ),
    ];
    for (args, q, want) in answer_owner {
        let r = typed_rule("stop", "name", args).unwrap();
        let m = ask(vec![r], Printer::default(), q, RecordType::A).await;
        assert_eq!(m.answers[0].name.to_ascii(), *want, "{args:?} {q}");
    }
    let both: &[(&[&str], &str, &str, &str)] = &[
        // TestRewriteNamePrefixSuffixAutoAnswer
        (
            &["prefix", "foo", "bar", "answer", "auto"],
            "foo.example.com.",
            "bar.example.com.",
            "foo.example.com.",
        ),
        (
            &["prefix", "foo.", "bar.", "answer", "auto"],
            "foo.example.com.",
            "bar.example.com.",
            "foo.example.com.",
        ),
        (
            &["suffix", "com", "org", "answer", "auto"],
            "foo.example.com.",
            "foo.example.org.",
            "foo.example.com.",
        ),
        (
            &["suffix", ".com", ".org", "answer", "auto"],
            "foo.example.com.",
            "foo.example.org.",
            "foo.example.com.",
        ),
        (
            &[
                "suffix",
                ".ingress.coredns.rocks",
                "nginx.coredns.rocks",
                "answer",
                "auto",
            ],
            "coredns.ingress.coredns.rocks.",
            "corednsnginx.coredns.rocks.",
            "coredns.ingress.coredns.rocks.",
        ),
        // TestRewriteNameExactAnswer
        (
            &["exact", "coredns.rocks", "service.consul", "answer", "auto"],
            "coredns.rocks.",
            "service.consul.",
            "coredns.rocks.",
        ),
        (
            &[
                "exact",
                "coredns.rocks.",
                "service.consul.",
                "answer",
                "auto",
            ],
            "coredns.rocks.",
            "service.consul.",
            "coredns.rocks.",
        ),
        (
            &["exact", "coredns.rocks", "service.consul"],
            "coredns.rocks.",
            "service.consul.",
            "coredns.rocks.",
        ),
        (
            &["exact", "coredns.rocks.", "service.consul."],
            "coredns.rocks.",
            "service.consul.",
            "coredns.rocks.",
        ),
        (
            &["exact", "coredns.org.", "service.consul."],
            "coredns.rocks.",
            "coredns.rocks.",
            "coredns.rocks.",
        ),
        // TestRewriteNameRegexAnswer
        (
            &[
                "regex",
                "(.*).coredns.rocks",
                "{1}.coredns.maps",
                "answer",
                "auto",
            ],
            "foo.coredns.rocks.",
            "foo.coredns.maps.",
            "foo.coredns.rocks.",
        ),
        (
            &[
                "regex",
                "(.*).coredns.rocks",
                "{1}.coredns.maps",
                "answer",
                "name",
                "(.*).coredns.maps",
                "{1}.coredns.works",
            ],
            "foo.coredns.rocks.",
            "foo.coredns.maps.",
            "foo.coredns.works.",
        ),
        (
            &["regex", "(.*).coredns.rocks", "{1}.coredns.maps"],
            "foo.coredns.rocks.",
            "foo.coredns.maps.",
            "foo.coredns.maps.",
        ),
    ];
    for (args, q, rewritten, want) in both {
        let r = typed_rule("stop", "name", args).unwrap();
        let (m, seen) = serve(
            vec![r],
            Printer::default(),
            q,
            RecordType::A,
            DNSClass::IN,
            None,
        )
        .await;
        assert_eq!(seen.unwrap().name().to_ascii(), *rewritten, "{args:?}");
        assert_eq!(m.unwrap().answers[0].name.to_ascii(), *want, "{args:?}");
    }
}

#[test]
fn test_new_name_rule() {
    // plugin/rewrite/name_test.go: TestNewNameRule (each row as `newNameRule` and as
    // `newRule(next, "name", …)`), and TestNewNameRuleLargeRegex.
    let s = "staging.mydomain.com";
    let r = "(.*).coredns.rock";
    let t = "{1}.staging.mydomain.com";
    let rows: Vec<(Vec<&str>, bool)> = vec![
        (
            vec!["exact", "srv3.coredns.rocks", "srv4.coredns.rocks"],
            false,
        ),
        (vec!["srv1.coredns.rocks", "srv2.coredns.rocks"], false),
        (vec!["suffix", "coredns.rocks", "coredns.rocks."], false),
        (vec!["suffix", "coredns.rocks.", "coredns.rocks"], false),
        (vec!["suffix", "coredns.rocks.", "coredns.rocks."], false),
        (vec!["regex", "srv1.coredns.rocks", "10"], false),
        (vec!["regex", "(.*).coredns.rocks", "10"], false),
        (
            vec!["regex", "(.*).coredns.rocks", "{1}.coredns.rocks"],
            false,
        ),
        (
            vec!["regex", "(.*).coredns.rocks", "{1}.{2}.coredns.rocks"],
            true,
        ),
        (
            vec![
                "regex",
                s,
                "aws-loadbalancer-id.us-east-1.elb.amazonaws.com",
            ],
            false,
        ),
        (vec!["suffix", s, "coredns.rock", "answer"], true),
        (vec!["suffix", s, "coredns.rock", "answer", "name"], true),
        (vec!["suffix", s, "coredns.rock", "answer", "other"], true),
        (vec!["suffix", s, "coredns.rock", "answer", "auto"], false),
        (vec!["regex", s, "coredns.rock", "answer", "auto"], false),
        (vec!["regex", s, "coredns.rock", "answer", "name"], true),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                "coredns.rock",
                s,
            ],
            false,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                "{1}.{2}.staging.mydomain.com",
            ],
            true,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                t,
                "name",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                t,
                "answer",
                "name",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                t,
                "name",
                r,
            ],
            true,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                t,
                "value",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                t,
                "answer",
                "value",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "regex",
                s,
                "coredns.rock",
                "answer",
                "name",
                r,
                t,
                "value",
                r,
            ],
            true,
        ),
        (
            vec![
                "suffix",
                "staging.mydomain.com.",
                "coredns.rock.",
                "answer",
                "value",
                r,
                t,
                "value",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "suffix",
                "staging.mydomain.com.",
                "coredns.rock.",
                "answer",
                "value",
                r,
                t,
                "answer",
                "value",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "suffix",
                "staging.mydomain.com.",
                "coredns.rock.",
                "answer",
                "value",
                r,
                t,
                "name",
                r,
                t,
            ],
            false,
        ),
        (
            vec![
                "suffix",
                "staging.mydomain.com.",
                "coredns.rock.",
                "answer",
                "value",
                r,
                t,
                "value",
                r,
            ],
            true,
        ),
    ];
    for (args, fails) in &rows {
        assert_eq!(
            name_rule(&args.iter().map(|a| a.to_string()).collect::<Vec<_>>()).is_err(),
            *fails,
            "{args:?}"
        );
        assert_eq!(
            typed_rule("stop", "name", args).is_err(),
            *fails,
            "{args:?}"
        );
    }
    let large = "a".repeat(10_001);
    let e = typed_rule("stop", "name", &["regex", &large, "replacement"]).unwrap_err();
    assert!(e.to_string().contains("too long"), "{e}");
}

#[test]
fn test_remap_string_rewriter() {
    // plugin/rewrite/name_test.go: TestRemapStringRewriter.
    let r = StrRw::Remap("example.com.".into(), "example.org.".into());
    for (src, want) in [
        ("example.com.", "example.org."),
        ("sub.example.com.", "sub.example.org."),
        ("a.b.example.com.", "a.b.example.org."),
        ("notexample.com.", "notexample.com."),
        (".example.com.", ".example.org."),
        ("example.net.", "example.net."),
        ("com.", "com."),
        ("", ""),
    ] {
        assert_eq!(r.rewrite(src).unwrap_or_else(|| src.into()), want, "{src}");
    }
}

#[test]
fn test_new_ttl_rule() {
    // plugin/rewrite/ttl_test.go: TestNewTTLRule (as `newTTLRule` and as `newRule`, which here
    // are one parser) and TestNewTTLRuleLargeRegex.
    let rows: &[(&str, &[&str], bool)] = &[
        ("stop", &["srv1.coredns.rocks", "10"], false),
        ("stop", &["exact", "srv1.coredns.rocks", "15"], false),
        ("stop", &["prefix", "coredns.rocks", "20"], false),
        ("stop", &["suffix", "srv1", "25"], false),
        ("stop", &["substring", "coredns", "30"], false),
        (
            "stop",
            &["regex", "(srv1)\\.(coredns)\\.(rocks)", "35"],
            false,
        ),
        ("continue", &["srv1.coredns.rocks", "10"], false),
        ("continue", &["exact", "srv1.coredns.rocks", "15"], false),
        ("continue", &["prefix", "coredns.rocks", "20"], false),
        ("continue", &["suffix", "srv1", "25"], false),
        ("continue", &["substring", "coredns", "30"], false),
        (
            "continue",
            &["regex", "(srv1)\\.(coredns)\\.(rocks)", "35"],
            false,
        ),
        (
            "stop",
            &["srv1.coredns.rocks", "12345678901234567890"],
            true,
        ),
        ("stop", &["srv1.coredns.rocks", "coredns.rocks"], true),
        ("stop", &["srv1.coredns.rocks", "#1"], true),
        ("stop", &["range.coredns.rocks", "1-2"], false),
        ("stop", &["ceil.coredns.rocks", "-2"], false),
        ("stop", &["floor.coredns.rocks", "1-"], false),
        ("stop", &["range.coredns.rocks", "2-2"], false),
        ("stop", &["invalid.coredns.rocks", "-"], true),
        ("stop", &["invalid.coredns.rocks", "2-1"], true),
        ("stop", &["invalid.coredns.rocks", "5-10-20"], true),
    ];
    for (mode, args, fails) in rows {
        assert_eq!(
            typed_rule(mode, "ttl", args).is_err(),
            *fails,
            "{mode} {args:?}"
        );
    }
    let large = "a".repeat(10_001);
    let e = typed_rule("stop", "ttl", &["regex", &large, "300"]).unwrap_err();
    assert!(e.to_string().contains("too long"), "{e}");
}

#[tokio::test]
async fn test_ttl_rewrite() {
    // plugin/rewrite/ttl_test.go: TestTtlRewrite / doTTLTests.
    let rules: Vec<RewriteRule> = [
        &["stop", "ttl", "srv1.coredns.rocks", "1"][..],
        &["stop", "ttl", "exact", "srv15.coredns.rocks", "15"],
        &["stop", "ttl", "prefix", "srv30", "30"],
        &["stop", "ttl", "suffix", "45.coredns.rocks", "45"],
        &["stop", "ttl", "substring", "rv50", "50"],
        &[
            "stop",
            "ttl",
            "regex",
            "(srv10)\\.(coredns)\\.(rocks)",
            "10",
        ],
        &[
            "stop",
            "ttl",
            "regex",
            "(srv20)\\.(coredns)\\.(rocks)",
            "20",
        ],
        &["stop", "ttl", "range.example.com.", "30-300"],
        &["stop", "ttl", "ceil.example.com.", "-11"],
        &["stop", "ttl", "floor.example.com.", "5-"],
    ]
    .iter()
    .map(|a| new_rule(a).unwrap())
    .collect();
    let rows: &[(&str, RecordType, &[&str], u32)] = &[
        (
            "srv1.coredns.rocks.",
            RecordType::A,
            &["srv1.coredns.rocks. 5 IN A 10.0.0.1"],
            1,
        ),
        (
            "srv15.coredns.rocks.",
            RecordType::A,
            &["srv15.coredns.rocks. 5 IN A 10.0.0.15"],
            15,
        ),
        (
            "srv30.coredns.rocks.",
            RecordType::A,
            &["srv30.coredns.rocks. 5 IN A 10.0.0.30"],
            30,
        ),
        (
            "srv45.coredns.rocks.",
            RecordType::A,
            &["srv45.coredns.rocks. 5 IN A 10.0.0.45"],
            45,
        ),
        (
            "srv50.coredns.rocks.",
            RecordType::A,
            &["srv50.coredns.rocks. 5 IN A 10.0.0.50"],
            50,
        ),
        (
            "srv10.coredns.rocks.",
            RecordType::A,
            &["srv10.coredns.rocks. 5 IN A 10.0.0.10"],
            10,
        ),
        (
            "xmpp.coredns.rocks.",
            RecordType::SRV,
            &["xmpp.coredns.rocks. 5 IN SRV 0 100 100 srvxmpp.coredns.rocks."],
            5,
        ),
        (
            "srv15.coredns.rocks.",
            RecordType::HINFO,
            &["srv15.coredns.rocks. 5 IN HINFO INTEL-64 \"RHEL 7.5\""],
            15,
        ),
        (
            "srv20.coredns.rocks.",
            RecordType::A,
            &[
                "srv20.coredns.rocks. 5 IN A 10.0.0.22",
                "srv20.coredns.rocks. 5 IN A 10.0.0.23",
            ],
            20,
        ),
        (
            "range.example.com.",
            RecordType::A,
            &["range.example.com. 5 IN A 10.0.0.1"],
            30,
        ),
        (
            "range.example.com.",
            RecordType::A,
            &["range.example.com. 55 IN A 10.0.0.1"],
            55,
        ),
        (
            "range.example.com.",
            RecordType::A,
            &["range.example.com. 500 IN A 10.0.0.1"],
            300,
        ),
        (
            "ceil.example.com.",
            RecordType::A,
            &["ceil.example.com. 5 IN A 10.0.0.1"],
            5,
        ),
        (
            "ceil.example.com.",
            RecordType::A,
            &["ceil.example.com. 15 IN A 10.0.0.1"],
            11,
        ),
        (
            "floor.example.com.",
            RecordType::A,
            &["floor.example.com. 0 IN A 10.0.0.1"],
            5,
        ),
        (
            "floor.example.com.",
            RecordType::A,
            &["floor.example.com. 30 IN A 10.0.0.1"],
            30,
        ),
    ];
    for (q, t, answer, ttl) in rows {
        let next = Printer {
            answer: answer.iter().map(|s| rr(s)).collect(),
            ..Default::default()
        };
        let m = ask(rules.clone(), next, q, *t).await;
        assert!(!m.answers.is_empty(), "{q}");
        for a in &m.answers {
            assert_eq!(a.ttl, *ttl, "{q} {t}");
        }
    }
}

#[tokio::test]
async fn test_response_reverter() {
    // plugin/rewrite/reverter_test.go: TestResponseReverter (4 of 6 rows; the 2 noRevert rows
    // test an internal knob), with the stop and the continue rule.
    for mode in ["stop", "continue"] {
        let rule = typed_rule(
            mode,
            "name",
            &[
                "regex",
                "(core)\\.(dns)\\.(rocks)",
                "{2}.{1}.{3}",
                "answer",
                "name",
                "(dns)\\.(core)\\.(rocks)",
                "{2}.{1}.{3}",
            ],
        )
        .unwrap();
        let rows: &[(RecordType, &[&str])] = &[
            (RecordType::A, &["dns.core.rocks. 5 IN A 10.0.0.1"]),
            (
                RecordType::SRV,
                &["dns.core.rocks. 5 IN SRV 0 100 100 srv1.dns.core.rocks."],
            ),
            (
                RecordType::HINFO,
                &["core.dns.rocks. 5 IN HINFO INTEL-64 \"RHEL 7.4\""],
            ),
            (
                RecordType::A,
                &[
                    "dns.core.rocks. 5 IN A 10.0.0.1",
                    "dns.core.rocks. 5 IN A 10.0.0.2",
                ],
            ),
        ];
        for (t, answer) in rows {
            let next = Printer {
                answer: answer.iter().map(|s| rr(s)).collect(),
                ..Default::default()
            };
            let (m, seen) = serve(
                vec![rule.clone()],
                next,
                "core.dns.rocks.",
                *t,
                DNSClass::IN,
                None,
            )
            .await;
            assert_eq!(seen.unwrap().name().to_ascii(), "dns.core.rocks.");
            for a in &m.unwrap().answers {
                assert_eq!(a.name.to_ascii(), "core.dns.rocks.", "{mode} {t}");
            }
        }
    }
}

/// The name in a record's data, as CoreDNS's getRecordValueForRewrite reads it.
fn value(r: &Record) -> String {
    let mut r = r.clone();
    if let Some(t) = dname_target(&r) {
        return t.to_ascii();
    }
    value_of(&mut r).map(|n| n.to_ascii()).unwrap_or_default()
}

#[tokio::test]
async fn test_value_response_reverter() {
    // plugin/rewrite/reverter_test.go: TestValueResponseReverter (the 7 rows of valueTests
    // that revert, under each of its four rule sets): owners, values (SRV, CNAME, DNAME, MX,
    // NS, SOA MNAME, NAPTR replacement) and additional-section owners go back.
    let regex_rule = |mode: &str| {
        vec![
            typed_rule(
                mode,
                "name",
                &[
                    "regex",
                    "(.*)\\.domain\\.uk",
                    "{1}.cluster.local",
                    "answer",
                    "name",
                    "(.*)\\.cluster\\.local",
                    "{1}.domain.uk",
                    "answer",
                    "value",
                    "(.*)\\.cluster\\.local",
                    "{1}.domain.uk",
                ],
            )
            .unwrap(),
        ]
    };
    let sets = [
        ("stop", regex_rule("stop")),
        ("continue", regex_rule("continue")),
        (
            "suffix",
            vec![
                typed_rule(
                    "stop",
                    "name",
                    &[
                        "suffix",
                        ".domain.uk",
                        ".cluster.local",
                        "answer",
                        "auto",
                        "answer",
                        "value",
                        "(.*)\\.cluster\\.local",
                        "{1}.domain.uk",
                    ],
                )
                .unwrap(),
            ],
        ),
        (
            "suffix_multiple",
            vec![
                typed_rule(
                    "continue",
                    "name",
                    &["suffix", ".domain.uk", ".domain.us", "answer", "auto"],
                )
                .unwrap(),
                typed_rule(
                    "stop",
                    "name",
                    &["suffix", ".domain.us", ".cluster.local", "answer", "auto"],
                )
                .unwrap(),
            ],
        ),
    ];
    let rows: &[(RecordType, &str, &str, &str, RecordType, &str)] = &[
        (
            RecordType::SRV,
            "my.cluster.local. 5 IN SRV 0 100 100 srv1.my.cluster.local.",
            "srv1.my.cluster.local. 5 IN A 10.0.0.1",
            "srv1.my.domain.uk.",
            RecordType::SRV,
            "srv1.my.domain.uk.",
        ),
        (
            RecordType::ANY,
            "my.cluster.local. 3600 IN CNAME cname.cluster.local.",
            "cname.cluster.local. 5 IN A 10.0.0.1",
            "cname.domain.uk.",
            RecordType::CNAME,
            "cname.domain.uk.",
        ),
        (
            RecordType::ANY,
            "my.cluster.local. 3600 IN DNAME dname.cluster.local.",
            "dname.cluster.local. 5 IN A 10.0.0.1",
            "dname.domain.uk.",
            RecordType::DNAME,
            "dname.domain.uk.",
        ),
        (
            RecordType::MX,
            "my.cluster.local. 3600 IN MX 1 mx1.cluster.local.",
            "mx1.cluster.local. 5 IN A 10.0.0.1",
            "mx1.domain.uk.",
            RecordType::MX,
            "mx1.domain.uk.",
        ),
        (
            RecordType::ANY,
            "my.cluster.local. 3600 IN NS ns1.cluster.local.",
            "ns1.cluster.local. 5 IN A 10.0.0.1",
            "ns1.domain.uk.",
            RecordType::NS,
            "ns1.domain.uk.",
        ),
        (
            RecordType::SOA,
            "my.cluster.local. 1800 IN SOA ns1.cluster.local. admin.cluster.local. 1502165581 14400 3600 604800 14400",
            "ns1.cluster.local. 5 IN A 10.0.0.1",
            "ns1.domain.uk.",
            RecordType::SOA,
            "ns1.domain.uk.",
        ),
        (
            RecordType::NAPTR,
            "my.cluster.local. 100 IN NAPTR 100 10 \"S\" \"SIP+D2U\" \"!^.*$!sip:customer-service@example.com!\" _sip._udp.cluster.local.",
            "ns1.cluster.local. 5 IN A 10.0.0.1",
            "_sip._udp.domain.uk.",
            RecordType::NAPTR,
            "ns1.domain.uk.",
        ),
    ];
    for (set, rules) in &sets {
        for (t, answer, extra, want_value, want_type, want_extra) in rows {
            let next = Printer {
                answer: vec![rr(answer)],
                extra: vec![rr(extra)],
                ..Default::default()
            };
            let (m, seen) =
                serve(rules.clone(), next, "my.domain.uk.", *t, DNSClass::IN, None).await;
            assert_eq!(
                seen.unwrap().name().to_ascii(),
                "my.cluster.local.",
                "{set}"
            );
            let m = m.unwrap();
            assert_eq!(m.answers[0].record_type(), *want_type, "{set} {t}");
            assert_eq!(m.answers[0].name.to_ascii(), "my.domain.uk.", "{set} {t}");
            assert_eq!(value(&m.answers[0]), *want_value, "{set} {t}");
            assert_eq!(m.additionals[0].record_type(), RecordType::A, "{set} {t}");
            assert_eq!(m.additionals[0].name.to_ascii(), *want_extra, "{set} {t}");
        }
    }
}

#[tokio::test]
async fn test_response_reverter_restores_missing_question() {
    // plugin/rewrite/reverter_test.go: TestResponseReverterRestoresMissingQuestion (the
    // answer's owner; the server puts the client's question into every reply).
    let r = typed_rule(
        "stop",
        "name",
        &["suffix", ".example.org", ".example.net", "answer", "auto"],
    )
    .unwrap();
    let next = Printer {
        no_question: true,
        ..Default::default()
    };
    let m = ask(vec![r], next, "service.example.org.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].name.to_ascii(), "service.example.org.");
}

fn local(code: u16, d: &[u8]) -> EdnsOption {
    EdnsOption::Unknown(code, d.to_vec())
}

fn nsid() -> EdnsOption {
    EdnsOption::NSID(NSIDPayload::new(vec![]).unwrap())
}

fn subnet(addr: &str, prefix: u8) -> EdnsOption {
    EdnsOption::Subnet(ClientSubnet::new(addr.parse().unwrap(), prefix, 0))
}

fn edns_with(opts: &[EdnsOption]) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(4096);
    for o in opts {
        e.options_mut().insert(o.clone());
    }
    e
}

/// The options of a reply's OPT record, sorted by code (CoreDNS's tests compare lists).
fn shown(m: &Message) -> Option<Vec<EdnsOption>> {
    let mut v: Vec<EdnsOption> = m
        .edns
        .as_ref()?
        .options()
        .as_ref()
        .iter()
        .map(|(_, o)| o.clone())
        .collect();
    v.sort_by_key(code_of);
    Some(v)
}

async fn edns_case(rules: &[&[&str]], from: Option<&[EdnsOption]>) -> Option<Vec<EdnsOption>> {
    let rules = rules
        .iter()
        .map(|r| {
            let mut a = vec![r[0], "edns0"];
            a.extend_from_slice(&r[1..]);
            new_rule(&a).unwrap()
        })
        .collect();
    let (m, _) = serve(
        rules,
        Printer::default(),
        "example.com.",
        RecordType::A,
        DNSClass::IN,
        from.map(edns_with),
    )
    .await;
    shown(&m.unwrap())
}

#[tokio::test]
async fn test_edns0_multi_rule() {
    // plugin/rewrite/rewrite_test.go: TestEdns0MultiRule (the client is 10.240.0.1).
    let foobar = local(0xffee, b"foobar");
    let zero = subnet("0.0.0.0", 0);
    type Row<'a> = (
        &'a [&'a [&'a str]],
        Option<Vec<EdnsOption>>,
        Vec<EdnsOption>,
    );
    let rows: Vec<Row<'_>> = vec![
        (
            &[
                &["stop", "local", "replace", "0xffee", "abcdef"],
                &["stop", "local", "set", "0xffee", "fedcba"],
            ],
            None,
            vec![local(0xffee, b"fedcba")],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "abcdef"],
                &["stop", "local", "set", "0xffee", "fedcba"],
            ],
            Some(vec![foobar.clone()]),
            vec![local(0xffee, b"abcdef")],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "abcdef", "revert"],
                &["stop", "local", "set", "0xffee", "fedcba", "revert"],
            ],
            None,
            vec![],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "abcdef", "revert"],
                &["stop", "local", "set", "0xffee", "fedcba", "revert"],
            ],
            Some(vec![foobar.clone()]),
            vec![foobar.clone()],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "{qname}"],
                &["stop", "local", "set", "0xffee", "{qtype}"],
            ],
            None,
            vec![local(0xffee, &[0, 1])],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "{qname}"],
                &["stop", "local", "set", "0xffee", "{qtype}"],
            ],
            Some(vec![foobar.clone()]),
            vec![local(0xffee, b"example.com.")],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "{qname}", "revert"],
                &["stop", "local", "set", "0xffee", "{qtype}", "revert"],
            ],
            None,
            vec![],
        ),
        (
            &[
                &["stop", "local", "replace", "0xffee", "{qname}", "revert"],
                &["stop", "local", "set", "0xffee", "{qtype}", "revert"],
            ],
            Some(vec![foobar.clone()]),
            vec![foobar.clone()],
        ),
        (
            &[&["stop", "nsid", "replace"], &["stop", "nsid", "set"]],
            None,
            vec![nsid()],
        ),
        (
            &[&["stop", "nsid", "replace"], &["stop", "nsid", "set"]],
            Some(vec![foobar.clone()]),
            vec![nsid(), foobar.clone()],
        ),
        (
            &[&["stop", "nsid", "replace"], &["stop", "nsid", "set"]],
            Some(vec![nsid()]),
            vec![nsid()],
        ),
        (
            &[
                &["stop", "nsid", "replace", "revert"],
                &["stop", "nsid", "set", "revert"],
            ],
            None,
            vec![],
        ),
        (
            &[
                &["stop", "nsid", "replace", "revert"],
                &["stop", "nsid", "set", "revert"],
            ],
            Some(vec![foobar.clone()]),
            vec![foobar.clone()],
        ),
        (
            &[
                &["stop", "nsid", "replace", "revert"],
                &["stop", "nsid", "set", "revert"],
            ],
            Some(vec![nsid()]),
            vec![nsid()],
        ),
        (
            &[
                &["stop", "subnet", "replace", "32", "56"],
                &["stop", "subnet", "set", "0", "56"],
            ],
            None,
            vec![zero.clone()],
        ),
        (
            &[
                &["stop", "subnet", "replace", "32", "56"],
                &["stop", "subnet", "set", "0", "56"],
            ],
            Some(vec![zero.clone()]),
            vec![subnet("10.240.0.1", 32)],
        ),
        (
            &[
                &["stop", "subnet", "replace", "32", "56", "revert"],
                &["stop", "subnet", "set", "0", "56", "revert"],
            ],
            None,
            vec![],
        ),
        (
            &[
                &["stop", "subnet", "replace", "32", "56", "revert"],
                &["stop", "subnet", "set", "0", "56", "revert"],
            ],
            Some(vec![zero.clone()]),
            vec![zero.clone()],
        ),
    ];
    for (i, (rules, from, want)) in rows.iter().enumerate() {
        let mut want = want.clone();
        want.sort_by_key(code_of);
        assert_eq!(
            edns_case(rules, from.as_deref()).await,
            Some(want),
            "row {i}"
        );
    }
}

#[tokio::test]
async fn test_edns0_revert_and_unset() {
    // plugin/rewrite/rewrite_test.go: TestRewriteEDNS0Revert (8 rows) and
    // TestRewriteEDNS0Unset (10 rows).
    let abcdef = local(0xffee, &[0xab, 0xcd, 0xef]);
    let foobar = local(0xffee, b"foobar");
    type Row<'a> = (&'a [&'a str], Vec<EdnsOption>, Vec<EdnsOption>);
    let rows: Vec<Row<'_>> = vec![
        (
            &["local", "set", "0xffee", "0xabcdef", "revert"],
            vec![],
            vec![],
        ),
        (
            &["local", "append", "0xffee", "abcdefghijklmnop", "revert"],
            vec![],
            vec![],
        ),
        (
            &["local", "replace", "0xffee", "abcdefghijklmnop", "revert"],
            vec![],
            vec![],
        ),
        (&["nsid", "set", "revert"], vec![], vec![]),
        (&["nsid", "append", "revert"], vec![], vec![]),
        (&["nsid", "replace"], vec![], vec![]),
        // The Go test adds its fromOpts to the reply after the fact: they are what stays.
        (
            &["local", "set", "0xffee", "0xabcd", "revert"],
            vec![local(0xffed, &[0xab, 0xcd, 0xef])],
            vec![local(0xffed, &[0xab, 0xcd, 0xef])],
        ),
        (
            &["local", "replace", "0xffee", "abcdefghijklmnop"],
            vec![local(0xffef, &[0xab, 0xcd, 0xef])],
            vec![local(0xffef, &[0xab, 0xcd, 0xef])],
        ),
        // TestRewriteEDNS0Unset
        (&["local", "unset", "0xffee"], vec![], vec![]),
        (&["local", "unset", "0xffee"], vec![abcdef.clone()], vec![]),
        (
            &["local", "unset", "0xffed"],
            vec![abcdef.clone()],
            vec![abcdef.clone()],
        ),
        (&["nsid", "unset"], vec![nsid()], vec![]),
        (&["nsid", "unset"], vec![], vec![]),
        (&["subnet", "unset"], vec![subnet("0.0.0.0", 0)], vec![]),
        (&["subnet", "unset"], vec![], vec![]),
        (
            &["nsid", "unset"],
            vec![foobar.clone(), nsid()],
            vec![foobar.clone()],
        ),
        (
            &["local", "unset", "0xffee"],
            vec![foobar.clone(), nsid()],
            vec![nsid()],
        ),
        (
            &["subnet", "unset"],
            vec![foobar.clone(), nsid()],
            vec![nsid(), foobar.clone()],
        ),
    ];
    for (i, (args, from, want)) in rows.iter().enumerate() {
        let mut rule = vec!["stop"];
        rule.extend_from_slice(args);
        let from = (!from.is_empty()).then_some(from.as_slice());
        let mut want = want.clone();
        want.sort_by_key(code_of);
        assert_eq!(edns_case(&[&rule], from).await, Some(want), "row {i}");
    }
}

#[tokio::test]
async fn test_edns0_revert_without_opt_in_the_reply() {
    // plugin/rewrite/rewrite_test.go: TestRewriteEDNS0RevertDoesNotLeakThroughScrubWriter and
    // reverter_test.go: TestEDNS0ResponseReverterNoOPT — a reverted option never shows in
    // the reply; the client's own option is what the server's scrub writer (CoreDNS's
    // SizeAndDo reusing the request's OPT record) shows.
    let rule = new_rule(&["edns0", "local", "set", "0xffee", "0xabcdef", "revert"]).unwrap();
    let next = Printer {
        no_opt: true,
        ..Default::default()
    };
    let (m, _) = serve(
        vec![rule],
        next,
        "example.org.",
        RecordType::A,
        DNSClass::IN,
        None,
    )
    .await;
    let m = m.unwrap();
    assert_eq!(m.answers.len(), 1);
    assert!(m.edns.is_none());
    let rule = new_rule(&["edns0", "local", "replace", "0xffee", "0x222222", "revert"]).unwrap();
    let next = Printer {
        no_opt: true,
        ..Default::default()
    };
    let own = local(0xffee, &[0x11, 0x11, 0x11]);
    let (m, _) = serve(
        vec![rule],
        next,
        "example.org.",
        RecordType::A,
        DNSClass::IN,
        Some(edns_with(std::slice::from_ref(&own))),
    )
    .await;
    let m = m.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(shown(&m).unwrap_or_default(), vec![own]);
}

#[test]
fn test_parse() {
    // plugin/rewrite/setup_test.go: TestParse.
    for (corefile, fails, contains) in [
        ("rewrite", true, ""),
        ("rewrite name", true, ""),
        ("rewrite name a.com b.com", false, ""),
        (
            "rewrite stop {\n    name regex foo bar\n    answer name bar foo\n}",
            false,
            "",
        ),
        (
            "rewrite stop name regex foo bar answer name bar foo",
            false,
            "",
        ),
        (
            "rewrite stop {\n    name regex foo bar\n    answer name bar foo\n    name baz\n}",
            true,
            "2 arguments required",
        ),
        (
            "rewrite stop {\n    answer name bar foo\n    name regex foo bar\n}",
            true,
            "must begin with a name rule",
        ),
        ("rewrite stop", true, ""),
        ("rewrite continue", true, ""),
        (
            "rewrite stop name regex [bad[ bar answer name bar foo",
            true,
            "",
        ),
    ] {
        let toks = lex(&StdArc::from("Corefile"), corefile);
        let got = parse(&mut Dispenser::new(&toks));
        assert_eq!(got.is_err(), fails, "{corefile}");
        if let Err(e) = got {
            assert!(e.to_string().contains(contains), "{corefile}: {e}");
        }
    }
}
