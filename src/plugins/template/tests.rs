//! CoreDNS's template tests (plugin/template/*_test.go), ported: each table names its Go file
//! and test. The client is 10.240.0.1:40212, as CoreDNS's `test.ResponseWriter`; the next
//! plugin answers as a marker ("fallthrough", CoreDNS's `rcodeFallthrough`).

use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RecordType};

use super::*;
use crate::corefile::lexer::lex;
use crate::plugins::{Chain, Proto};

fn parse_in(s: &str, zones: &[&str]) -> Result<Vec<TemplateConfig>, Error> {
    let toks = lex(&Arc::from("Corefile"), s);
    let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
    parse(&mut Dispenser::new(&toks), &zones)
}

fn run(s: &str) -> Result<Vec<TemplateConfig>, Error> {
    parse_in(s, &["."])
}

/// The next plugin: a marker answer.
struct Fallthrough;

#[async_trait::async_trait]
impl Handler for Fallthrough {
    fn name(&self) -> &'static str {
        "fallthrough"
    }
    async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
        Ok(Response::new(req.reply(), "fallthrough"))
    }
}

#[derive(Debug)]
enum Out {
    Answer(Message),
    Fallthrough,
    ServFail(String),
}

fn req(name: &str, class: DNSClass, t: RecordType) -> Request {
    let mut r = Request::new(
        Name::from_ascii(name).unwrap(),
        t,
        "10.240.0.1:40212".parse().unwrap(),
        Proto::Udp,
    );
    r.set_qclass(class);
    r
}

async fn serve(cfg: Vec<TemplateConfig>, r: &Request) -> Out {
    let metrics = TemplateMetrics::new(&prometheus::Registry::new()).unwrap();
    let handler = Arc::new(Template::new(cfg, Arc::new(metrics)));
    let chain = Chain::new(vec![handler, Arc::new(Fallthrough)]);
    match chain.run(r).await {
        Ok(resp) if resp.plugin == "fallthrough" => Out::Fallthrough,
        Ok(resp) => Out::Answer(resp.msg.into_message()),
        Err(e) => {
            assert_eq!(e.rcode(), ResponseCode::ServFail, "{e}");
            Out::ServFail(e.to_string())
        }
    }
}

async fn ask(cfg: &str, name: &str, class: DNSClass, t: RecordType) -> Out {
    serve(
        run(cfg).unwrap_or_else(|e| panic!("{cfg}: {e}")),
        &req(name, class, t),
    )
    .await
}

