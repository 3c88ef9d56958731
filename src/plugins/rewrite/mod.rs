//! `rewrite`: rewrites queries (name, type, class) before the rest of the chain and the
//! answers on the way back (plugin/rewrite).

use std::sync::Arc;

use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use regex::Regex;

use crate::corefile::address::fqdn;
use crate::corefile::{Dispenser, Error};
use crate::plugins::request::lower_fqdn;
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

/// A response rewrite (`answer name|value FROM TO`): regex and replacement.
#[derive(Debug, Clone)]
pub struct AnswerRule {
    re: Regex,
    to: String,
    values: bool,
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
        /// `answer auto`: undo the rewrite in answer names and values.
        auto: bool,
        /// `answer name|value …` rules.
        answers: Vec<AnswerRule>,
    },
    /// `type FROM TO`
    Type(RecordType, RecordType),
    /// `class FROM TO`
    Class(DNSClass, DNSClass),
    /// `ttl [MATCH] NAME TTL|MIN-MAX`: answer TTLs clamped for matching names.
    Ttl(NameMatch, u32, u32),
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

fn go_to_rust_template(to: &str) -> String {
    // CoreDNS writes groups as {1}; the regex crate as ${1}.
    let mut out = String::new();
    let mut rest = to;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        match rest[i + 1..].find('}') {
            Some(j) if rest[i + 1..i + 1 + j].chars().all(|c| c.is_ascii_digit()) && j > 0 => {
                out.push_str(&format!("${{{}}}", &rest[i + 1..i + 1 + j]));
                rest = &rest[i + j + 2..];
            }
            _ => {
                out.push('{');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// For `name regex FROM TO answer auto`: a regex matching what TO produces, and a replacement
/// that rebuilds what FROM matched. Works for patterns whose parts outside groups are literal
/// (e.g. `(.*)-(us-west-1)\.example\.org` → `{1}.service.{2}.consul`).
fn reverse_regex(from: &str, to: &str) -> Result<(String, String), String> {
    // TO: literal text and {N} group references.
    let mut re = String::from("^");
    let mut refs: Vec<usize> = Vec::new();
    let mut rest = to;
    while let Some(i) = rest.find('{') {
        re.push_str(&regex::escape(&rest[..i]));
        let j = rest[i..]
            .find('}')
            .ok_or("answer auto: unbalanced { in the replacement")?;
        let n: usize = rest[i + 1..i + j]
            .parse()
            .map_err(|_| "answer auto: only {N} groups can be reversed".to_string())?;
        refs.push(n);
        re.push_str("(.+?)");
        rest = &rest[i + j + 1..];
    }
    re.push_str(&regex::escape(rest.trim_end_matches('.')));
    re.push_str("\\.?$");
    // FROM: literal text (with escapes) and capture groups, which become ${k}.
    let body = from.trim_start_matches('^').trim_end_matches('$');
    let (mut back, mut group, mut chars) = (String::new(), 0usize, body.chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '\\' => back.push(
                chars
                    .next()
                    .ok_or("answer auto: trailing \\ in the pattern")?,
            ),
            '(' => {
                group += 1;
                let mut depth = 1;
                for c in chars.by_ref() {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        break;
                    }
                }
                let k = refs.iter().position(|n| *n == group).ok_or_else(|| {
                    format!("answer auto: group {group} is not used in the replacement")
                })?;
                back.push_str(&format!("${{{}}}", k + 1));
            }
            '.' | '*' | '+' | '?' | '[' | ']' | '|' | '{' | '}' => {
                return Err(format!(
                    "answer auto cannot reverse \"{from}\": use answer name FROM TO"
                ));
            }
            c => back.push(c),
        }
    }
    Ok((re, back))
}

fn name_match(d: &Dispenser<'_>, kind: &str, v: &str) -> Result<NameMatch, Error> {
    Ok(match kind {
        "exact" => NameMatch::Exact(fqdn(&v.to_ascii_lowercase())),
        "prefix" => NameMatch::Prefix(v.to_ascii_lowercase()),
        "suffix" => NameMatch::Suffix(v.to_ascii_lowercase()),
        "substring" => NameMatch::Substring(v.to_ascii_lowercase()),
        "regex" => {
            if v.len() > 10_000 {
                return Err(d.err("regex pattern too long"));
            }
            NameMatch::Regex(
                Regex::new(v).map_err(|e| {
                    d.err(format!("invalid regex pattern in a name rule: {v}: {e}"))
                })?,
            )
        }
        other => return Err(d.err(format!("invalid match type {other}"))),
    })
}

const MATCH_TYPES: &[&str] = &["exact", "prefix", "suffix", "substring", "regex"];

fn parse_rule(d: &Dispenser<'_>, args: &[String]) -> Result<RewriteRule, Error> {
    let (cont, args) = match args.first().map(String::as_str) {
        Some("continue") => (true, &args[1..]),
        Some("stop") => (false, &args[1..]),
        _ => (false, args),
    };
    let Some((field, rest)) = args.split_first() else {
        return Err(d.arg_err());
    };
    let rule = match field.as_str() {
        "name" => {
            let (kind, rest) = match rest.first() {
                Some(k) if MATCH_TYPES.contains(&k.as_str()) => (k.as_str(), &rest[1..]),
                _ => ("exact", rest),
            };
            let [from, to, tail @ ..] = rest else {
                return Err(d.arg_err());
            };
            let from_m = name_match(d, kind, from)?;
            let to = match kind {
                "exact" => fqdn(&to.to_ascii_lowercase()),
                "regex" => go_to_rust_template(to),
                _ => to.to_ascii_lowercase(),
            };
            let mut auto = matches!(kind, "exact");
            let mut answers = Vec::new();
            let mut it = tail.iter();
            while let Some(w) = it.next() {
                if w != "answer" {
                    return Err(d.err(format!("unexpected argument '{w}' in a name rule")));
                }
                match it.next().map(String::as_str) {
                    Some("auto") => auto = true,
                    Some(which @ ("name" | "value")) => {
                        let (Some(f), Some(t)) = (it.next(), it.next()) else {
                            return Err(d.arg_err());
                        };
                        answers.push(AnswerRule {
                            re: Regex::new(f).map_err(|e| {
                                d.err(format!("invalid regex pattern in an answer rule: {f}: {e}"))
                            })?,
                            to: go_to_rust_template(t),
                            values: which == "value",
                        });
                    }
                    _ => return Err(d.err("answer must be followed by auto, name or value")),
                }
            }
            if kind == "regex" && auto {
                // Derive the way back from the two patterns (CoreDNS's `answer auto`).
                let (re, back) = reverse_regex(from, rest[1].as_str()).map_err(|e| d.err(e))?;
                let re = Regex::new(&re).map_err(|e| d.err(format!("answer auto: {e}")))?;
                for values in [false, true] {
                    answers.push(AnswerRule {
                        re: re.clone(),
                        to: back.clone(),
                        values,
                    });
                }
                auto = false;
            }
            Rule::Name {
                from: from_m,
                to,
                auto,
                answers,
            }
        }
        "type" => {
            let [f, t] = rest else {
                return Err(d.arg_err());
            };
            let p = |s: &str| {
                s.to_ascii_uppercase()
                    .parse::<RecordType>()
                    .map_err(|_| d.err(format!("invalid type {s}")))
            };
            Rule::Type(p(f)?, p(t)?)
        }
        "class" => {
            let [f, t] = rest else {
                return Err(d.arg_err());
            };
            let p = |s: &str| {
                s.to_ascii_uppercase()
                    .parse::<DNSClass>()
                    .map_err(|_| d.err(format!("invalid class {s}")))
            };
            Rule::Class(p(f)?, p(t)?)
        }
        "ttl" => {
            let (kind, rest) = match rest.first() {
                Some(k) if MATCH_TYPES.contains(&k.as_str()) => (k.as_str(), &rest[1..]),
                _ => ("exact", rest),
            };
            let [n, ttl] = rest else {
                return Err(d.arg_err());
            };
            let bad = || d.err(format!("invalid TTL '{ttl}'"));
            let (lo, hi) = match ttl.split_once('-') {
                None => {
                    let v: u32 = ttl.parse().map_err(|_| bad())?;
                    (v, v)
                }
                Some((a, b)) => (
                    if a.is_empty() {
                        0
                    } else {
                        a.parse().map_err(|_| bad())?
                    },
                    if b.is_empty() {
                        u32::MAX
                    } else {
                        b.parse().map_err(|_| bad())?
                    },
                ),
            };
            if lo > hi {
                return Err(bad());
            }
            Rule::Ttl(name_match(d, kind, n)?, lo, hi)
        }
        other @ ("edns0" | "cname" | "rcode") => {
            return Err(d.err(format!("rewrite {other} is not built yet in clusterdns")));
        }
        other => return Err(d.err(format!("invalid rule type \"{other}\""))),
    };
    Ok(RewriteRule { cont, rule })
}

/// Parses every `rewrite` line of a block, in order.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Vec<RewriteRule>, Error> {
    let mut out = Vec::new();
    while d.next() {
        let args = d.remaining_args();
        if args.is_empty() || (args.len() == 1 && matches!(args[0].as_str(), "continue" | "stop")) {
            // Block form: `rewrite [continue|stop] { name … ; answer … }`.
            let mode = args.first().cloned();
            let mut lines: Vec<String> = Vec::new();
            while d.next_block() {
                let mut l = vec![d.val().to_string()];
                l.extend(d.remaining_args());
                lines.push(l.join(" "));
            }
            let Some((first, rest)) = lines.split_first() else {
                return Err(d.arg_err());
            };
            let mut words: Vec<String> = mode.into_iter().collect();
            words.extend(first.split_whitespace().map(String::from));
            for r in rest {
                words.extend(r.split_whitespace().map(String::from));
            }
            out.push(parse_rule(d, &words)?);
            continue;
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

    fn apply(&self, name: &str, to: &str) -> Option<String> {
        Some(match self {
            Self::Exact(s) => (name == s).then(|| to.to_string())?,
            Self::Prefix(s) => format!("{to}{}", name.strip_prefix(s.as_str())?),
            Self::Suffix(s) => format!("{}{to}", name.strip_suffix(s.as_str())?),
            Self::Substring(s) => name
                .contains(s.as_str())
                .then(|| name.replacen(s.as_str(), to, 1))?,
            Self::Regex(r) => {
                let caps = r.captures(name)?;
                let mut out = String::new();
                caps.expand(to, &mut out);
                fqdn(&out)
            }
        })
    }

    /// The inverse for `answer auto` (not for regex rules).
    fn revert(&self, name: &str, to: &str) -> Option<String> {
        match self {
            Self::Exact(s) => (name == to).then(|| s.clone()),
            Self::Prefix(s) => Some(format!("{s}{}", name.strip_prefix(to)?)),
            Self::Suffix(s) => Some(format!("{}{s}", name.strip_suffix(to)?)),
            Self::Substring(s) => name.contains(to).then(|| name.replacen(to, s, 1)),
            Self::Regex(_) => None,
        }
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

/// Rewrites a record's owner name with `f`.
fn rename_owner(r: &mut Record, f: &dyn Fn(&str) -> Option<String>) -> Result<(), HandlerError> {
    if let Some(n) = f(&lower_fqdn(&r.name)).map(|n| fqdn(&n)) {
        r.name = Name::from_ascii(&n).map_err(|_| name_err(&n))?;
    }
    Ok(())
}

/// Rewrites the domain name in a record's data (CNAME, PTR, NS, SRV, MX) with `f`.
fn rename_value(r: &mut Record, f: &dyn Fn(&str) -> Option<String>) -> Result<(), HandlerError> {
    let target = match &mut r.data {
        RData::CNAME(c) => &mut c.0,
        RData::PTR(p) => &mut p.0,
        RData::NS(n) => &mut n.0,
        RData::SRV(s) => &mut s.target,
        RData::MX(m) => &mut m.exchange,
        _ => return Ok(()),
    };
    if let Some(n) = f(&lower_fqdn(target)).map(|n| fqdn(&n)) {
        *target = Name::from_ascii(&n).map_err(|_| name_err(&n))?;
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
        for r in &self.rules {
            let hit = match &r.rule {
                Rule::Name { from, to, .. } => {
                    let cur = lower_fqdn(new.qname());
                    match from.apply(&cur, to) {
                        Some(n) => {
                            let name = Name::from_ascii(&n).map_err(|_| name_err(&n))?;
                            new.set_qname(name);
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
                Rule::Ttl(m, ..) => m.matches(&lower_fqdn(new.qname())),
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
            return next.run(req).await;
        }
        let mut resp = next.run(&new).await?;
        let msg = &mut resp.msg;
        for r in applied.iter().rev() {
            match &r.rule {
                Rule::Name {
                    from,
                    to,
                    auto,
                    answers,
                } => {
                    for rec in msg.answers.iter_mut() {
                        if *auto {
                            let undo = |n: &str| from.revert(n, to);
                            rename_owner(rec, &undo)?;
                            if !matches!(from, NameMatch::Exact(_)) {
                                rename_value(rec, &undo)?;
                            }
                        }
                        for a in answers {
                            let f = |n: &str| {
                                a.re.is_match(n)
                                    .then(|| a.re.replace(n, a.to.as_str()).into_owned())
                            };
                            if a.values {
                                rename_value(rec, &f)?;
                            } else {
                                rename_owner(rec, &f)?;
                            }
                        }
                    }
                }
                Rule::Ttl(m, lo, hi) => {
                    for rec in msg.answers.iter_mut() {
                        if m.matches(&lower_fqdn(&rec.name)) {
                            rec.ttl = rec.ttl.clamp(*lo, *hi);
                        }
                    }
                }
                Rule::Type(..) | Rule::Class(..) => {}
            }
        }
        Ok(resp)
    }
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
        assert_eq!(
            got[0],
            "foo.example.com. 300 www.foo.default.svc.cluster.local."
        );
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
        let (re, back) =
            reverse_regex("(.*)-(us-west-1)\\.example\\.org", "{1}.service.{2}.consul").unwrap();
        assert_eq!(back, "${1}-${2}.example.org");
        assert!(
            Regex::new(&re)
                .unwrap()
                .is_match("foo.service.us-west-1.consul.")
        );
        assert!(reverse_regex("a.*b(.*)", "{1}").is_err());
    }

    #[test]
    fn setup_errors() {
        for (bad, want) in [
            ("rewrite", "Wrong argument count"),
            ("rewrite bogus a b", "invalid rule type \"bogus\""),
            ("rewrite name regex ( x", "invalid regex pattern"),
            (
                "rewrite name exact a b answer bogus",
                "answer must be followed by",
            ),
            ("rewrite ttl a 9-1", "invalid TTL"),
            (
                "rewrite edns0 local set 0xffee abcd",
                "rewrite edns0 is not built yet",
            ),
        ] {
            let toks = lex(&StdArc::from("Corefile"), bad);
            let e = parse(&mut Dispenser::new(&toks)).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
