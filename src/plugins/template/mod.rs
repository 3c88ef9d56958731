//! `template`: answers from templates of resource records (plugin/template).
//!
//! The Go-template fields real Corefiles use are supported — `{{ .Name }}`, `{{ .Zone }}`,
//! `{{ .Class }}`, `{{ .Type }}`, `{{ .Remote }}`, `{{ index .Match N }}`,
//! `{{ .Group.NAME }}` and `{{ .Meta "LABEL" }}` — and any other `{{ … }}` is rejected when the
//! Corefile is loaded.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use regex::Regex;

use crate::corefile::{Dispenser, Error};
use crate::plugins::log::rcode_from_name;
use crate::plugins::{Fall, Handler, HandlerError, Next, Request, Response, is_subdomain, origins};

/// Directive name.
pub const NAME: &str = "template";

/// One piece of a rendered template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Name,
    Zone,
    Class,
    Type,
    Remote,
    Match(usize),
    Group(String),
    Meta(String),
}

/// A compiled `answer`/`additional`/`authority` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr(Vec<Part>);

impl Rr {
    fn compile(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("{{") {
            parts.push(Part::Text(rest[..i].to_string()));
            let end = rest[i..]
                .find("}}")
                .ok_or_else(|| format!("unterminated template action in \"{text}\""))?;
            let action = rest[i + 2..i + end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-')
                .trim();
            let words: Vec<&str> = action.split_whitespace().collect();
            parts.push(match words.as_slice() {
                [".Name"] => Part::Name,
                [".Zone"] => Part::Zone,
                [".Class"] => Part::Class,
                [".Type"] => Part::Type,
                [".Remote"] => Part::Remote,
                ["index", ".Match", n] => Part::Match(
                    n.parse().map_err(|_| format!("bad index in \"{{{{ {action} }}}}\""))?,
                ),
                [g] if g.starts_with(".Group.") => Part::Group(g[7..].to_string()),
                ["index", ".Group", g] => Part::Group(g.trim_matches('"').to_string()),
                [".Meta", label] if label.len() > 1 && label.starts_with('"') && label.ends_with('"') => {
                    Part::Meta(label[1..label.len() - 1].to_string())
                }
                _ => {
                    return Err(format!(
                        "template action \"{{{{ {action} }}}}\" is not supported by clusterdns (supported: .Name .Zone .Class .Type .Remote, index .Match N, .Group.NAME, .Meta \"LABEL\")"
                    ));
                }
            });
            rest = &rest[i + end + 2..];
        }
        parts.push(Part::Text(rest.to_string()));
        Ok(Self(parts))
    }

    fn render(&self, v: &Vars<'_>) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Name => out.push_str(v.name),
                Part::Zone => out.push_str(v.zone),
                Part::Class => out.push_str(&v.class.to_string()),
                Part::Type => out.push_str(&v.qtype.to_string()),
                Part::Remote => out.push_str(&v.remote),
                Part::Match(n) => out.push_str(v.caps.get(*n).map_or("", |m| m.as_str())),
                Part::Group(g) => out.push_str(v.caps.name(g).map_or("", |m| m.as_str())),
                Part::Meta(l) => out.push_str(v.req.meta(l).unwrap_or("")),
            }
        }
        out
    }
}

struct Vars<'a> {
    name: &'a str,
    zone: &'a str,
    class: DNSClass,
    qtype: RecordType,
    remote: String,
    caps: regex::Captures<'a>,
    req: &'a Request,
}

/// One `template` line.
#[derive(Debug, Clone)]
pub struct TemplateConfig {
    class: Option<DNSClass>,
    qtype: Option<RecordType>,
    zones: Vec<String>,
    regexes: Vec<Regex>,
    answer: Vec<Rr>,
    additional: Vec<Rr>,
    authority: Vec<Rr>,
    rcode: ResponseCode,
    /// `ederror CODE [REASON]`: an Extended DNS Error (RFC 8914) on the reply.
    ederror: Option<(u16, String)>,
    fall: Fall,
}