fn answer(o: Out) -> Message {
    match o {
        Out::Answer(m) => m,
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn text(r: &Record) -> String {
    r.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn texts(rs: &[Record]) -> Vec<String> {
    rs.iter().map(text).collect()
}

const IP_A: &str = r#"template ANY ANY . {
    match "(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$"
    answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    fallthrough
}"#;

// plugin/template/template_test.go: TestHandler (17 cases).
#[tokio::test]
async fn test_handler() {
    use DNSClass::IN;
    use RecordType as T;
    // RcodeServFail
    let o = ask(
        "template ANY ANY . {\n rcode SERVFAIL\n fallthrough\n}",
        "test.invalid.",
        IN,
        T::A,
    )
    .await;
    assert!(matches!(o, Out::ServFail(_)), "{o:?}");
    // ExampleDomainNameMismatch
    assert!(matches!(
        ask(IP_A, "test.invalid.", IN, T::A).await,
        Out::Fallthrough
    ));
    // BrokenTemplate
    let o = ask(
        "template ANY ANY . {\n match \"[.]example[.]$\"\n answer \"{{ .Name }} 60 IN TXT \\\"{{ index .Match 2 }}\\\"\"\n fallthrough\n}",
        "test.example.",
        IN,
        T::ANY,
    )
    .await;
    assert!(
        matches!(&o, Out::ServFail(e) if e.contains("error calling index: index out of range: 2")),
        "{o:?}"
    );
    // NonRRTemplate, NonRRAdditionalTemplate, NonRRAuthorityTemplate
    for section in ["answer", "additional", "authority"] {
        let o = ask(
            &format!(
                "template ANY ANY . {{\n match \"[.]example[.]$\"\n {section} \"{{{{ .Name }}}}\"\n fallthrough\n}}"
            ),
            "test.example.",
            IN,
            T::ANY,
        )
        .await;
        assert!(
            matches!(&o, Out::ServFail(e) if e.contains("test.example.")),
            "{section}: {o:?}"
        );
    }
    // ExampleIPMatch
    let m = answer(
        ask(
            "template IN A . {\n match .*\n answer \"{{ .Name }} 60 IN A {{ .Remote }}\"\n fallthrough\n}",
            "test.example.",
            IN,
            T::A,
        )
        .await,
    );
    assert_eq!(texts(&m.answers), ["test.example. 60 IN A 10.240.0.1"]);
    // ExampleDomainMatch
    let m = answer(ask(IP_A, "ip-10-95-12-8.example.", IN, T::A).await);
    assert_eq!(
        texts(&m.answers),
        ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    );
    // ExampleDomainMatchHexIp
    let m = answer(
        ask(
            "template ANY ANY . {\n match \"^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$\"\n answer \"{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}\"\n fallthrough\n}",
            "ip0a5f0c09.example.",
            IN,
            T::A,
        )
        .await,
    );
    assert_eq!(
        texts(&m.answers),
        ["ip0a5f0c09.example. 60 IN A 10.95.12.9"]
    );
    // BrokenParseIntTemplate
    let o = ask(
        "template ANY ANY . {\n match \"[.]example[.]$\"\n answer \"{{ .Name }} 60 IN TXT \\\"{{ parseInt \\\"gg\\\" 16 8 }}\\\"\"\n fallthrough\n}",
        "test.example.",
        IN,
        T::ANY,
    )
    .await;
    assert!(
        matches!(&o, Out::ServFail(e) if e.contains("strconv.ParseUint: parsing \"gg\": invalid syntax")),
        "{o:?}"
    );
    // ExampleDomainMXMatch (the MX record has no class: IN, as miekg/dns's NewRR)
    let m = answer(
        ask(
            "template ANY ANY . {\n match \"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\"\n answer \"{{ .Name }} 60 MX 10 {{ .Name }}\"\n additional \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n fallthrough\n}",
            "ip-10-95-12-8.example.",
            IN,
            T::MX,
        )
        .await,
    );
    assert_eq!(
        texts(&m.answers),
        ["ip-10-95-12-8.example. 60 IN MX 10 ip-10-95-12-8.example."]
    );
    assert_eq!(
        texts(&m.additionals),
        ["ip-10-95-12-8.example. 60 IN A 10.95.12.8"]
    );
    // ExampleDomainANSMatch (records without TTL: miekg/dns's default 3600)
    let m = answer(
        ask(
            "template ANY ANY . {\n match \"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\"\n answer \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n additional \"ns0.example. IN A 203.0.113.8\"\n authority \"example. IN NS ns0.example.com.\"\n fallthrough\n}",
            "ip-10-95-12-8.example.",
            IN,
            T::A,
        )
        .await,
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(
        texts(&m.additionals),
        ["ns0.example. 3600 IN A 203.0.113.8"]
    );
    assert_eq!(
        texts(&m.authorities),
        ["example. 3600 IN NS ns0.example.com."]
    );
    // ExampleInvalidNXDOMAIN
    let m = answer(
        ask(
            "template ANY ANY . {\n match \"[.]invalid[.]$\"\n rcode NXDOMAIN\n answer \"invalid. 60 {{ .Class }} SOA a.invalid. b.invalid. (1 60 60 60 60)\"\n fallthrough\n}",
            "test.invalid.",
            IN,
            T::MX,
        )
        .await,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), T::SOA);
    // CNAMEWithoutUpstream
    let m = answer(
        ask(
            "template ANY ANY . {\n match \"example[.]net[.]\"\n answer \"example.net 60 IN CNAME target.example.com\"\n fallthrough\n}",
            "example.net.",
            IN,
            T::A,
        )
        .await,
    );
    assert_eq!(
        texts(&m.answers),
        ["example.net. 60 IN CNAME target.example.com."]
    );
    // mdMatch and mdMissing
    let md = r#"template ANY ANY . {
    match "(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$"
    answer "{{ .Meta \"foo\" }}-{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    additional "{{ .Meta \"bar\" }}.example. IN A 203.0.113.8"
    authority "example. IN NS {{ .Meta \"bar\" }}.example.com."
    fallthrough
}"#;
    let mut r = req("ip-10-95-12-8.example.", IN, T::A);
    let mut meta = crate::plugins::metadata::Meta::default();
    meta.set("foo", "myfoo");
    meta.set("bar", "mybar");
    meta.set("foobar", "myfoobar");
    r.meta = Some(Arc::new(meta));
    let m = answer(serve(run(md).unwrap(), &r).await);
    assert_eq!(
        m.answers[0].name.to_string(),
        "myfoo-ip-10-95-12-8.example."
    );
    assert_eq!(m.additionals[0].name.to_string(), "mybar.example.");
    assert_eq!(
        texts(&m.authorities),
        ["example. 3600 IN NS mybar.example.com."]
    );
    let mut r = req("ip-10-95-12-8.example.", IN, T::A);
    let mut meta = crate::plugins::metadata::Meta::default();
    meta.set("foo", "myfoo");
    r.meta = Some(Arc::new(meta));
    let missing = "template ANY ANY . {\n match \"(^|[.])ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\"\n answer \"{{ .Meta \\\"foofoo\\\" }}{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n fallthrough\n}";
    let m = answer(serve(run(missing).unwrap(), &r).await);
    assert_eq!(m.answers[0].name.to_string(), "ip-10-95-12-8.example.");
    // EDNS error
    let m = answer(
        ask(
            "template ANY ANY . {\n rcode NXDOMAIN\n authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n ederror 21 \"Blocked due to RFC2606\"\n fallthrough\n}",
            "test.invalid.",
            IN,
            T::A,
        )
        .await,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let opt = m.edns.expect("EDNS");
    let (_, ede) = &opt.options().as_ref()[0];
    let mut want = vec![0, 21];
    want.extend_from_slice(b"Blocked due to RFC2606");
    assert_eq!(*ede, EdnsOption::Unknown(15, want));
}

// plugin/template/template_test.go: TestMultiSection (7 queries; block `test.:8053`).
#[tokio::test]
async fn test_multi_section() {
    let cfg = parse_in(
        r#"template IN A {
    rcode REFUSED
}
template IN TXT {
    match "$^"
    rcode SERVFAIL
    fallthrough
}
template CH TXT coredns.invalid {
    answer "{{ .Name }} 60 CH TXT \"test\""
}
template IN A example {
    match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
    answer "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
    fallthrough
}
template IN MX example {
    match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$
    answer "{{ .Name }} 60 IN MX 10 {{ .Name }}"
    additional "{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}"
}"#,
        &["test."],
    )
    .unwrap();
    use DNSClass::{CH, IN};
    use RecordType as T;
    let m = answer(serve(cfg.clone(), &req("some.test.", IN, T::A)).await);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(matches!(
        serve(cfg.clone(), &req("some.test.", IN, T::TXT)).await,
        Out::Fallthrough
    ));
    let m = answer(serve(cfg.clone(), &req("coredns.invalid.", CH, T::TXT)).await);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(texts(&m.answers), ["coredns.invalid. 60 CH TXT test"]);
    let m = answer(serve(cfg.clone(), &req("ip-10-11-12-13.example.", IN, T::A)).await);
    assert_eq!(m.answers[0].record_type(), T::A);
    let m = answer(serve(cfg.clone(), &req("ip-10-11-12-13.example.", IN, T::MX)).await);
    assert_eq!(m.answers[0].record_type(), T::MX);
    assert!(matches!(
        serve(cfg.clone(), &req("something.example.", IN, T::A)).await,
        Out::Fallthrough
    ));
    assert!(matches!(
        serve(cfg, &req("something.example.", IN, T::MX)).await,
        Out::ServFail(_)
    ));
}

// plugin/template/setup_test.go: TestSetup (2), TestSetupParse (29, server block keys
// domain.com.:8053 and dynamic.domain.com.:8053), TestSetupParseLargeRegex (1).
#[test]
fn test_setup_parse() {
    assert!(run("template ANY ANY {\n rcode\n}").is_err());
    assert!(run("template ANY ANY {\n rcode NXDOMAIN\n}").is_ok());
    let keys = ["domain.com.", "dynamic.domain.com."];
    for (input, bad) in [
        ("template", true),
        ("template X", true),
        ("template ANY", true),
        ("template ANY X", true),
        ("template ANY ANY .* {\n notavailable\n}", true),
        ("template ANY ANY {\n answer\n}", true),
        ("template ANY ANY {\n additional\n}", true),
        ("template ANY ANY {\n rcode\n}", true),
        ("template ANY ANY {\n rcode UNDEFINED\n}", true),
        ("template ANY ANY {\n answer \"{{\"\n}", true),
        ("template ANY ANY {\n additional \"{{\"\n}", true),
        ("template ANY ANY {\n authority \"{{\"\n}", true),
        (
            "template ANY ANY {\n answer \"{{ notAFunction }}\"\n}",
            true,
        ),
        (
            "template ANY ANY {\n answer \"{{ parseInt }}\"\n additional \"{{ parseInt }}\"\n authority \"{{ parseInt }}\"\n}",
            false,
        ),
        ("template ANY ANY (?P<x>", false),
        ("template ANY ANY {\n\n}", false),
        (
            "template ANY A example.com {\n match ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]com\n answer \"{{ .Name }} A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Grup.d }}.\"\n fallthrough\n}",
            false,
        ),
        (
            "template ANY AAAA example.com {\n match ip-(?P<a>[0-9]*)-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]com\n authority \"example.com 60 IN SOA ns.example.com hostmaster.example.com (1 60 60 60 60)\"\n fallthrough\n}",
            false,
        ),
        (
            "template IN ANY example.com {\n match \"[.](example[.]com[.]dc1[.]example[.]com[.])$\"\n rcode NXDOMAIN\n authority \"{{ index .Match 1 }} 60 IN SOA ns.{{ index .Match 1 }} hostmaster.example.com (1 60 60 60 60)\"\n fallthrough example.com\n}",
            false,
        ),
        (
            "template IN A example {\n match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\n answer \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n}\ntemplate IN MX example. {\n match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\n answer \"{{ .Name }} 60 IN MX 10 {{ .Name }}\"\n additional \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n}",
            false,
        ),
        (
            "template IN A example {\n match ^ip0a(?P<b>[a-f0-9]{2})(?P<c>[a-f0-9]{2})(?P<d>[a-f0-9]{2})[.]example[.]$\n answer \"{{ .Name }} 3600 IN A 10.{{ parseInt .Group.b 16 8 }}.{{ parseInt .Group.c 16 8 }}.{{ parseInt .Group.d 16 8 }}\"\n}",
            false,
        ),
        (
            "template IN MX example {\n match ^ip-10-(?P<b>[0-9]*)-(?P<c>[0-9]*)-(?P<d>[0-9]*)[.]example[.]$\n answer \"{{ .Name }} 60 IN MX 10 {{ .Name }}\"\n additional \"{{ .Name }} 60 IN A 10.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}\"\n authority  \"example. 60 IN NS ns0.example.\"\n authority  \"example. 60 IN NS ns1.example.\"\n additional \"ns0.example. 60 IN A 203.0.113.8\"\n additional \"ns1.example. 60 IN A 198.51.100.8\"\n}",
            false,
        ),
        (
            "template ANY ANY invalid {\n rcode NXDOMAIN\n authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n ederror 21 \"Blocked according to RFC2606\"\n}",
            false,
        ),
        (
            "template ANY ANY invalid {\n rcode NXDOMAIN\n authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n ederror invalid \"Blocked according to RFC2606\"\n}",
            true,
        ),
        (
            "template ANY ANY invalid {\n rcode NXDOMAIN\n authority \"invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)\"\n ederror too many arguments\n}",
            true,
        ),
    ] {
        let r = parse_in(input, &keys);
        assert_eq!(r.is_err(), bad, "{input}: {r:?}");
    }
    let large = format!(
        "template ANY A example.com {{\n match {}\n}}",
        "a".repeat(MAX_REGEX_LEN + 1)
    );
    let e = run(&large).unwrap_err().to_string();
    assert!(e.contains("too long"), "{e}");
}

// plugin/template/setup_test.go: TestSetupParseVar (18 cases).
#[test]
fn test_setup_parse_var() {
    for (input, vars) in [
        ("var a 1", Some(1)),
        ("var a 1\n var b a + 1\n var c 'x' + name()", Some(3)),
        (
            "match ^(?P<a>[a-z]+)[.]example[.]$\n var a group(\"a\") + group(1) + group(0)",
            Some(1),
        ),
        ("var", None),
        ("var a", None),
        ("var 1a 1", None),
        ("var a-b 1", None),
        ("var name 1", None),
        ("var group 1", None),
        ("var len 1", None),
        ("var true 1", None),
        ("var let 1", None),
        ("var a 1 +", None),
        ("var a invalid expression", None),
        ("var a b + 1\n var b 1", None),
        ("var a undefined", None),
        ("var a 1\n var a 2", None),
        ("var a 1\n var b a + 1\n var c 'x' + b", None),
    ] {
        let cfg = format!("template ANY ANY example. {{\n {input}\n}}");
        match (run(&cfg), vars) {
            (Ok(t), Some(n)) => assert_eq!(t[0].vars.len(), n, "{input}"),
            (Err(_), None) => {}
            (r, _) => panic!("{input}: {r:?}"),
        }
    }
}

// plugin/template/setup_test.go: TestSetupParseExpr (10 cases).
#[test]
fn test_setup_parse_expr() {
    for (input, exprs) in [
        ("expr name() == 'a.example.'", Some(1)),
        (
            "expr name() == 'a.example.'\n expr incidr(client_ip(), '10.0.0.0/8')",
            Some(2),
        ),
        ("var a 1\n expr a == 1", Some(1)),
        (
            "match ^(?P<a>[a-z]+)[.]example[.]$\n expr group('a') != ''",
            Some(1),
        ),
        ("expr 1", Some(1)),
        ("expr", None),
        ("expr name() ==", None),
        ("expr invalid expression", None),
        ("expr undefined == 1", None),
        ("var a 1\n expr a + 'x'", None),
    ] {
        let cfg = format!("template ANY ANY example. {{\n {input}\n}}");
        match (run(&cfg), exprs) {
            (Ok(t), Some(n)) => assert_eq!(t[0].exprs.len(), n, "{input}"),
            (Err(_), None) => {}
            (r, _) => panic!("{input}: {r:?}"),
        }
    }
}

/// Expected outcome of a TestExpr/TestVar case.
enum Want {
    Answer(&'static [&'static str]),
    Full(
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    ),
    ServFail,
    Fallthrough,
}

async fn check(name: &str, cfg: &str, qname: &str, t: RecordType, md: &[(&str, &str)], want: Want) {
    let mut r = req(qname, DNSClass::IN, t);
    if !md.is_empty() {
        let mut meta = crate::plugins::metadata::Meta::default();
        for (k, v) in md {
            meta.set(k.to_string(), v.to_string());
        }
        r.meta = Some(Arc::new(meta));
    }
    let cfg = run(cfg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = serve(cfg, &r).await;
    let norm = |v: &[&str]| -> Vec<String> {
        v.iter()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    match (want, got) {
        (Want::Answer(a), Out::Answer(m)) => assert_eq!(texts(&m.answers), norm(a), "{name}"),
        (Want::Full(a, x, n), Out::Answer(m)) => {
            assert_eq!(texts(&m.answers), norm(a), "{name}");
            assert_eq!(texts(&m.additionals), norm(x), "{name}");
            assert_eq!(texts(&m.authorities), norm(n), "{name}");
        }
        (Want::ServFail, Out::ServFail(_)) | (Want::Fallthrough, Out::Fallthrough) => {}
        (_, got) => panic!("{name}: {got:?}"),
    }
}

// plugin/template/expr_test.go: TestExpr (15 cases).
#[tokio::test]
async fn test_expr() {
    use RecordType::A;
    type Md = &'static [(&'static str, &'static str)];
    let cases: Vec<(&str, &str, &str, Md, Want)> = vec![
        (
            "True",
            "template IN A example. {\n expr name() == 'a.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n}",
            "a.example.",
            &[],
            Want::Answer(&["a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "FalseServfail",
            "template IN A example. {\n expr name() == 'b.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n}",
            "a.example.",
            &[],
            Want::ServFail,
        ),
        (
            "FalseFallthrough",
            "template IN A example. {\n expr name() == 'b.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            &[],
            Want::Fallthrough,
        ),
        (
            "FalseFallthroughZoneMismatch",
            "template IN A example. {\n expr name() == 'b.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough other.example.\n}",
            "a.example.",
            &[],
            Want::ServFail,
        ),
        (
            "FalseFallsToNextTemplate",
            "template IN A example. {\n expr name() == 'b.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}\ntemplate IN A example. {\n answer \"{{ .Name }} 60 IN A 10.0.0.2\"\n}",
            "a.example.",
            &[],
            Want::Answer(&["a.example. 60 IN A 10.0.0.2"]),
        ),
        (
            "AllTrue",
            "template IN A example. {\n expr name() == 'a.example.'\n expr type() == 'A'\n expr incidr(client_ip(), '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n}",
            "a.example.",
            &[],
            Want::Answer(&["a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "LastFalse",
            "template IN A example. {\n expr name() == 'a.example.'\n expr type() == 'A'\n expr incidr(client_ip(), '192.0.2.0/24')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            &[],
            Want::Fallthrough,
        ),
        (
            "UsesVars",
            "template IN A example. {\n match ^(?P<n>[0-9]+)[.]example[.]$\n var num int(group('n'))\n expr num > 1\n answer \"{{ .Name }} 60 IN A 10.0.0.{{ .Var.num }}\"\n fallthrough\n}",
            "2.example.",
            &[],
            Want::Answer(&["2.example. 60 IN A 10.0.0.2"]),
        ),
        (
            "UsesVarsFalse",
            "template IN A example. {\n match ^(?P<n>[0-9]+)[.]example[.]$\n var num int(group('n'))\n expr num > 1\n answer \"{{ .Name }} 60 IN A 10.0.0.{{ .Var.num }}\"\n fallthrough\n}",
            "1.example.",
            &[],
            Want::Fallthrough,
        ),
        (
            "UsesGroup",
            "template IN A example. {\n match ^(?P<n>[0-9]+)[.]example[.]$\n expr group('n') == '2' && group(0) == '2.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.{{ .Group.n }}\"\n fallthrough\n}",
            "2.example.",
            &[],
            Want::Answer(&["2.example. 60 IN A 10.0.0.2"]),
        ),
        (
            "Metadata",
            "template IN A example. {\n expr metadata('test/region') == 'eu'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            &[("test/region", "eu")],
            Want::Answer(&["a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "MetadataMismatch",
            "template IN A example. {\n expr metadata('test/region') == 'eu'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            &[("test/region", "us")],
            Want::Fallthrough,
        ),
        (
            "NonBool",
            "template IN A example. {\n expr 1\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            &[],
            Want::Fallthrough,
        ),
        (
            "RuntimeError",
            "template IN A example. {\n expr incidr('notanip', '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            &[],
            Want::ServFail,
        ),
        (
            "NoMatchNoEvaluation",
            "template IN A example. {\n match ^a[.]example[.]$\n expr incidr('notanip', '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "b.example.",
            &[],
            Want::Fallthrough,
        ),
    ];
    for (name, cfg, q, md, want) in cases {
        check(name, cfg, q, A, md, want).await;
    }
}

fn matched(cfg: &str, qname: &str) -> (bool, bool, Vec<(String, Value)>) {
    let t = run(cfg).unwrap();
    let r = req(qname, DNSClass::IN, RecordType::A);
    match t[0].matches(&r) {
        Matched::Yes(d) => (true, false, d.var.clone()),
        Matched::No(f) => (false, f, Vec::new()),
    }
}

// plugin/template/expr_test.go: TestExprMatch (4 cases); var_test.go: TestVarMatch,
// TestVarMatchError.
#[test]
fn test_expr_and_var_match() {
    for (cfg, m, f) in [
        (
            "template IN A example. {\n expr name() == 'a.example.'\n expr true\n fallthrough\n}",
            true,
            false,
        ),
        (
            "template IN A example. {\n expr false\n expr true\n fallthrough\n}",
            false,
            true,
        ),
        ("template IN A example. {\n expr false\n}", false, false),
        (
            "template IN A example. {\n expr incidr('notanip', '10.0.0.0/8')\n fallthrough\n}",
            false,
            false,
        ),
        (
            "template IN A example. {\n var bad incidr('notanip', '10.0.0.0/8')\n fallthrough\n}",
            false,
            false,
        ),
    ] {
        let (gm, gf, _) = matched(cfg, "a.example.");
        assert_eq!((gm, gf), (m, f), "{cfg}");
    }
    let (m, _, vars) = matched(
        "template IN A example. {\n match ^(?P<n>[0-9]+)[.]example[.]$\n var num int(group('n'))\n var double num * 2\n var label 'x' + group('n')\n var flag num > 1\n}",
        "2.example.",
    );
    assert!(m);
    assert_eq!(
        vars,
        [
            ("num".to_string(), Value::Int(2)),
            ("double".to_string(), Value::Int(4)),
            ("label".to_string(), Value::Str("x2".into())),
            ("flag".to_string(), Value::Bool(true)),
        ]
    );
}

// plugin/template/var_test.go: TestVar (13 cases).
#[tokio::test]
async fn test_var() {
    use RecordType::{A, TXT};
    type Md = &'static [(&'static str, &'static str)];
    let cases: Vec<(&str, &str, &str, RecordType, Md, Want)> = vec![
        (
            "Constant",
            "template IN A example. {\n var ttl 60\n answer \"{{ .Name }} {{ .Var.ttl }} IN A 10.0.0.1\"\n}",
            "a.example.",
            A,
            &[],
            Want::Answer(&["a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "Chained",
            "template IN A example. {\n var a 1\n var b a + 1\n var c b * 10\n answer \"{{ .Name }} 60 IN A 10.{{ .Var.a }}.{{ .Var.b }}.{{ .Var.c }}\"\n}",
            "a.example.",
            A,
            &[],
            Want::Answer(&["a.example. 60 IN A 10.1.2.20"]),
        ),
        (
            "GroupByNameAndIndex",
            "template IN A example. {\n match ^(?P<a>[0-9]+)-(?P<b>[0-9]+)[.]example[.]$\n var a group('a')\n var b group(2)\n var whole group(0)\n answer \"{{ .Var.whole }} 60 IN A 10.0.{{ .Var.a }}.{{ .Var.b }}\"\n}",
            "12-34.example.",
            A,
            &[],
            Want::Answer(&["12-34.example. 60 IN A 10.0.12.34"]),
        ),
        (
            "GroupMissing",
            "template IN TXT example. {\n match ^(?P<a>[a-z]+)[.]example[.]$\n var missing group('nosuchgroup') + group(9)\n answer \"{{ .Name }} 60 IN TXT \\\"empty={{ eq .Var.missing \\\"\\\" }}\\\"\"\n}",
            "a.example.",
            TXT,
            &[],
            Want::Answer(&["a.example. 60 IN TXT empty=true"]),
        ),
        (
            "QueryFunctions",
            "template IN A example. {\n var n name()\n var t type()\n var ip client_ip()\n answer \"{{ .Var.n }} 60 IN A {{ .Var.ip }}\"\n additional \"{{ .Var.n }} 60 IN TXT \\\"{{ .Var.t }}\\\"\"\n}",
            "a.example.",
            A,
            &[],
            Want::Full(
                &["a.example. 60 IN A 10.240.0.1"],
                &["a.example. 60 IN TXT A"],
                &[],
            ),
        ),
        (
            "Metadata",
            "template IN A example. {\n var region metadata('test/region')\n answer \"{{ .Var.region }}.{{ .Name }} 60 IN A 10.0.0.1\"\n}",
            "a.example.",
            A,
            &[("test/region", "eu")],
            Want::Answer(&["eu.a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "BoolInTemplateCondition",
            "template IN A example. {\n var local incidr(client_ip(), '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A {{ if .Var.local }}10.0.0.1{{ else }}192.0.2.1{{ end }}\"\n}",
            "a.example.",
            A,
            &[],
            Want::Answer(&["a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "UsedInAllSections",
            "template IN A example. {\n var target 'ns0.example.'\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n additional \"{{ .Var.target }} 60 IN A 10.0.0.2\"\n authority \"example. 60 IN NS {{ .Var.target }}\"\n}",
            "a.example.",
            A,
            &[],
            Want::Full(
                &["a.example. 60 IN A 10.0.0.1"],
                &["ns0.example. 60 IN A 10.0.0.2"],
                &["example. 60 IN NS ns0.example."],
            ),
        ),
        (
            "NoVars",
            "template IN TXT example. {\n answer \"{{ .Name }} 60 IN TXT \\\"{{ len .Var }}\\\"\"\n}",
            "a.example.",
            TXT,
            &[],
            Want::Answer(&["a.example. 60 IN TXT 0"]),
        ),
        (
            "PerTemplateScope",
            "template IN A example. {\n match ^a[.]example[.]$\n var v '1'\n answer \"{{ .Name }} 60 IN A 10.0.0.{{ .Var.v }}\"\n}\ntemplate IN A example. {\n match ^b[.]example[.]$\n answer \"{{ .Name }} 60 IN TXT \\\"{{ len .Var }}\\\"\"\n}",
            "a.example.",
            A,
            &[],
            Want::Answer(&["a.example. 60 IN A 10.0.0.1"]),
        ),
        (
            "RuntimeError",
            "template IN A example. {\n var bad incidr('notanip', '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n}",
            "a.example.",
            A,
            &[],
            Want::ServFail,
        ),
        (
            "RuntimeErrorWithFallthrough",
            "template IN A example. {\n var bad incidr('notanip', '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "a.example.",
            A,
            &[],
            Want::ServFail,
        ),
        (
            "NoMatchNoEvaluation",
            "template IN A example. {\n match ^a[.]example[.]$\n var bad incidr('notanip', '10.0.0.0/8')\n answer \"{{ .Name }} 60 IN A 10.0.0.1\"\n fallthrough\n}",
            "b.example.",
            A,
            &[],
            Want::Fallthrough,
        ),
    ];
    for (name, cfg, q, t, md, want) in cases {
        check(name, cfg, q, t, md, want).await;
    }
}

/// An upstream that answers as CoreDNS's cname_test.go `Upstub`: the case's answer without the
/// CNAME at the query name, TC set.
struct Upstub;

#[async_trait::async_trait]
impl crate::plugins::request::Resolve for Upstub {
    async fn resolve(&self, _req: &Request) -> Result<Message, HandlerError> {
        let mut m = Message::new(
            1,
            hickory_proto::op::MessageType::Response,
            hickory_proto::op::OpCode::Query,
        );
        m.metadata.truncation = true;
        m.add_answer(Record::from_rdata(
            Name::from_ascii("test.up.").unwrap(),
            600,
            RData::A("1.2.3.4".parse().unwrap()),
        ));
        Ok(m)
    }
}

// plugin/template/cname_test.go: TestTruncatedCNAME.
#[tokio::test]
async fn test_truncated_cname() {
    let cfg = run("template IN A test. {\n match ^cname\\.test\\.$\n answer \"cname.test. 600 IN CNAME test.up\"\n}").unwrap();
    let mut r = req("cname.test.", DNSClass::IN, RecordType::A);
    r.resolver = Some(crate::plugins::request::Resolver(Arc::new(Upstub)));
    let m = answer(serve(cfg, &r).await);
    assert!(m.metadata.truncation, "reply marked truncated");
    let mut got = texts(&m.answers);
    got.sort();
    assert_eq!(
        got,
        [
            "cname.test. 600 IN CNAME test.up.",
            "test.up. 600 IN A 1.2.3.4"
        ]
    );
}

// Beyond the Go tables: a DNAME record is a record (miekg/dns parses it), and a control entry
// or two records in one template are not.
#[tokio::test]
async fn dname_and_non_records() {
    let m = answer(
        ask(
            "template IN ANY example. {\n answer \"example. 60 IN DNAME example.net.\"\n}",
            "x.example.",
            DNSClass::IN,
            RecordType::A,
        )
        .await,
    );
    assert_eq!(m.answers.len(), 1);
    assert_eq!(u16::from(m.answers[0].record_type()), 39);
    for bad in [
        "$INCLUDE /etc/passwd",
        "a. 60 IN A 192.0.2.1\nb. 60 IN A 192.0.2.2",
    ] {
        let cfg = vec![TemplateConfig {
            answer: vec![Rr {
                text: bad.into(),
                tmpl: Tmpl::parse("answer", bad).unwrap(),
            }],
            ..run("template IN A example.").unwrap().remove(0)
        }];
        let o = serve(cfg, &req("x.example.", DNSClass::IN, RecordType::A)).await;
        assert!(matches!(o, Out::ServFail(_)), "{bad}: {o:?}");
    }
}
