//! `template`: answers from templates of resource records (plugin/template).
//!
//! Records are Go templates (the `text/template` subset in [`gotmpl`]) over CoreDNS's data
//! (`.Name`, `.Zone`, `.Class`, `.Type`, `.Remote`, `.Match`, `.Group`, `.Var`, `.Question`,
//! `.Message`, `.Meta "LABEL"`); `var` and `expr` options are expr-lang expressions
//! ([`crate::plugins::expression`]). Matching, fallthrough and errors follow CoreDNS's
//! template.go: a template whose zone, class and type fit and one of whose regexes matches
//! answers; a variable or condition that fails to evaluate, a template that fails to execute or
//! renders something that is not a record is SERVFAIL.

mod gotmpl;

use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use prometheus::{IntCounterVec, Opts, Registry};
use regex::Regex;

use self::gotmpl::{TV, Template as Tmpl};
use crate::corefile::{Dispenser, Error};
use crate::plugins::expression::{Env, Expr, Scope, Value};
use crate::plugins::log::rcode_from_name;
use crate::plugins::{Fall, Handler, HandlerError, Next, Request, Response, is_subdomain, origins};

/// Directive name.
pub const NAME: &str = "template";

/// A regex may be at most this long (CoreDNS's maxRegexpLen).
const MAX_REGEX_LEN: usize = 10000;

/// A compiled `answer`/`additional`/`authority` template.
#[derive(Debug, Clone)]
pub struct Rr {
    text: String,
    tmpl: Tmpl,
}

