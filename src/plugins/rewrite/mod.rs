//! `rewrite`: rewrites queries (name, type, class, EDNS0 options) before the rest of the chain
//! and the answers on the way back (names, TTLs, CNAME targets, rcodes) (plugin/rewrite).

#[cfg(test)]
mod coredns_tests;
mod edns0;

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

pub use edns0::Edns0Rule;
use regex::Regex;

use crate::corefile::address::fqdn;
use crate::corefile::{Dispenser, Error};
use crate::plugins::request::lower_fqdn;
use crate::plugins::response::{code_of, set_option};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "rewrite";

/// How a name rule matches.
#[derive(Debug, Clone)]
pub enum NameMatch {
    /// The whole name.
    Exact(String),
    /// A leading part.
    Prefix(String),
    /// A trailing part.
    Suffix(String),
    /// Any part.
    Substring(String),
    /// A regular expression; `{N}` in the replacement is group N.
    Regex(Regex),
}

/// How a response rule changes a name (CoreDNS's `stringRewriter`s).
#[derive(Debug, Clone)]
pub enum StrRw {
    /// `answer name|value REGEX TO`: a matching name becomes TO, `{N}` being group N.
    Regex(Regex, String),
    /// `answer auto` of exact, prefix, substring and regex rules: the rewritten question name
    /// (and names under it) back to the asked one.
    Remap(String, String),
    /// `answer auto` of suffix rules: the new suffix back to the old one.
    Suffix(String, String),
}

impl StrRw {
    /// The new name, when the rewriter changes `src`.
    fn rewrite(&self, src: &str) -> Option<String> {
        let out = match self {
            Self::Regex(re, to) => expand_groups(re, src, to)?,
            Self::Remap(orig, to) => {
                if src == orig {
                    to.clone()
                } else {
                    let i = src.len().checked_sub(orig.len()).filter(|i| *i > 0)?;
                    if src.as_bytes()[i - 1] != b'.' || &src[i..] != orig {
                        return None;
                    }
                    format!("{}{to}", &src[..i])
                }
            }
            Self::Suffix(suffix, to) => format!("{}{to}", src.strip_suffix(suffix.as_str())?),
        };
        (out != src).then_some(out)
    }
}

/// What a matched rule does to each record of the reply.
#[derive(Debug, Clone)]
pub enum RespRule {
    /// Rewrites the owner name.
    Name(StrRw),
    /// Rewrites the name in the data (CNAME, DNAME, NS, PTR, SRV, MX, NAPTR replacement, SOA
    /// MNAME).
    Value(StrRw),
    /// Clamps the TTL.
    Ttl(u32, u32),
}

/// CoreDNS's group substitution: TO with every `{N}` replaced by group N of RE's match in
/// `src`, or `None` when RE does not match.
fn expand_groups(re: &Regex, src: &str, to: &str) -> Option<String> {
    let caps = re.captures(src)?;
    let mut out = to.to_string();
    for (i, g) in caps.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), g.map_or("", |m| m.as_str()));
    }
    Some(out)
}

/// One rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// `name …`
    Name {
        /// Matcher.
        from: NameMatch,
        /// Replacement.
        to: String,
        /// Undo the rewrite in names and values by mapping the new question name back (exact
        /// rules, and `answer auto` of prefix, substring and regex rules).
        auto: bool,
        /// Fixed response rules: `answer name|value …`, and `answer auto` of suffix rules.
        answers: Vec<RespRule>,
    },
    /// `type FROM TO`
    Type(RecordType, RecordType),
    /// `class FROM TO`
    Class(DNSClass, DNSClass),
    /// `ttl [MATCH] NAME TTL|MIN-MAX`: answer TTLs clamped for matching names.
    Ttl(NameMatch, u32, u32),
    /// `edns0 local|nsid|subnet ACTION …`: an EDNS0 option of the request.
    Edns0(Edns0Rule),
    /// `cname [MATCH] FROM TO`: a CNAME target in the answer is replaced and the answer after
    /// it looked up again.
    Cname(CnameMatch, String),
    /// `rcode [MATCH] NAME FROM TO`: the reply's rcode for matching names.
    Rcode(NameMatch, ResponseCode, ResponseCode),
}

/// How a `cname` rule matches a CNAME target (CoreDNS's `getFromAndToTarget`).
#[derive(Debug, Clone)]
pub enum CnameMatch {
    /// The whole target.
    Exact(String),
    /// A leading part.
    Prefix(String),
    /// A trailing part.
    Suffix(String),
    /// Every occurrence of a part.
    Substring(String),
    /// A regular expression; `{N}` in the replacement is group N.
    Regex(Regex),
}

impl CnameMatch {
    /// The new target for `target` (lower-case FQDN), if the rule matches it.
    fn apply(&self, target: &str, to: &str) -> Option<String> {
        Some(match self {
            Self::Exact(s) => (target == s).then(|| to.to_string())?,
            Self::Prefix(s) => format!("{to}{}", target.strip_prefix(s.as_str())?),
            Self::Suffix(s) => format!("{}{to}", target.strip_suffix(s.as_str())?),
            Self::Substring(s) => target
                .contains(s.as_str())
                .then(|| target.replace(s.as_str(), to))?,
            Self::Regex(r) => {
                let caps = r.captures(target)?;
                let mut out = to.to_string();
                for (i, g) in caps.iter().enumerate() {
                    out = out.replace(&format!("{{{i}}}"), g.map_or("", |m| m.as_str()));
                }
                out
            }
        })
    }
}

/// The rcode a rule names: a number up to 23 or its name (`SERVFAIL`, …, `BADCOOKIE`).
fn rcode_arg(v: &str) -> Option<ResponseCode> {
    const NAMES: &[&str] = &[
        "NOERROR",
        "FORMERR",
        "SERVFAIL",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
        "YXDOMAIN",
        "YXRRSET",
        "NXRRSET",
        "NOTAUTH",
        "NOTZONE",
        "",
        "",
        "",
        "",
        "",
        "BADSIG",
        "BADKEY",
        "BADTIME",
        "BADMODE",
        "BADNAME",
        "BADALG",
        "BADTRUNC",
        "BADCOOKIE",
    ];
    let n = match v.parse::<u16>() {
        Ok(n) if n <= 23 => n,
        Ok(_) => return None,
        Err(_) => {
            let up = v.to_ascii_uppercase();
            match up.as_str() {
                "BADVERS" => 16,
                _ => NAMES.iter().position(|n| !n.is_empty() && *n == up)? as u16,
            }
        }
    };
    Some(ResponseCode::from((n >> 4) as u8, (n & 0xf) as u8))
}