impl PartialEq for TemplateConfig {
    fn eq(&self, o: &Self) -> bool {
        let re = |v: &[Regex]| v.iter().map(|r| r.as_str().to_string()).collect::<Vec<_>>();
        self.class == o.class
            && self.qtype == o.qtype
            && self.zones == o.zones
            && re(&self.regexes) == re(&o.regexes)
            && self.answer == o.answer
            && self.additional == o.additional
            && self.authority == o.authority
            && self.rcode == o.rcode
            && self.ederror == o.ederror
            && self.fall == o.fall
    }
}

/// Parses every `template` line of a block, in order.
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<Vec<TemplateConfig>, Error> {
    let mut out = Vec::new();
    let any_name = Regex::new(".*").expect("literal regex");
    while d.next() {
        let args = d.remaining_args();
        let [class, qtype, zones @ ..] = args.as_slice() else {
            return Err(d.arg_err());
        };
        let class = match class.to_ascii_uppercase().as_str() {
            "ANY" => None,
            c => Some(
                c.parse::<DNSClass>()
                    .map_err(|_| d.err(format!("invalid query class {class}")))?,
            ),
        };
        let qtype = match qtype.to_ascii_uppercase().as_str() {
            "ANY" => None,
            t => Some(
                t.parse::<RecordType>()
                    .map_err(|_| d.err(format!("invalid RR type {qtype}")))?,
            ),
        };
        let mut t = TemplateConfig {
            class,
            qtype,
            zones: origins(zones, block_zones).map_err(|e| d.err(e))?,
            regexes: Vec::new(),
            answer: Vec::new(),
            additional: Vec::new(),
            authority: Vec::new(),
            rcode: ResponseCode::NoError,
            ederror: None,
            fall: Fall::none(),
        };
        while d.next_block() {
            let opt = d.val().to_string();
            let a = d.remaining_args();
            match opt.as_str() {
                "match" => {
                    if a.is_empty() {
                        return Err(d.arg_err());
                    }
                    for r in a {
                        t.regexes.push(
                            Regex::new(&r)
                                .map_err(|e| d.err(format!("could not parse regex: {r}, {e}")))?,
                        );
                    }
                }
                "answer" | "additional" | "authority" => {
                    if a.is_empty() {
                        return Err(d.arg_err());
                    }
                    for text in a {
                        let rr = Rr::compile(&text).map_err(|e| d.err(e))?;
                        match opt.as_str() {
                            "answer" => t.answer.push(rr),
                            "additional" => t.additional.push(rr),
                            _ => t.authority.push(rr),
                        }
                    }
                }
                "rcode" => {
                    let [c] = a.as_slice() else {
                        return Err(d.arg_err());
                    };
                    t.rcode =
                        rcode_from_name(c).ok_or_else(|| d.err(format!("unknown rcode {c}")))?;
                }
                "ederror" => {
                    let (code, reason) = match a.as_slice() {
                        [c] => (c, ""),
                        [c, r] => (c, r.as_str()),
                        _ => return Err(d.arg_err()),
                    };
                    let n = code.parse::<u16>().map_err(|e| {
                        d.err(format!("error parsing extended DNS error code {code}, {e}"))
                    })?;
                    t.ederror = Some((n, reason.to_string()));
                }
                "fallthrough" => t.fall = Fall::parse(&a),
                "upstream" => {
                    // Accepted; CNAME answers are not chased (see README).
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
        if t.regexes.is_empty() {
            t.regexes.push(any_name.clone());
        }
        out.push(t);
    }
    Ok(out)
}

/// The handler: templates tried in order.
pub struct Template {
    templates: Vec<TemplateConfig>,
}

impl Template {
    /// A handler for `templates`.
    pub fn new(templates: Vec<TemplateConfig>) -> Self {
        Self { templates }
    }
}

fn records(rrs: &[Rr], v: &Vars<'_>) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    for rr in rrs {
        let text = rr.render(v);
        let (_, sets) = Parser::new(text.as_str(), None, Some(Name::root()))
            .parse()
            .map_err(|e| format!("invalid RR \"{text}\": {e}"))?;
        for set in sets.into_values() {
            out.extend(set.records_without_rrsigs().cloned());
        }
    }
    Ok(out)
}

#[async_trait::async_trait]
impl Handler for Template {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        for t in &self.templates {
            let Some(zone) = t
                .zones
                .iter()
                .filter(|z| is_subdomain(z, name))
                .max_by_key(|z| z.len())
            else {
                continue;
            };
            if t.class.is_some_and(|c| c != req.qclass())
                || t.qtype.is_some_and(|q| q != req.qtype())
            {
                continue;
            }
            let Some(caps) = t.regexes.iter().find_map(|r| r.captures(name)) else {
                if t.fall.through(name) {
                    continue;
                }
                return Err(HandlerError::Internal(format!(
                    "plugin/template: no match for {name}"
                )));
            };
            if t.rcode == ResponseCode::ServFail {
                return Err(HandlerError::Internal(
                    "plugin/template: rcode SERVFAIL".into(),
                ));
            }
            let v = Vars {
                name,
                zone,
                class: req.qclass(),
                qtype: req.qtype(),
                remote: req.src.ip().to_string(),
                caps,
                req,
            };
            let mut msg = req.reply();
            msg.metadata.authoritative = true;
            msg.metadata.response_code = t.rcode;
            let err = |e: String| HandlerError::Internal(format!("plugin/template: {e}"));
            msg.add_answers(records(&t.answer, &v).map_err(err)?);
            msg.add_additionals(records(&t.additional, &v).map_err(err)?);
            msg.add_authorities(records(&t.authority, &v).map_err(err)?);
            if let Some((code, reason)) = &t.ederror {
                crate::plugins::response::set_option(
                    &mut msg,
                    crate::plugins::response::ede(*code, reason),
                );
            }
            return Ok(Response::new(msg, NAME));
        }
        next.run(req).await
    }
}

/// Builds the handler.
pub fn build(cfgs: &[TemplateConfig]) -> Arc<dyn Handler> {
    Arc::new(Template::new(cfgs.to_vec()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    fn run(s: &str) -> Result<Vec<TemplateConfig>, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks), &[".".to_string()])
    }

    async fn ask(chain: &Chain, name: &str, t: RecordType) -> Result<Response, HandlerError> {
        let req = Request::new(
            Name::from_ascii(name).unwrap(),
            t,
            "10.1.2.3:5353".parse().unwrap(),
            Proto::Udp,
        );
        chain.run(&req).await
    }

    #[tokio::test]
    async fn aks_nxdomain_templates() {
        // AKS's two templates, verbatim.
        let t = run(r#"template ANY ANY internal.cloudapp.net {
  match "^(?:[^.]+\.){4,}internal\.cloudapp\.net\.$"
  rcode NXDOMAIN
  fallthrough
}
template ANY ANY reddog.microsoft.com {
  rcode NXDOMAIN
}"#)
        .unwrap();
        let chain = Chain::new(vec![build(&t)]);
        let r = ask(
            &chain,
            "www.example.com.ns1.svc.internal.cloudapp.net.",
            RecordType::A,
        )
        .await
        .unwrap();
        assert_eq!(r.rcode(), ResponseCode::NXDomain);
        assert!(r.msg.metadata.authoritative);
        let r = ask(&chain, "x.reddog.microsoft.com.", RecordType::AAAA)
            .await
            .unwrap();
        assert_eq!(r.rcode(), ResponseCode::NXDomain);
        // Too few labels: falls through to the (missing) next plugin.
        assert!(
            ask(&chain, "vm1.internal.cloudapp.net.", RecordType::A)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn answers_with_fields_and_groups() {
        let t = run(r#"template IN A example.org {
  match "^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)\.example\.org\.$"
  answer "{{ .Name }} 60 IN A 10.0.{{ .Group.a }}.{{ index .Match 2 }}"
  additional "ns.{{ .Zone }} 60 IN A {{ .Remote }}"
}"#)
        .unwrap();
        let chain = Chain::new(vec![build(&t)]);
        let r = ask(&chain, "ip-7-9.example.org.", RecordType::A)
            .await
            .unwrap()
            .msg;
        assert_eq!(r.answers[0].data.to_string(), "10.0.7.9");
        assert_eq!(r.answers[0].ttl, 60);
        assert_eq!(r.additionals[0].name.to_string(), "ns.example.org.");
        assert_eq!(r.additionals[0].data.to_string(), "10.1.2.3");
        // Zone matches, regex does not, no fallthrough: SERVFAIL.
        assert!(matches!(
            ask(&chain, "other.example.org.", RecordType::A).await,
            Err(HandlerError::Internal(_))
        ));
        // Another type: not this template's.
        assert!(matches!(
            ask(&chain, "ip-7-9.example.org.", RecordType::MX).await,
            Err(HandlerError::NoNextPlugin(_))
        ));
    }

    #[tokio::test]
    async fn ederror_and_meta() {
        // CoreDNS's template_test.go ederror case: `.invalid` answered NXDOMAIN with an SOA and
        // Extended DNS Error 21 (Not Supported) with its reason.
        let t = run(r#"template ANY ANY invalid {
  rcode NXDOMAIN
  authority "invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
  ederror 21 "Blocked due to RFC2606"
}
template IN TXT meta.test {
  answer "{{ .Name }} 60 IN TXT \"{{ .Meta \"test/who\" }}\""
}"#)
        .unwrap();
        let chain = Chain::new(vec![build(&t)]);
        let r = ask(&chain, "test.invalid.", RecordType::A).await.unwrap();
        assert_eq!(r.rcode(), ResponseCode::NXDomain);
        assert_eq!(r.msg.authorities[0].record_type(), RecordType::SOA);
        let opt = r.msg.edns.unwrap();
        let (_, ede) = &opt.options().as_ref()[0];
        let mut want = vec![0, 21];
        want.extend_from_slice(b"Blocked due to RFC2606");
        assert_eq!(
            *ede,
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(15, want)
        );
        // `.Meta`: the metadata plugin's labels (empty without them).
        let mut req = Request::new(
            Name::from_ascii("x.meta.test.").unwrap(),
            RecordType::TXT,
            "10.1.2.3:5353".parse().unwrap(),
            Proto::Udp,
        );
        let mut meta = crate::plugins::metadata::Meta::default();
        meta.set("test/who", "ns1");
        req.meta = Some(std::sync::Arc::new(meta));
        let r = chain.run(&req).await.unwrap();
        assert_eq!(r.msg.answers[0].data.to_string(), "ns1");
        let r = ask(&chain, "x.meta.test.", RecordType::TXT).await.unwrap();
        assert_eq!(r.msg.answers[0].data.to_string(), "");
    }

    #[test]
    fn setup_errors() {
        for (bad, want) in [
            ("template IN", "Wrong argument count"),
            ("template IN BOGUS", "invalid RR type BOGUS"),
            ("template IN A {\n match (\n}", "could not parse regex"),
            ("template IN A {\n rcode MAYBE\n}", "unknown rcode MAYBE"),
            (
                "template IN A {\n answer \"{{ .Message.Id }} A 1.2.3.4\"\n}",
                "is not supported by clusterdns",
            ),
            ("template IN A {\n bogus\n}", "unknown property 'bogus'"),
            ("template IN A {\n ederror\n}", "Wrong argument count"),
            (
                "template IN A {\n ederror 21 a b\n}",
                "Wrong argument count",
            ),
            (
                "template IN A {\n ederror blocked\n}",
                "error parsing extended DNS error code blocked",
            ),
            (
                "template IN A {\n ederror 70000\n}",
                "error parsing extended DNS error code 70000",
            ),
        ] {
            let e = run(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