impl PartialEq for Rr {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
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
    /// `var NAME EXPRESSION`, in order.
    vars: Vec<(String, Expr)>,
    /// `expr EXPRESSION`: all must be true.
    exprs: Vec<Expr>,
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
            && self.vars == o.vars
            && self.exprs == o.exprs
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
            vars: Vec::new(),
            exprs: Vec::new(),
        };
        let mut scope = Scope::new(true);
        while d.next_block() {
            let opt = d.val().to_string();
            let a = d.remaining_args();
            match opt.as_str() {
                "match" => {
                    if a.is_empty() {
                        return Err(d.arg_err());
                    }
                    for r in a {
                        if r.len() > MAX_REGEX_LEN {
                            return Err(d.err(format!(
                                "regex pattern too long: {} > {MAX_REGEX_LEN}",
                                r.len()
                            )));
                        }
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
                        let tmpl = Tmpl::parse(&opt, &text).map_err(|e| {
                            d.err(format!("could not compile template: {opt}, {e}"))
                        })?;
                        let rr = Rr { text, tmpl };
                        match opt.as_str() {
                            "answer" => t.answer.push(rr),
                            "additional" => t.additional.push(rr),
                            _ => t.authority.push(rr),
                        }
                    }
                }
                "var" => {
                    let [name, expr @ ..] = a.as_slice() else {
                        return Err(d.arg_err());
                    };
                    if expr.is_empty() {
                        return Err(d.arg_err());
                    }
                    let e = Expr::parse(&expr.join(" "), &scope)
                        .map_err(|e| d.err(format!("could not compile expression: {name}, {e}")))?;
                    scope.declare(name, &e).map_err(|e| d.err(e))?;
                    t.vars.push((name.clone(), e));
                }
                "expr" => {
                    if a.is_empty() {
                        return Err(d.arg_err());
                    }
                    let e = Expr::parse(&a.join(" "), &scope)
                        .map_err(|e| d.err(format!("could not compile expression: {e}")))?;
                    t.exprs.push(e);
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
                    // Accepted and ignored, as CoreDNS: CNAME targets are always looked up.
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

/// What a matching template's records are rendered from (CoreDNS's templateData).
struct Data<'a> {
    zone: &'a str,
    name: &'a str,
    regex: &'a str,
    matches: Vec<String>,
    /// Every group by index ("0", "1", …) and the named ones by name.
    group: Vec<(String, String)>,
    class: String,
    qtype: String,
    remote: String,
    var: Vec<(String, Value)>,
    req: &'a Request,
}

impl Data<'_> {
    /// The labels every `coredns_template_*` series starts with: server, zone, view, class,
    /// type.
    fn metric_labels(&self) -> [&str; 5] {
        let req = self.req;
        [
            &req.server,
            self.zone,
            req.view.as_deref().unwrap_or(""),
            &self.class,
            &self.qtype,
        ]
    }
}

fn tv(v: &Value) -> TV {
    match v {
        Value::Int(n) => TV::Int(*n),
        Value::Str(s) => TV::Str(s.clone()),
        Value::Bool(b) => TV::Bool(*b),
        Value::List(l) => TV::List(l.iter().map(tv).collect()),
        Value::Nil => TV::Nil,
    }
}

impl gotmpl::Data for Data<'_> {
    fn field(&self, name: &str) -> Option<TV> {
        let s = |v: &str| TV::Str(v.to_string());
        let req = self.req;
        let question = || {
            TV::Struct(
                "dns.Question",
                vec![
                    ("Name", s(req.qname_sent())),
                    ("Qtype", TV::Int(i64::from(u16::from(req.qtype())))),
                    ("Qclass", TV::Int(i64::from(u16::from(req.qclass())))),
                ],
            )
        };
        Some(match name {
            "Zone" => s(self.zone),
            "Name" => s(self.name),
            "Regex" => s(self.regex),
            "Class" => s(&self.class),
            "Type" => s(&self.qtype),
            "Remote" => s(&self.remote),
            "Match" => TV::List(self.matches.iter().map(|m| s(m)).collect()),
            "Group" => TV::Map(
                self.group.iter().map(|(k, v)| (k.clone(), s(v))).collect(),
                Box::new(TV::Str(String::new())),
            ),
            "Var" => TV::Map(
                self.var.iter().map(|(k, v)| (k.clone(), tv(v))).collect(),
                Box::new(TV::Nil),
            ),
            "Question" => question(),
            "Message" => TV::Struct(
                "*dns.Msg",
                vec![
                    ("Id", TV::Int(i64::from(req.id))),
                    ("Opcode", TV::Int(i64::from(u8::from(req.op_code)))),
                    ("RecursionDesired", TV::Bool(req.recursion_desired)),
                    ("CheckingDisabled", TV::Bool(req.checking_disabled)),
                    ("AuthenticatedData", TV::Bool(req.authentic_data)),
                    ("Question", TV::List(vec![question()])),
                ],
            ),
            _ => return None,
        })
    }

    fn meta(&self, label: &str) -> String {
        self.req.meta(label).unwrap_or("").to_string()
    }
}

/// The outcome of matching one template (CoreDNS's `match`: data, matched, fallthrough).
enum Matched<'a> {
    Yes(Box<Data<'a>>),
    /// Not this template's; `true`: try the next one, `false`: SERVFAIL.
    No(bool),
}