/// A match type and string as CoreDNS's rcode rules take them: lower-case FQDNs except for
/// regular expressions.
fn normalized_match(
    d: &Dispenser<'_>,
    rule: &str,
    kind: &str,
    v: &str,
) -> Result<NameMatch, Error> {
    let n = normalize(v);
    Ok(match kind {
        "exact" => NameMatch::Exact(n),
        "prefix" => NameMatch::Prefix(n),
        "suffix" => NameMatch::Suffix(n),
        "substring" => NameMatch::Substring(n),
        "regex" => {
            if v.len() > 10_000 {
                return Err(d.err(format!(
                    "regex pattern too long in a {rule} rule: {} > 10000",
                    v.len()
                )));
            }
            NameMatch::Regex(
                Regex::new(v)
                    .map_err(|_| d.err(format!("invalid regex pattern in a {rule} rule: {v}")))?,
            )
        }
        _ => {
            return Err(d.err(format!(
                "{rule} rule supports only exact, prefix, suffix, substring, and regex name matching"
            )));
        }
    })
}

/// A rule and whether processing continues after it matched.
#[derive(Debug, Clone)]
pub struct RewriteRule {
    /// `continue` (true) or `stop` (default).
    pub cont: bool,
    /// The rule.
    pub rule: Rule,
}

impl PartialEq for RewriteRule {
    fn eq(&self, o: &Self) -> bool {
        format!("{self:?}") == format!("{o:?}")
    }
}

/// Go's `plugin.Name(s).Normalize()`: lower case and fully qualified.
fn normalize(s: &str) -> String {
    fqdn(&s.to_ascii_lowercase())
}

/// How many of `{0}`…`{100}` occur in `s` (CoreDNS's `getSubExprUsage`).
fn sub_expr_usage(s: &str) -> usize {
    (0..=100)
        .filter(|i| s.contains(&format!("{{{i}}}")))
        .count()
}

/// CoreDNS's `isValidRegexPattern`: FROM compiles, is not too long, and has at least as many
/// groups as TO uses.
fn valid_regex(from: &str, to: &str) -> Result<Regex, String> {
    if from.len() > 10_000 {
        return Err(format!("regex pattern too long: {} > 10000", from.len()));
    }
    let re = Regex::new(from).map_err(|_| format!("invalid regex matching pattern: {from}"))?;
    if sub_expr_usage(to) > re.captures_len() - 1 {
        return Err(format!(
            "the rewrite regex pattern ({to}) uses more subexpressions than its corresponding matching regex pattern ({from})"
        ));
    }
    Ok(re)
}

/// The `answer …` part of a name rule (CoreDNS's `parseAnswerRules`): whether `auto` was
/// given, and the `name`/`value` rules. `answer` may be left out after the first.
fn answer_rules(kind: &str, args: &[String]) -> Result<(bool, Vec<RespRule>), String> {
    if args.len() < 2 {
        return Err(format!("invalid arguments for {kind} rule"));
    }
    let (mut auto, mut rules, mut name_rules, mut i) = (false, Vec::new(), 0, 0);
    let mut last = "";
    while i < args.len() {
        if last.is_empty() && args[i] != "answer" {
            return Err(format!(
                "exceeded the number of arguments for a non-answer rule argument for {kind} rule"
            ));
        }
        if args[i] == "answer" {
            i += 1;
        }
        let Some(what) = args.get(i) else {
            return Err(format!("type missing for answer rule for {kind} rule"));
        };
        last = what.as_str();
        i += 1;
        match last {
            "auto" => auto = true,
            "name" | "value" => {
                let (Some(from), Some(to)) = (args.get(i), args.get(i + 1)) else {
                    return Err(format!(
                        "{last} answer rule for {kind} rule: 2 arguments required"
                    ));
                };
                let re = valid_regex(from, to)
                    .map_err(|e| format!("{last} answer rule for {kind} rule: {e}"))?;
                let rw = StrRw::Regex(re, normalize(to));
                if last == "name" {
                    name_rules += 1;
                    rules.push(RespRule::Name(rw));
                } else {
                    rules.push(RespRule::Value(rw));
                }
                i += 2;
            }
            other => {
                return Err(format!(
                    "invalid type \"{other}\" for answer rule for {kind} rule"
                ));
            }
        }
    }
    if auto && name_rules > 0 {
        return Err(
            "auto name answer rule cannot be combined with explicit name anwer rules".into(),
        );
    }
    Ok((auto, rules))
}

/// A `name` rule (CoreDNS's `newNameRule`): FROM and TO are normalised (lower case, fully
/// qualified) but for a regex FROM.
fn name_rule(args: &[String]) -> Result<Rule, String> {
    if args.len() < 2 {
        return Err("too few arguments for a name rule".into());
    }
    let (kind, from, to) = if args.len() == 2 {
        (
            "exact".to_string(),
            normalize(&args[0]),
            normalize(&args[1]),
        )
    } else {
        let kind = args[0].to_ascii_lowercase();
        if kind == "regex" {
            (kind, args[1].clone(), args[2].clone())
        } else {
            (kind, normalize(&args[1]), normalize(&args[2]))
        }
    };
    let (auto, mut answers) = if args.len() > 3 {
        answer_rules(&kind, &args[3..])?
    } else {
        (false, Vec::new())
    };
    let (from, to, auto) = match kind.as_str() {
        "exact" => {
            valid_regex(&to, &from)?;
            (NameMatch::Exact(from), to, true)
        }
        "prefix" => (NameMatch::Prefix(from), to, auto),
        "suffix" => {
            if auto {
                // The way back of a suffix rule is the suffix rule the other way round.
                let back = StrRw::Suffix(to.clone(), from.clone());
                answers.splice(0..0, [RespRule::Name(back.clone()), RespRule::Value(back)]);
            }
            (NameMatch::Suffix(from), to, false)
        }
        "substring" => (NameMatch::Substring(from), to, auto),
        "regex" => (
            NameMatch::Regex(valid_regex(&from, &to)?),
            normalize(&args[2]),
            auto,
        ),
        other => {
            return Err(format!(
                "name rule supports only exact, prefix, suffix, substring, and regex name matching, received: {other}"
            ));
        }
    };
    Ok(Rule::Name {
        from,
        to,
        auto,
        answers,
    })
}

/// CoreDNS's `isValidTTL`: `TTL`, `MIN-MAX`, `MIN-` (up to 2147483647) or `-MAX`.
fn ttl_range(v: &str) -> Option<(u32, u32)> {
    let parts: Vec<&str> = v.split('-').collect();
    let num = |s: &str| s.parse::<u32>().ok();
    match parts[..] {
        [one] => num(one).map(|n| (n, n)),
        ["", ""] => None,
        [lo, hi] => {
            let lo = if lo.is_empty() { 0 } else { num(lo)? };
            let hi = if hi.is_empty() {
                2_147_483_647
            } else {
                num(hi)?
            };
            (lo <= hi).then_some((lo, hi))
        }
        _ => None,
    }
}

/// A `ttl` rule (CoreDNS's `newTTLRule`).
fn ttl_rule(d: &Dispenser<'_>, args: &[String]) -> Result<Rule, Error> {
    let ttl = match args.len() {
        0 | 1 => {
            return Err(d.err(format!("too few ({}) arguments for a ttl rule", args.len())));
        }
        2 | 3 => &args[args.len() - 1],
        _ => return Err(d.err("many few arguments for a ttl rule")),
    };
    let (lo, hi) =
        ttl_range(ttl).ok_or_else(|| d.err(format!("invalid TTL '{ttl}' for a ttl rule")))?;
    let m = if args.len() == 3 {
        normalized_match(d, "ttl", &args[0].to_ascii_lowercase(), &args[1])?
    } else {
        NameMatch::Exact(normalize(&args[0]))
    };
    Ok(Rule::Ttl(m, lo, hi))
}

fn parse_rule(d: &Dispenser<'_>, args: &[String]) -> Result<RewriteRule, Error> {
    // CoreDNS's newRule: an optional mode, then the rule type.
    let (cont, args) = match args.first().map(|a| a.to_ascii_lowercase()).as_deref() {
        Some(m @ ("continue" | "stop")) => {
            if args.len() < 2 {
                return Err(d.err(format!("{m} rule must begin with a rule type")));
            }
            (m == "continue", &args[1..])
        }
        _ => (false, args),
    };
    let Some((field, rest)) = args.split_first() else {
        return Err(d.err("no rule type specified for rewrite"));
    };
    let rule = match field.to_ascii_lowercase().as_str() {
        "name" => name_rule(rest).map_err(|e| d.err(e))?,
        "type" => {
            let [f, t] = rest else {
                return Err(d.err("type rules must have exactly two arguments"));
            };
            let p = |s: &str| {
                s.to_ascii_uppercase()
                    .parse::<RecordType>()
                    .ok()
                    .filter(|t| !matches!(t, RecordType::Unknown(_)))
                    .ok_or_else(|| d.err(format!("invalid type {:?}", s.to_ascii_uppercase())))
            };
            Rule::Type(p(f)?, p(t)?)
        }
        "class" => {
            let [f, t] = rest else {
                return Err(d.err("class rules must have exactly two arguments"));
            };
            let p = |s: &str| {
                s.to_ascii_uppercase()
                    .parse::<DNSClass>()
                    .map_err(|_| d.err(format!("invalid class {:?}", s.to_ascii_uppercase())))
            };
            Rule::Class(p(f)?, p(t)?)
        }
        "ttl" => ttl_rule(d, rest)?,
        "edns0" => Rule::Edns0(edns0::parse(rest).map_err(|e| d.err(e))?),
        "cname" => {
            let (kind, from, to) = match rest {
                [k, f, t] => (k.to_ascii_lowercase(), f, t),
                [f, t] => ("exact".to_string(), f, t),
                _ => {
                    return Err(d.err(format!(
                        "too few ({}) arguments for a cname rule",
                        rest.len()
                    )));
                }
            };
            let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
            let m =
                match kind.as_str() {
                    "exact" => CnameMatch::Exact(fqdn(&from)),
                    "prefix" => CnameMatch::Prefix(from),
                    "suffix" => CnameMatch::Suffix(from),
                    "substring" => CnameMatch::Substring(from),
                    "regex" => {
                        if from.len() > 10_000 {
                            return Err(d.err(format!(
                                "regex pattern too long in a cname rule: {} > 10000",
                                from.len()
                            )));
                        }
                        CnameMatch::Regex(Regex::new(&from).map_err(|e| {
                            d.err(format!("invalid cname rewrite regex pattern: {e}"))
                        })?)
                    }
                    other => return Err(d.err(format!("unknown cname rewrite type: {other}"))),
                };
            let to = if kind == "exact" { fqdn(&to) } else { to };
            Rule::Cname(m, to)
        }
        "rcode" => {
            let (kind, name, old, new) = match rest {
                [n, o, w] => ("exact".to_string(), n, o, w),
                [k, n, o, w] => (k.to_ascii_lowercase(), n, o, w),
                _ if rest.len() < 3 => {
                    return Err(d.err(format!(
                        "too few ({}) arguments for a rcode rule",
                        rest.len()
                    )));
                }
                _ => return Err(d.err("many few arguments for a rcode rule")),
            };
            let old = rcode_arg(old)
                .ok_or_else(|| d.err(format!("invalid matching RCODE '{old}' for a rcode rule")))?;
            let new = rcode_arg(new).ok_or_else(|| {
                d.err(format!(
                    "invalid replacement RCODE '{new}' for a rcode rule"
                ))
            })?;
            Rule::Rcode(normalized_match(d, "rcode", &kind, name)?, old, new)
        }
        "answer" => return Err(d.err("response rewrites must begin with a name rule")),
        other => return Err(d.err(format!("invalid rule type \"{other}\""))),
    };
    Ok(RewriteRule { cont, rule })
}

/// Parses every `rewrite` line of a block, in order.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Vec<RewriteRule>, Error> {
    let mut out = Vec::new();
    while d.next() {
        let mut args = d.remaining_args();
        if args.len() < 2 {
            // The block form: `rewrite [continue|stop] { name … answer … }` — the block's
            // words follow the line's, as in CoreDNS's rewriteParse.
            while d.next_block() {
                args.push(d.val().to_string());
                args.extend(d.remaining_args());
            }
        }
        out.push(parse_rule(d, &args)?);
    }
    Ok(out)
}

impl NameMatch {
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Exact(s) => name == s,
            Self::Prefix(s) => name.starts_with(s.as_str()),
            Self::Suffix(s) => name.ends_with(s.as_str()),
            Self::Substring(s) => name.contains(s.as_str()),
            Self::Regex(r) => r.is_match(name),
        }
    }

    /// The new question name (CoreDNS's name rules: `to` is normalised, so are the strings
    /// but for regular expressions).
    fn apply(&self, name: &str, to: &str) -> Option<String> {
        Some(match self {
            Self::Exact(s) => (name == s).then(|| to.to_string())?,
            Self::Prefix(s) => format!("{to}{}", name.strip_prefix(s.as_str())?),
            Self::Suffix(s) => format!("{}{to}", name.strip_suffix(s.as_str())?),
            Self::Substring(s) => name
                .contains(s.as_str())
                .then(|| name.replace(s.as_str(), to))?,
            Self::Regex(r) => expand_groups(r, name, to)?,
        })
    }
}