impl TemplateConfig {
    fn matches<'a>(&'a self, req: &'a Request) -> Matched<'a> {
        let name = req.qname_lower();
        let Some(zone) = self
            .zones
            .iter()
            .filter(|z| is_subdomain(z, name))
            .max_by_key(|z| z.len())
        else {
            return Matched::No(true);
        };
        let (qc, qt) = (req.qclass(), req.qtype());
        if self.class.is_some_and(|c| qc != DNSClass::ANY && qc != c)
            || self.qtype.is_some_and(|t| qt != RecordType::ANY && qt != t)
        {
            return Matched::No(true);
        }
        for re in &self.regexes {
            let Some(caps) = re.captures(name) else {
                continue;
            };
            let text = |i: usize| caps.get(i).map_or("", |m| m.as_str());
            let matches: Vec<String> = (0..caps.len()).map(|i| text(i).to_string()).collect();
            let mut group: Vec<(String, String)> = matches
                .iter()
                .enumerate()
                .map(|(i, m)| (i.to_string(), m.clone()))
                .collect();
            for (i, n) in re.capture_names().enumerate() {
                if let Some(n) = n {
                    group.push((n.to_string(), text(i).to_string()));
                }
            }
            let class = match (qc, self.class) {
                (DNSClass::ANY, Some(c)) => c.to_string(),
                (DNSClass::ANY, None) => "ANY".to_string(),
                (c, _) => c.to_string(),
            };
            let qtype = match (qt, self.qtype) {
                (RecordType::ANY, Some(t)) => t.to_string(),
                (RecordType::ANY, None) => "ANY".to_string(),
                (t, _) => t.to_string(),
            };
            let mut var = Vec::new();
            if !self.vars.is_empty() || !self.exprs.is_empty() {
                let refs: Vec<&str> = matches.iter().map(String::as_str).collect();
                let named: Vec<(&str, &str)> = re
                    .capture_names()
                    .enumerate()
                    .filter_map(|(i, n)| Some((n?, text(i))))
                    .collect();
                let mut values = Vec::new();
                for (n, e) in &self.vars {
                    let env = Env {
                        req,
                        vars: &values,
                        groups: &refs,
                        named: &named,
                    };
                    match e.eval(&env) {
                        Ok(v) => {
                            values.push(v.clone());
                            var.push((n.clone(), v));
                        }
                        Err(_) => return Matched::No(false),
                    }
                }
                for e in &self.exprs {
                    let env = Env {
                        req,
                        vars: &values,
                        groups: &refs,
                        named: &named,
                    };
                    match e.eval(&env) {
                        Ok(Value::Bool(true)) => {}
                        Ok(_) => return Matched::No(self.fall.through(name)),
                        Err(_) => return Matched::No(false),
                    }
                }
            }
            return Matched::Yes(Box::new(Data {
                zone,
                name,
                regex: re.as_str(),
                matches,
                group,
                class,
                qtype,
                remote: req.src.ip().to_string(),
                var,
                req,
            }));
        }
        Matched::No(self.fall.through(name))
    }
}

/// The handler: templates tried in order.
pub struct Template {
    templates: Vec<TemplateConfig>,
    metrics: Arc<TemplateMetrics>,
}

impl Template {
    /// A handler for `templates`, counting in `metrics`.
    pub fn new(templates: Vec<TemplateConfig>, metrics: Arc<TemplateMetrics>) -> Self {
        Self { templates, metrics }
    }
}

/// `template`'s metrics, as CoreDNS's plugin/template/metrics.go names and labels them.
pub struct TemplateMetrics {
    /// `coredns_template_matches_total{server,zone,view,class,type}`
    matches: IntCounterVec,
    /// `coredns_template_template_failures_total{server,zone,view,class,type,section,template}`
    template_failures: IntCounterVec,
    /// `coredns_template_rr_failures_total{server,zone,view,class,type,section,template}`
    rr_failures: IntCounterVec,
}

impl TemplateMetrics {
    /// Creates and registers the metrics.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            r.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let failure = [
            "server", "zone", "view", "class", "type", "section", "template",
        ];
        Ok(Self {
            matches: counter(
                "coredns_template_matches_total",
                "Counter of template regex matches.",
                &failure[..5],
            )?,
            template_failures: counter(
                "coredns_template_template_failures_total",
                "Counter of go template failures.",
                &failure,
            )?,
            rr_failures: counter(
                "coredns_template_rr_failures_total",
                "Counter of mis-templated RRs.",
                &failure,
            )?,
        })
    }
}