/// The handler.
pub struct Rewrite {
    rules: Vec<RewriteRule>,
}

impl Rewrite {
    /// A handler with `rules`.
    pub fn handler(rules: Vec<RewriteRule>) -> Arc<dyn Handler> {
        Arc::new(Self { rules })
    }
}

fn name_err(n: &str) -> HandlerError {
    HandlerError::Internal(format!("plugin/rewrite: invalid name after rewrite: {n}"))
}

/// The name in a record's data that response rules rewrite (CoreDNS's
/// `getRecordValueForRewrite`): CNAME, DNAME, NS, PTR, SRV and MX targets, the NAPTR
/// replacement and the SOA MNAME.
fn value_of(r: &mut Record) -> Option<&mut Name> {
    Some(match &mut r.data {
        RData::CNAME(c) => &mut c.0,
        RData::PTR(p) => &mut p.0,
        RData::NS(n) => &mut n.0,
        RData::SRV(s) => &mut s.target,
        RData::MX(m) => &mut m.exchange,
        RData::NAPTR(n) => &mut n.replacement,
        RData::SOA(s) => &mut s.mname,
        _ => return None,
    })
}

/// A DNAME (which hickory keeps as unknown data): its target, when it decodes.
fn dname_target(r: &Record) -> Option<Name> {
    match &r.data {
        RData::Unknown { code, rdata } if *code == RecordType::DNAME => {
            let mut dec = hickory_proto::serialize::binary::BinDecoder::new(&rdata.anything);
            <Name as hickory_proto::serialize::binary::BinDecodable>::read(&mut dec).ok()
        }
        _ => None,
    }
}