/// Renders `rr` into one record, as miekg/dns's `NewRR`: relative names are below the root, a
/// record without TTL gets 3600 and without class IN. A template that fails to execute counts
/// in `template_failures`, one that renders no single record in `rr_failures` (labelled with
/// the template's text).
fn record(
    rr: &Rr,
    section: &str,
    data: &Data<'_>,
    metrics: &TemplateMetrics,
) -> Result<Record, String> {
    let count = |c: &IntCounterVec| {
        let [server, zone, view, class, qtype] = data.metric_labels();
        c.with_label_values(&[server, zone, view, class, qtype, section, &rr.text])
            .inc();
    };
    let text = rr
        .tmpl
        .execute(data)
        .inspect_err(|_| count(&metrics.template_failures))?;
    record_of(&text, section).inspect_err(|_| count(&metrics.rr_failures))
}

/// [`record`]'s parsing of the rendered `text`.
fn record_of(text: &str, section: &str) -> Result<Record, String> {
    if text.lines().any(|l| l.trim_start().starts_with('$')) {
        return Err(format!(
            "{section}: \"{text}\": a control entry is not a record"
        ));
    }
    let parse = |prefix: &str| {
        crate::zonefile::parse_str(
            &format!("$TTL 3600\n{prefix}{text}\n"),
            Path::new(section),
            &Name::root(),
        )
    };
    // The zone-file reader takes a missing class from the record before: a first record of
    // class IN gives miekg/dns's default.
    let (entries, skip) = match parse("") {
        Err(e) if e.msg.contains("missing last class") => (parse(". 0 IN TXT \"\"\n"), 1),
        other => (other, 0),
    };
    let mut entries = entries
        .map_err(|e| format!("{section}: \"{text}\": {}", e.msg))?
        .into_iter()
        .skip(skip);
    match (entries.next(), entries.next()) {
        (Some(e), None) => Ok(e.record),
        _ => Err(format!("{section}: \"{text}\" is not one record")),
    }
}

#[async_trait::async_trait]
impl Handler for Template {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        if !self
            .templates
            .iter()
            .any(|t| t.zones.iter().any(|z| is_subdomain(z, name)))
        {
            return next.run(req).await;
        }
        for t in &self.templates {
            let data = match t.matches(req) {
                Matched::Yes(d) => d,
                Matched::No(true) => continue,
                Matched::No(false) => {
                    return Err(HandlerError::Internal(format!(
                        "plugin/template: no match for {name}"
                    )));
                }
            };
            self.metrics
                .matches
                .with_label_values(&data.metric_labels())
                .inc();
            if t.rcode == ResponseCode::ServFail {
                return Err(HandlerError::Internal(
                    "plugin/template: rcode SERVFAIL".into(),
                ));
            }
            let err = |e: String| HandlerError::Internal(format!("plugin/template: {e}"));
            let mut msg = req.reply();
            msg.metadata.authoritative = true;
            msg.metadata.response_code = t.rcode;
            let qt = req.qtype();
            for rr in &t.answer {
                let r = record(rr, "answer", &data, &self.metrics).map_err(err)?;
                let target = match (&r.data, qt) {
                    (RData::CNAME(c), RecordType::A | RecordType::AAAA) => Some(c.0.clone()),
                    _ => None,
                };
                msg.add_answer(r);
                if let Some(target) = target {
                    if let Ok(up) = req.lookup(target, qt).await {
                        msg.metadata.truncation = up.metadata.truncation;
                        msg.add_answers(up.answers);
                    }
                }
            }
            for rr in &t.additional {
                msg.add_additional(record(rr, "additional", &data, &self.metrics).map_err(err)?);
            }
            for rr in &t.authority {
                msg.add_authority(record(rr, "authority", &data, &self.metrics).map_err(err)?);
            }
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
pub fn build(cfgs: &[TemplateConfig], ctx: &crate::plugins::BuildCtx<'_>) -> Arc<dyn Handler> {
    Arc::new(Template::new(cfgs.to_vec(), ctx.metrics.template.clone()))
}

#[cfg(test)]
mod tests;