/// Applies one response rule to a record.
fn apply_resp(rule: &RespRule, r: &mut Record) -> Result<(), HandlerError> {
    let to_name = |n: String| Name::from_ascii(&n).map_err(|_| name_err(&n));
    match rule {
        RespRule::Name(rw) => {
            if let Some(n) = rw.rewrite(&lower_fqdn(&r.name)) {
                r.name = to_name(n)?;
            }
        }
        RespRule::Value(rw) => {
            if let Some(target) = dname_target(r) {
                if let Some(n) = rw.rewrite(&lower_fqdn(&target)) {
                    let mut buf = Vec::new();
                    let mut enc = hickory_proto::serialize::binary::BinEncoder::new(&mut buf);
                    enc.set_canonical_form(true);
                    hickory_proto::serialize::binary::BinEncodable::emit(&to_name(n)?, &mut enc)
                        .map_err(|e| name_err(&e.to_string()))?;
                    r.data = RData::Unknown {
                        code: RecordType::DNAME,
                        rdata: hickory_proto::rr::rdata::NULL::with(buf),
                    };
                }
            } else if let Some(target) = value_of(r)
                && let Some(n) = rw.rewrite(&lower_fqdn(target))
            {
                *target = to_name(n)?;
            }
        }
        RespRule::Ttl(lo, hi) => {
            if r.ttl < *lo {
                r.ttl = *lo;
            } else if r.ttl > *hi {
                r.ttl = *hi;
            }
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Handler for Rewrite {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let mut new = req.clone();
        let mut applied: Vec<&RewriteRule> = Vec::new();
        // What matched rules do to each record of the reply, in rule order (applied backwards).
        let mut resp_rules: Vec<RespRule> = Vec::new();
        // `edns0` rules: what the reply shows for each option code they touched (`revert`
        // keeps what it showed before the rule; the client's own option at first).
        let mut echo: Vec<(u16, Option<EdnsOption>)> = Vec::new();
        for r in &self.rules {
            let hit = match &r.rule {
                Rule::Name {
                    from,
                    to,
                    auto,
                    answers,
                } => {
                    let cur = lower_fqdn(new.qname());
                    match from.apply(&cur, to) {
                        Some(n) => {
                            if !crate::corefile::address::is_domain_name(&n) {
                                return Err(name_err(&n));
                            }
                            let name = Name::from_ascii(&n).map_err(|_| name_err(&n))?;
                            new.set_qname(name);
                            if *auto {
                                let back = StrRw::Remap(n, cur);
                                resp_rules.push(RespRule::Name(back.clone()));
                                resp_rules.push(RespRule::Value(back));
                            }
                            resp_rules.extend(answers.iter().cloned());
                            true
                        }
                        None => false,
                    }
                }
                Rule::Type(f, t) if new.qtype() == *f => {
                    new.set_qtype(*t);
                    true
                }
                Rule::Class(f, t) if new.qclass() == *f => {
                    new.set_qclass(*t);
                    true
                }
                Rule::Ttl(m, lo, hi) => {
                    let hit = m.matches(&lower_fqdn(new.qname()));
                    if hit {
                        resp_rules.push(RespRule::Ttl(*lo, *hi));
                    }
                    hit
                }
                Rule::Rcode(m, ..) => m.matches(&lower_fqdn(new.qname())),
                Rule::Cname(..) => true,
                Rule::Edns0(e) => {
                    let (done, before) = e.apply(&mut new);
                    if done {
                        let code = e.code();
                        let i = match echo.iter().position(|(c, _)| *c == code) {
                            Some(i) => i,
                            None => {
                                echo.push((code, before));
                                echo.len() - 1
                            }
                        };
                        if !e.revert {
                            echo[i].1 = new.edns.as_ref().and_then(|o| {
                                o.options()
                                    .as_ref()
                                    .iter()
                                    .find(|(_, x)| code_of(x) == code)
                                    .map(|(_, x)| x.clone())
                            });
                        }
                    }
                    done
                }
                _ => false,
            };
            if hit {
                applied.push(r);
                if !r.cont {
                    break;
                }
            }
        }
        if applied.is_empty() {
            // An edns0 rule that did not apply still gave the query an OPT record (CoreDNS's
            // setupEdns0Opt).
            let edns_added = req.edns.is_none() && new.edns.is_some();
            return next.run(if edns_added { &new } else { req }).await;
        }
        let rcode_rules = applied.iter().any(|r| matches!(r.rule, Rule::Rcode(..)));
        let mut resp = match next.run(&new).await {
            Ok(r) => r,
            // A failure the server would answer with a bare rcode: an rcode rule may rewrite it.
            Err(e) if rcode_rules && !matches!(e, HandlerError::Dropped(_)) => {
                Response::new(new.error_reply(e.rcode()), NAME)
            }
            Err(e) => return Err(e),
        };
        // CNAME targets first (they look the new target up), then every record of every
        // section through the record rules backwards, then the rcode.
        for r in applied.iter().rev() {
            if let Rule::Cname(m, to) = &r.rule {
                rewrite_cname(&new, &mut resp.msg, m, to).await;
            }
        }
        if !resp_rules.is_empty() {
            let msg = &mut resp.msg;
            for rec in msg
                .authorities
                .iter_mut()
                .chain(msg.answers.iter_mut())
                .chain(msg.additionals.iter_mut())
            {
                for rule in resp_rules.iter().rev() {
                    apply_resp(rule, rec)?;
                }
            }
        }
        for r in applied.iter().rev() {
            if let Rule::Rcode(_, old, new_rcode) = &r.rule
                && resp.msg.metadata.response_code == *old
            {
                resp.msg.metadata.response_code = *new_rcode;
            }
        }
        for (code, shown) in echo {
            if let Some(e) = resp.msg.edns.as_mut() {
                e.options_mut().remove(code.into());
            }
            if let Some(o) = shown {
                set_option(&mut resp.msg, o);
            }
        }
        Ok(resp)
    }
}

/// CoreDNS's cname target rule: the first CNAME in the answer whose target the rule matches
/// gets the new target, the records after it are replaced by the answer for the new target
/// (looked up through this server), and TC follows that answer. A failed lookup leaves the
/// answer as it was.
async fn rewrite_cname(
    req: &Request,
    msg: &mut hickory_proto::op::Message,
    m: &CnameMatch,
    to: &str,
) {
    let hit = msg
        .answers
        .iter()
        .enumerate()
        .find_map(|(i, r)| match &r.data {
            RData::CNAME(c) => m.apply(&lower_fqdn(&c.0), to).map(|t| (i, t)),
            _ => None,
        });
    let Some((i, target)) = hit else {
        return;
    };
    let Ok(name) = Name::from_ascii(fqdn(&target)) else {
        return;
    };
    let up = match req.lookup(name.clone(), req.qtype()).await {
        Ok(up) => up,
        Err(e) => {
            tracing::error!(target: "plugin/rewrite", "upstream lookup failed: {e}");
            return;
        }
    };
    // The CNAMEs up to the rewritten one stay; the one matched points to the new target.
    let mut answers: Vec<Record> = msg.answers[..=i]
        .iter()
        .filter(|r| r.record_type() == RecordType::CNAME)
        .cloned()
        .collect();
    if let Some(last) = answers.last_mut() {
        last.data = RData::CNAME(hickory_proto::rr::rdata::CNAME(name));
    }
    answers.extend(up.answers);
    msg.answers = answers;
    msg.metadata.truncation = up.metadata.truncation;
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Arc as StdArc;

    use hickory_proto::rr::rdata::{A, CNAME};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    /// Answers A 10.0.0.1 for the name it is asked, plus a CNAME to a name under that name.
    struct Echo;
    #[async_trait::async_trait]
    impl Handler for Echo {
        fn name(&self) -> &'static str {
            "echo"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = req.reply();
            let n = req.qname().clone();
            let target = Name::from_ascii(format!("www.{}", lower_fqdn(&n))).unwrap();
            m.add_answer(Record::from_rdata(
                n.clone(),
                300,
                RData::CNAME(CNAME(target.clone())),
            ));
            m.add_answer(Record::from_rdata(
                target,
                300,
                RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
            ));
            m.add_answer(Record::from_rdata(
                n,
                300,
                RData::A(A(Ipv4Addr::new(10, 0, 0, 2))),
            ));
            Ok(Response::new(m, "echo"))
        }
    }

    fn chain(corefile: &str) -> Chain {
        let toks = lex(&StdArc::from("Corefile"), corefile);
        let rules = parse(&mut Dispenser::new(&toks)).unwrap();
        Chain::new(vec![Rewrite::handler(rules), StdArc::new(Echo)])
    }

    async fn ask(c: &Chain, name: &str) -> Vec<String> {
        let req = Request::new(
            Name::from_ascii(name).unwrap(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        let r = c.run(&req).await.unwrap().msg;
        r.answers
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.ttl, r.data))
            .collect()
    }

    #[tokio::test]
    async fn exact_name_is_reverted_in_answers() {
        let c = chain("rewrite name foo.example.com foo.default.svc.cluster.local");
        let got = ask(&c, "foo.example.com.").await;
        // CoreDNS's exact rules map the new name back in owners and values (remap).
        assert_eq!(got[0], "foo.example.com. 300 www.foo.example.com.");
        assert_eq!(got[1], "www.foo.example.com. 300 10.0.0.1");
        assert_eq!(got[2], "foo.example.com. 300 10.0.0.2");
        // Other names are untouched.
        assert_eq!(
            ask(&c, "bar.example.com.").await[0],
            "bar.example.com. 300 www.bar.example.com."
        );
    }

    #[tokio::test]
    async fn suffix_with_answer_auto_reverts_names_and_values() {
        let c = chain("rewrite name suffix .corp.internal. .svc.cluster.local. answer auto");
        let got = ask(&c, "api.ns1.corp.internal.").await;
        assert_eq!(
            got[0],
            "api.ns1.corp.internal. 300 www.api.ns1.corp.internal."
        );
        assert_eq!(got[1], "www.api.ns1.corp.internal. 300 10.0.0.1");
    }

    #[tokio::test]
    async fn regex_with_answer_name_and_ttl_rule() {
        let c = chain(
            "rewrite continue name regex (.*)\\.legacy\\.local\\. {1}.default.svc.cluster.local. answer name (.*)\\.default\\.svc\\.cluster\\.local\\. {1}.legacy.local.\nrewrite ttl regex .* 10-60",
        );
        let got = ask(&c, "db.legacy.local.").await;
        assert_eq!(got[2], "db.legacy.local. 60 10.0.0.2");
    }

    #[tokio::test]
    async fn regex_answer_auto_is_derived() {
        // CoreDNS's README example.
        let c = chain(
            "rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul answer auto",
        );
        let got = ask(&c, "foo-us-west-1.example.org.").await;
        // Names and values that the rewrite produced are turned back.
        assert_eq!(
            got[0],
            "foo-us-west-1.example.org. 300 www.foo-us-west-1.example.org."
        );
        assert_eq!(got[2], "foo-us-west-1.example.org. 300 10.0.0.2");
    }

    #[test]
    fn setup_errors() {
        for (bad, want) in [
            ("rewrite", "no rule type specified for rewrite"),
            ("rewrite bogus a b", "invalid rule type \"bogus\""),
            (
                "rewrite name regex ( x",
                "invalid regex matching pattern: (",
            ),
            (
                "rewrite name exact a b answer bogus",
                "invalid type \"bogus\" for answer rule for exact rule",
            ),
            ("rewrite ttl a 9-1", "invalid TTL '9-1' for a ttl rule"),
            (
                "rewrite edns0 local bogus 0xffee abcd",
                "invalid action: \"bogus\"",
            ),
            ("rewrite cname a", "too few (1) arguments for a cname rule"),
            (
                "rewrite cname bogus a b",
                "unknown cname rewrite type: bogus",
            ),
            (
                "rewrite rcode a.org 2",
                "too few (2) arguments for a rcode rule",
            ),
            (
                "rewrite rcode a.org random nothing",
                "invalid matching RCODE 'random'",
            ),
            (
                "rewrite answer name a b",
                "response rewrites must begin with a name rule",
            ),
        ] {
            let toks = lex(&StdArc::from("Corefile"), bad);
            let e = parse(&mut Dispenser::new(&toks)).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    fn rules(corefile: &str) -> Vec<RewriteRule> {
        let toks = lex(&StdArc::from("Corefile"), corefile);
        parse(&mut Dispenser::new(&toks)).unwrap()
    }

    #[test]
    fn coredns_rcode_rule_table() {
        // CoreDNS's TestNewRCodeRule: (mode, arguments, should fail), as `rewrite` lines.
        for (mode, args, fails) in [
            ("stop", "numeric.rcode.coredns.rocks 2 0", false),
            ("stop", "too.few.rcode.coredns.rocks 2", true),
            ("stop", "exact too.many.rcode.coredns.rocks 2 1 0", true),
            (
                "stop",
                "exact match.string.rcode.coredns.rocks SERVFAIL NOERROR",
                false,
            ),
            (
                "continue",
                "regex (regex)\\.rcode\\.(coredns)\\.(rocks) FORMERR NOERROR",
                false,
            ),
            ("stop", "invalid.rcode.coredns.rocks random nothing", true),
            ("stop", "bogus a.org 2 0", true),
            ("stop", "a.org 24 0", true),
        ] {
            let line = format!("rewrite {mode} rcode {args}");
            let toks = lex(&StdArc::from("Corefile"), &line);
            assert_eq!(parse(&mut Dispenser::new(&toks)).is_err(), fails, "{line}");
        }
        let long = format!(
            "rewrite rcode regex {} SERVFAIL NXDOMAIN",
            "a".repeat(10_001)
        );
        let toks = lex(&StdArc::from("Corefile"), &long);
        let e = parse(&mut Dispenser::new(&toks)).unwrap_err().to_string();
        assert!(e.contains("too long"), "{e}");
    }

    /// Answers with a fixed rcode (and one A record when `answer`), or fails with `err`.
    struct Fixed {
        rcode: ResponseCode,
        answer: bool,
        err: Option<fn() -> HandlerError>,
    }

    #[async_trait::async_trait]
    impl Handler for Fixed {
        fn name(&self) -> &'static str {
            "fixed"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            if let Some(e) = self.err {
                return Err(e());
            }
            let mut m = req.error_reply(self.rcode);
            if self.answer {
                m.add_answer(Record::from_rdata(
                    req.qname().clone(),
                    5,
                    RData::A(A(Ipv4Addr::new(10, 0, 0, 1))),
                ));
            }
            Ok(Response::new(m, "fixed"))
        }
    }

    async fn rcode_after(line: &str, next: Fixed) -> ResponseCode {
        let chain = Chain::new(vec![Rewrite::handler(rules(line)), StdArc::new(next)]);
        let req = Request::new(
            Name::from_ascii("srv1.coredns.rocks.").unwrap(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        chain.run(&req).await.unwrap().rcode()
    }

    #[tokio::test]
    async fn coredns_rcode_rewrites() {
        // TestRCodeRewrite: a SERVFAIL with an answer becomes FORMERR.
        let f = Fixed {
            rcode: ResponseCode::ServFail,
            answer: true,
            err: None,
        };
        assert_eq!(
            rcode_after("rewrite rcode exact srv1.coredns.rocks SERVFAIL FORMERR", f).await,
            ResponseCode::FormErr
        );
        // TestRCodeRewriteEmptyResponse: bare failures, written or not, become NOERROR.
        for mode in ["stop", "continue"] {
            for old in [
                ResponseCode::FormErr,
                ResponseCode::ServFail,
                ResponseCode::Refused,
                ResponseCode::NotImp,
            ] {
                let line = format!(
                    "rewrite {mode} rcode exact srv1.coredns.rocks {} NOERROR",
                    u16::from(old)
                );
                let f = Fixed {
                    rcode: old,
                    answer: false,
                    err: None,
                };
                assert_eq!(rcode_after(&line, f).await, ResponseCode::NoError, "{line}");
            }
            let line = format!("rewrite {mode} rcode srv1.coredns.rocks SERVFAIL NOERROR");
            let f = Fixed {
                rcode: ResponseCode::NoError,
                answer: false,
                err: Some(|| HandlerError::Internal("boom".into())),
            };
            assert_eq!(
                rcode_after(&line, f).await,
                ResponseCode::NoError,
                "unwritten SERVFAIL"
            );
            let line = format!("rewrite {mode} rcode srv1.coredns.rocks REFUSED 0");
            let f = Fixed {
                rcode: ResponseCode::NoError,
                answer: false,
                err: Some(|| HandlerError::Refused("no".into())),
            };
            assert_eq!(
                rcode_after(&line, f).await,
                ResponseCode::NoError,
                "unwritten REFUSED"
            );
        }
        // Another name, another rcode: untouched.
        let f = Fixed {
            rcode: ResponseCode::ServFail,
            answer: false,
            err: None,
        };
        assert_eq!(
            rcode_after("rewrite rcode other.coredns.rocks SERVFAIL NOERROR", f).await,
            ResponseCode::ServFail
        );
        let f = Fixed {
            rcode: ResponseCode::NXDomain,
            answer: false,
            err: None,
        };
        assert_eq!(
            rcode_after("rewrite rcode suffix coredns.rocks SERVFAIL NOERROR", f).await,
            ResponseCode::NXDomain
        );
    }

    /// CoreDNS's MockedUpstream: the answers for the rewritten CNAME targets.
    struct Upstream;

    #[async_trait::async_trait]
    impl crate::plugins::request::Resolve for Upstream {
        async fn resolve(&self, req: &Request) -> Result<hickory_proto::op::Message, HandlerError> {
            let mut m = req.reply();
            m.metadata.authoritative = true;
            let rr = |s: &str| {
                let (name, rest) = s.split_once(' ').unwrap();
                let (ttl, rest) = rest.split_once(' ').unwrap();
                let (kind, value) = rest.split_once(' ').unwrap();
                let data = match kind {
                    "A" => RData::A(A(value.parse().unwrap())),
                    "AAAA" => RData::AAAA(hickory_proto::rr::rdata::AAAA(value.parse().unwrap())),
                    _ => RData::CNAME(CNAME(Name::from_ascii(value).unwrap())),
                };
                Record::from_rdata(Name::from_ascii(name).unwrap(), ttl.parse().unwrap(), data)
            };
            let answers: Vec<&str> = match (req.qname_lower(), req.qtype()) {
                ("xyz.example.com.", RecordType::A) => vec!["xyz.example.com. 3600 A 3.4.5.6"],
                ("xyz.example.com.", RecordType::AAAA) => {
                    vec!["xyz.example.com. 3600 AAAA 3a01:7e00::f03c:91ff:fe79:234c"]
                }
                ("bard.google.com.cdn.cloudflare.net.", _) => {
                    vec!["bard.google.com.cdn.cloudflare.net. 1800 A 9.7.2.1"]
                }
                ("www.hosting.xyz.", _) => vec!["www.hosting.xyz. 500 A 20.30.40.50"],
                ("abcd.zzzz.www.pqrst.", _) => vec![
                    "abcd.zzzz.www.pqrst. 120 A 101.20.5.1",
                    "abcd.zzzz.www.pqrst. 120 A 101.20.5.2",
                ],
                ("orders.webapp.eu.org.", _) => vec!["orders.webapp.eu.org. 120 A 20.0.0.9"],
                ("music.truncated.spotify.com.", _) => {
                    m.metadata.truncation = true;
                    vec!["music.truncated.spotify.com. 120 A 10.1.0.9"]
                }
                ("intermediate-2.staging.", _) => vec![
                    "intermediate-2.staging. 200 CNAME final.staging.net.",
                    "final.staging.net. 120 A 5.6.7.8",
                ],
                _ => vec![],
            };
            m.answers = answers.into_iter().map(rr).collect();
            Ok(m)
        }
    }

    /// Answers with the records it was built with (CoreDNS's msgPrinter of a prepared message).
    struct Canned(Vec<Record>);

    #[async_trait::async_trait]
    impl Handler for Canned {
        fn name(&self) -> &'static str {
            "canned"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = req.reply();
            m.answers = self.0.clone();
            Ok(Response::new(m, "canned"))
        }
    }

    fn rec(s: &str) -> Record {
        let f: Vec<&str> = s.split_whitespace().collect();
        let data = match f[2] {
            "A" => RData::A(A(f[3].parse().unwrap())),
            "AAAA" => RData::AAAA(hickory_proto::rr::rdata::AAAA(f[3].parse().unwrap())),
            _ => RData::CNAME(CNAME(Name::from_ascii(f[3]).unwrap())),
        };
        Record::from_rdata(Name::from_ascii(f[0]).unwrap(), f[1].parse().unwrap(), data)
    }

    #[tokio::test]
    async fn coredns_cname_target_table() {
        // CoreDNS's TestCNameTargetRewrite: the rules, then (question, type, answer, expected
        // answer, truncated).
        let rs = rules(
            "rewrite continue cname exact def.example.com xyz.example.com
rewrite continue cname prefix chat.openai.com bard.google.com
rewrite continue cname suffix uvw. xyz.
rewrite continue cname substring efgh zzzz.www
rewrite continue cname regex (.*)\\.web\\.(.*)\\.site\\. {1}.webapp.{2}.org.
rewrite continue cname exact music.truncated.spotify.com. music.truncated.spotify.com.
rewrite continue cname suffix prod. staging.",
        );
        type Row<'a> = (&'a str, RecordType, &'a [&'a str], &'a [&'a str], bool);
        let table: &[Row<'_>] = &[
            (
                "abc.example.com.",
                RecordType::A,
                &[
                    "abc.example.com. 5 CNAME def.example.com.",
                    "def.example.com. 5 A 1.2.3.4",
                ],
                &[
                    "abc.example.com. 5 CNAME xyz.example.com.",
                    "xyz.example.com. 3600 A 3.4.5.6",
                ],
                false,
            ),
            (
                "abc.example.com.",
                RecordType::AAAA,
                &[
                    "abc.example.com. 5 CNAME def.example.com.",
                    "def.example.com. 5 AAAA 2a01:7e00::f03c:91ff:fe79:234c",
                ],
                &[
                    "abc.example.com. 5 CNAME xyz.example.com.",
                    "xyz.example.com. 3600 AAAA 3a01:7e00::f03c:91ff:fe79:234c",
                ],
                false,
            ),
            (
                "chat.openai.com.",
                RecordType::A,
                &[
                    "chat.openai.com. 20 CNAME chat.openai.com.cdn.cloudflare.net.",
                    "chat.openai.com.cdn.cloudflare.net. 30 A 23.2.1.2",
                    "chat.openai.com.cdn.cloudflare.net. 30 A 24.6.0.8",
                ],
                &[
                    "chat.openai.com. 20 CNAME bard.google.com.cdn.cloudflare.net.",
                    "bard.google.com.cdn.cloudflare.net. 1800 A 9.7.2.1",
                ],
                false,
            ),
            (
                "coredns.io.",
                RecordType::A,
                &[
                    "coredns.io. 100 CNAME www.hosting.uvw.",
                    "www.hosting.uvw. 200 A 7.2.3.4",
                ],
                &[
                    "coredns.io. 100 CNAME www.hosting.xyz.",
                    "www.hosting.xyz. 500 A 20.30.40.50",
                ],
                false,
            ),
            (
                "core.dns.rocks.",
                RecordType::A,
                &[
                    "core.dns.rocks. 200 CNAME abcd.efgh.pqrst.",
                    "abcd.efgh.pqrst. 100 A 200.30.45.67",
                ],
                &[
                    "core.dns.rocks. 200 CNAME abcd.zzzz.www.pqrst.",
                    "abcd.zzzz.www.pqrst. 120 A 101.20.5.1",
                    "abcd.zzzz.www.pqrst. 120 A 101.20.5.2",
                ],
                false,
            ),
            (
                "order.service.eu.",
                RecordType::A,
                &[
                    "order.service.eu. 200 CNAME orders.web.eu.site.",
                    "orders.web.eu.site. 50 A 10.10.15.1",
                ],
                &[
                    "order.service.eu. 200 CNAME orders.webapp.eu.org.",
                    "orders.webapp.eu.org. 120 A 20.0.0.9",
                ],
                false,
            ),
            (
                "music.spotify.com.",
                RecordType::A,
                &["music.spotify.com. 200 CNAME music.truncated.spotify.com."],
                &[
                    "music.spotify.com. 200 CNAME music.truncated.spotify.com.",
                    "music.truncated.spotify.com. 120 A 10.1.0.9",
                ],
                true,
            ),
            (
                "cname-chain.org.",
                RecordType::A,
                &[
                    "cname-chain.org. 200 CNAME intermediate-1.com.",
                    "intermediate-1.com. 200 CNAME intermediate-2.prod.",
                    "intermediate-2.prod. 200 CNAME final.prod.net.",
                    "final.prod.net. 120 A 1.2.3.4",
                ],
                &[
                    "cname-chain.org. 200 CNAME intermediate-1.com.",
                    "intermediate-1.com. 200 CNAME intermediate-2.staging.",
                    "intermediate-2.staging. 200 CNAME final.staging.net.",
                    "final.staging.net. 120 A 5.6.7.8",
                ],
                false,
            ),
        ];
        for (q, t, answer, want, tc) in table {
            let chain = Chain::new(vec![
                Rewrite::handler(rs.clone()),
                StdArc::new(Canned(answer.iter().map(|s| rec(s)).collect())),
            ]);
            let mut req = Request::new(
                Name::from_ascii(q).unwrap(),
                *t,
                "127.0.0.1:1".parse().unwrap(),
                Proto::Udp,
            );
            req.resolver = Some(crate::plugins::request::Resolver(StdArc::new(Upstream)));
            let m = chain.run(&req).await.unwrap().msg;
            let got: Vec<String> = m
                .answers
                .iter()
                .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), r.data))
                .collect();
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(got, want, "{q} {t}");
            assert_eq!(m.metadata.truncation, *tc, "{q}");
        }
        // A failed lookup leaves the answer alone (TestCNAMETargetRewrite_upstreamFailurePaths).
        let chain = Chain::new(vec![
            Rewrite::handler(rules("rewrite cname exact def.example.com xyz.example.com")),
            StdArc::new(Canned(vec![
                rec("abc.example.com. 5 CNAME def.example.com."),
                rec("def.example.com. 5 A 1.2.3.4"),
            ])),
        ]);
        let req = Request::new(
            Name::from_ascii("abc.example.com.").unwrap(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        let m = chain.run(&req).await.unwrap().msg;
        assert_eq!(m.answers.len(), 2);
        assert_eq!(m.answers[0].data.to_string(), "def.example.com.");
    }

    /// Answers with the EDNS0 options it was asked with as options of the reply (what
    /// CoreDNS's ScrubWriter does for an OPT-less reply: reuse the request's).
    struct EchoOpts;

    #[async_trait::async_trait]
    impl Handler for EchoOpts {
        fn name(&self) -> &'static str {
            "echo"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            let mut m = req.reply();
            let seen: Vec<String> = req
                .edns
                .iter()
                .flat_map(|e| e.options().as_ref().iter())
                .map(|(_, o)| format!("{o:?}"))
                .collect();
            m.add_answer(Record::from_rdata(
                req.qname().clone(),
                5,
                RData::TXT(hickory_proto::rr::rdata::TXT::new(vec![seen.join(";")])),
            ));
            Ok(Response::new(m, "echo"))
        }
    }

    async fn edns_run(corefile: &str, client: Vec<EdnsOption>) -> (String, Vec<EdnsOption>) {
        let chain = Chain::new(vec![
            Rewrite::handler(rules(corefile)),
            StdArc::new(EchoOpts),
        ]);
        let mut req = Request::new(
            Name::from_ascii("example.org.").unwrap(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        if !client.is_empty() {
            let mut e = hickory_proto::op::Edns::new();
            for o in client {
                e.options_mut().insert(o);
            }
            req.edns = Some(e);
        }
        let m = chain.run(&req).await.unwrap().msg;
        let seen = m.answers[0].data.to_string();
        let shown = m.edns.map_or(vec![], |e| {
            e.options()
                .as_ref()
                .iter()
                .map(|(_, o)| o.clone())
                .collect()
        });
        (seen, shown)
    }

    #[tokio::test]
    async fn edns0_reaches_the_chain_and_revert_decides_the_reply() {
        let local = |d: &[u8]| EdnsOption::Unknown(0xffee, d.to_vec());
        // Without revert the reply shows the option (CoreDNS echoes the rewritten request's).
        let (seen, shown) = edns_run("rewrite edns0 local set 0xffee 0x61626364", vec![]).await;
        assert!(seen.contains("Unknown(65518, [97, 98, 99, 100])"), "{seen}");
        assert_eq!(shown, [local(b"abcd")]);
        // TestEdns0LocalSetRevertNoLeak: with revert it does not.
        let (seen, shown) =
            edns_run("rewrite edns0 local set 0xffee 0xabcdef revert", vec![]).await;
        assert!(seen.contains("Unknown(65518, [171, 205, 239])"), "{seen}");
        assert!(shown.is_empty(), "{shown:?}");
        // TestEdns0LocalSetRevertRestoresPreexisting: the client's own value comes back.
        let (seen, shown) = edns_run(
            "rewrite edns0 local set 0xffee 0xabcdef revert",
            vec![local(&[0x11, 0x11, 0x11])],
        )
        .await;
        assert!(seen.contains("[171, 205, 239]"), "{seen}");
        assert_eq!(shown, [local(&[0x11, 0x11, 0x11])]);
        // CoreDNS's README: a continue rule sets abcd, a revert rule replaces it with bcde for
        // the chain only, so the reply shows abcd.
        let (seen, shown) = edns_run(
            "rewrite continue {\n edns0 local set 0xffee abcd\n}\nrewrite edns0 local replace 0xffee bcde revert",
            vec![],
        )
        .await;
        assert!(seen.contains("[98, 99, 100, 101]"), "{seen}");
        assert_eq!(shown, [local(b"abcd")]);
    }
}
