//! The part of Go's `text/template` that template's records are written in: text and
//! `{{ … }}` actions with `{{-`/`-}}` trimming and `{{/* comments */}}`; pipelines (`|`) of
//! fields (`.Name`, `.Group.a`, `.Var.x`), the `.Meta "LABEL"` method, literals, parenthesized
//! pipelines and the functions `and or not len index eq ne lt le gt ge print println printf`
//! plus CoreDNS's `parseInt` (strconv.ParseUint); `if`/`else if`/`else`/`end` and `with`.
//!
//! As Go, a call of an undefined function and a malformed action are errors when the template
//! is parsed; a bad index, a wrong argument count or a failed `parseInt` when it is executed.

use std::fmt::Write as _;

/// A value in a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TV {
    /// string
    Str(String),
    /// int
    Int(i64),
    /// uint64 (what parseInt returns)
    Uint(u64),
    /// bool
    Bool(bool),
    /// slice
    List(Vec<TV>),
    /// map: entries, and the value of a missing key (`""` for map[string]string, nil for
    /// map[string]any)
    Map(Vec<(String, TV)>, Box<TV>),
    /// struct: type name, fields
    Struct(&'static str, Vec<(&'static str, TV)>),
    /// nil (printed `<no value>`)
    Nil,
    /// the template's data (`.`)
    Root,
}

impl std::fmt::Display for TV {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Int(n) => write!(f, "{n}"),
            Self::Uint(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Nil => f.write_str("<no value>"),
            Self::Root => f.write_str("{…}"),
            Self::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Self::Map(m, _) => {
                let mut m: Vec<_> = m.iter().collect();
                m.sort_by(|a, b| a.0.cmp(&b.0));
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
            Self::Struct(_, fields) => {
                f.write_str("{")?;
                for (i, (_, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

impl TV {
    fn truth(&self) -> bool {
        match self {
            Self::Str(s) => !s.is_empty(),
            Self::Int(n) => *n != 0,
            Self::Uint(n) => *n != 0,
            Self::Bool(b) => *b,
            Self::List(l) => !l.is_empty(),
            Self::Map(m, _) => !m.is_empty(),
            Self::Struct(..) | Self::Root => true,
            Self::Nil => false,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "string",
            Self::Int(_) => "int",
            Self::Uint(_) => "uint64",
            Self::Bool(_) => "bool",
            Self::List(_) => "slice",
            Self::Map(..) => "map",
            Self::Struct(n, _) => n,
            Self::Nil => "nil",
            Self::Root => "*template.templateData",
        }
    }
}

/// What a template reads: the fields of its data and the `.Meta` method.
pub trait Data {
    /// Field `name` of the data (`None`: no such field).
    fn field(&self, name: &str) -> Option<TV>;
    /// `.Meta LABEL`.
    fn meta(&self, label: &str) -> String;
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Dot,
    Field(Vec<String>),
    Func(String),
    Lit(TV),
    Sub(Pipe),
}

#[derive(Debug, Clone, PartialEq)]
struct Cmd(Vec<Arg>);

#[derive(Debug, Clone, PartialEq)]
struct Pipe {
    cmds: Vec<Cmd>,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

const FUNCS: &[&str] = &[
    "and", "or", "not", "len", "index", "eq", "ne", "lt", "le", "gt", "ge", "print", "println",
    "printf", "parseInt",
];
const GO_ONLY: &[&str] = &["slice", "html", "js", "urlquery", "call"];

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Field(Vec<String>),
    Dot,
    Lit(TV),
    Open,
    Close,
    Bar,
}

fn unquote(s: &str) -> Result<(String, usize), String> {
    // `s` starts at the opening quote.
    let b = s.as_bytes();
    let q = b[0];
    let mut out = String::new();
    let mut i = 1;
    while i < b.len() {
        let c = b[i];
        if c == q {
            return Ok((out, i + 1));
        }
        if c == b'\\' && q == b'"' {
            let e = *b.get(i + 1).ok_or("unterminated quoted string")?;
            out.push(match e {
                b'n' => '\n',
                b't' => '\t',
                b'r' => '\r',
                b'\\' => '\\',
                b'"' => '"',
                b'\'' => '\'',
                other => return Err(format!("invalid syntax: \\{}", other as char)),
            });
            i += 2;
            continue;
        }
        let len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + len]);
        i += len;
    }
    Err("unterminated quoted string".into())
}

fn lex_action(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Tok::Open);
                i += 1;
            }
            b')' => {
                out.push(Tok::Close);
                i += 1;
            }
            b'|' => {
                out.push(Tok::Bar);
                i += 1;
            }
            b'"' | b'`' => {
                let (text, n) = unquote(&s[i..])?;
                out.push(Tok::Lit(TV::Str(text)));
                i += n;
            }
            b'.' => {
                let j = i
                    + 1
                    + b[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'.')
                        .count();
                let text = &s[i..j];
                if text == "." {
                    out.push(Tok::Dot);
                } else {
                    let parts: Vec<String> = text[1..].split('.').map(str::to_string).collect();
                    if parts.iter().any(String::is_empty) {
                        return Err(format!("bad field {text}"));
                    }
                    out.push(Tok::Field(parts));
                }
                i = j;
            }
            b'-' | b'0'..=b'9' => {
                let j = i
                    + 1
                    + b[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                        .count();
                let text = &s[i..j];
                let n: i64 = text
                    .parse()
                    .map_err(|_| format!("bad number syntax: \"{text}\""))?;
                out.push(Tok::Lit(TV::Int(n)));
                i = j;
            }
            b'$' => {
                return Err("template variables ($) are not supported by clusterdns".into());
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let j = i + b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                let w = &s[i..j];
                out.push(match w {
                    "true" => Tok::Lit(TV::Bool(true)),
                    "false" => Tok::Lit(TV::Bool(false)),
                    "nil" => Tok::Lit(TV::Nil),
                    _ => Tok::Word(w.to_string()),
                });
                i = j;
            }
            other => {
                return Err(format!("unexpected \"{}\" in command", other as char));
            }
        }
    }
    Ok(out)
}

fn parse_pipe(toks: &[Tok], text: &str) -> Result<Pipe, String> {
    let mut pos = 0;
    let p = pipe(toks, &mut pos, text)?;
    if pos != toks.len() {
        return Err("unexpected \")\" in operand".into());
    }
    Ok(p)
}

fn pipe(toks: &[Tok], pos: &mut usize, text: &str) -> Result<Pipe, String> {
    let mut cmds = Vec::new();
    let mut cur = Vec::new();
    while let Some(t) = toks.get(*pos) {
        match t {
            Tok::Close => break,
            Tok::Bar => {
                if cur.is_empty() {
                    return Err("missing command".into());
                }
                cmds.push(Cmd(std::mem::take(&mut cur)));
                *pos += 1;
                continue;
            }
            Tok::Open => {
                *pos += 1;
                let sub = pipe(toks, pos, text)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err("unclosed left paren".into());
                }
                if sub.cmds.is_empty() {
                    return Err("missing value for parenthesized pipeline".into());
                }
                cur.push(Arg::Sub(sub));
            }
            Tok::Dot => cur.push(Arg::Dot),
            Tok::Field(f) => cur.push(Arg::Field(f.clone())),
            Tok::Lit(v) => cur.push(Arg::Lit(v.clone())),
            Tok::Word(w) => {
                if GO_ONLY.contains(&w.as_str()) {
                    return Err(format!(
                        "function \"{w}\" is not supported by clusterdns's templates"
                    ));
                }
                if !FUNCS.contains(&w.as_str()) {
                    return Err(format!("function \"{w}\" not defined"));
                }
                cur.push(Arg::Func(w.clone()));
            }
        }
        *pos += 1;
    }
    if !cur.is_empty() {
        cmds.push(Cmd(cur));
    } else if !cmds.is_empty() {
        return Err("missing command".into());
    }
    Ok(Pipe {
        cmds,
        text: text.to_string(),
    })
}

enum Item {
    Text(String),
    Action(String),
}

fn items(text: &str) -> Result<Vec<Item>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut before = &rest[..open];
        if trim_next {
            before = before.trim_start();
        }
        let after = &rest[open + 2..];
        let (trim_left, body_start) = match after.strip_prefix('-') {
            Some(r) if r.starts_with([' ', '\t', '\n', '\r']) => (true, 1),
            _ => (false, 0),
        };
        if trim_left {
            before = before.trim_end();
        }
        out.push(Item::Text(before.to_string()));
        // Find the closing braces outside quotes.
        let body = &after[body_start..];
        let b = body.as_bytes();
        let mut i = 0;
        let mut end = None;
        while i < b.len() {
            match b[i] {
                b'"' | b'`' => {
                    let (_, n) = unquote(&body[i..])?;
                    i += n;
                }
                b'}' if b.get(i + 1) == Some(&b'}') => {
                    end = Some(i);
                    break;
                }
                _ => i += 1,
            }
        }
        let end = end.ok_or("unclosed action")?;
        let mut action = &body[..end];
        trim_next = false;
        if let Some(a) = action.strip_suffix('-') {
            if a.ends_with([' ', '\t', '\n', '\r']) {
                action = a;
                trim_next = true;
            }
        }
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            out.push(Item::Action(action.to_string()));
        }
        rest = &body[end + 2..];
    }
    let rest = if trim_next { rest.trim_start() } else { rest };
    out.push(Item::Text(rest.to_string()));
    Ok(out)
}

/// Parses a list until `else`/`end` (returned as the stopper).
fn list(items: &[Item], pos: &mut usize) -> Result<(Vec<Node>, Option<String>), String> {
    let mut nodes = Vec::new();
    while let Some(it) = items.get(*pos) {
        *pos += 1;
        match it {
            Item::Text(t) => {
                if !t.is_empty() {
                    nodes.push(Node::Text(t.clone()));
                }
            }
            Item::Action(a) => {
                let toks = lex_action(a)?;
                match toks.first() {
                    None => return Err("missing value for command".into()),
                    Some(Tok::Word(w)) if w == "end" => {
                        if toks.len() > 1 {
                            return Err("unexpected token in end".into());
                        }
                        return Ok((nodes, Some("end".into())));
                    }
                    Some(Tok::Word(w)) if w == "else" => {
                        return Ok((nodes, Some(a.clone())));
                    }
                    Some(Tok::Word(w)) if w == "if" || w == "with" => {
                        let p = parse_pipe(&toks[1..], a)?;
                        if p.cmds.is_empty() {
                            return Err(format!("missing value for {w}"));
                        }
                        nodes.push(branch(w == "if", p, items, pos)?);
                    }
                    Some(Tok::Word(w))
                        if matches!(
                            w.as_str(),
                            "range" | "define" | "template" | "block" | "break" | "continue"
                        ) =>
                    {
                        return Err(format!(
                            "{{{{ {w} }}}} is not supported by clusterdns's templates"
                        ));
                    }
                    _ => nodes.push(Node::Action(parse_pipe(&toks, a)?)),
                }
            }
        }
    }
    Ok((nodes, None))
}

fn branch(is_if: bool, p: Pipe, items: &[Item], pos: &mut usize) -> Result<Node, String> {
    let (then, stop) = list(items, pos)?;
    let els = match stop.as_deref() {
        None => return Err("unexpected EOF".into()),
        Some("end") => Vec::new(),
        Some(e) => {
            let toks = lex_action(e)?;
            if toks.len() == 1 {
                let (els, stop) = list(items, pos)?;
                if stop.as_deref() != Some("end") {
                    return Err("expected end; found else or EOF".into());
                }
                els
            } else {
                // `else if PIPE` / `else with PIPE`: a nested branch sharing the `end`.
                let kind = match &toks[1] {
                    Tok::Word(w) if w == "if" || w == "with" => w.clone(),
                    _ => return Err("unexpected token after else".into()),
                };
                let p = parse_pipe(&toks[2..], e)?;
                vec![branch(kind == "if", p, items, pos)?]
            }
        }
    };
    Ok(if is_if {
        Node::If(p, then, els)
    } else {
        Node::With(p, then, els)
    })
}

impl Template {
    /// Parses `text`; `name` is used in errors (`answer`, `additional`, `authority`).
    pub fn parse(name: &str, text: &str) -> Result<Self, String> {
        let its = items(text).map_err(|e| format!("template: {name}: {e}"))?;
        let mut pos = 0;
        let (nodes, stop) = list(&its, &mut pos).map_err(|e| format!("template: {name}: {e}"))?;
        if let Some(s) = stop {
            return Err(format!("template: {name}: unexpected {{{{{s}}}}}"));
        }
        Ok(Self {
            name: name.to_string(),
            nodes,
        })
    }

    /// Renders with `data`.
    pub fn execute(&self, data: &dyn Data) -> Result<String, String> {
        let mut out = String::new();
        let ex = Exec { data };
        ex.walk(&self.nodes, &TV::Root, &mut out)
            .map_err(|(at, e)| {
                format!(
                    "template: {}: executing \"{}\" at <{at}>: {e}",
                    self.name, self.name
                )
            })?;
        Ok(out)
    }
}

struct Exec<'a> {
    data: &'a dyn Data,
}

type Err = (String, String);

impl Exec<'_> {
    fn walk(&self, nodes: &[Node], dot: &TV, out: &mut String) -> Result<(), Err> {
        for n in nodes {
            match n {
                Node::Text(t) => out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    let _ = write!(out, "{v}");
                }
                Node::If(p, then, els) => {
                    if self.pipe(p, dot)?.truth() {
                        self.walk(then, dot, out)?;
                    } else {
                        self.walk(els, dot, out)?;
                    }
                }
                Node::With(p, then, els) => {
                    let v = self.pipe(p, dot)?;
                    if v.truth() {
                        self.walk(then, &v, out)?;
                    } else {
                        self.walk(els, dot, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn pipe(&self, p: &Pipe, dot: &TV) -> Result<TV, Err> {
        let at = |e: String| (p.text.clone(), e);
        let mut last: Option<TV> = None;
        for c in &p.cmds {
            last = Some(self.cmd(c, dot, last.take()).map_err(at)?);
        }
        Ok(last.unwrap_or(TV::Nil))
    }

    fn fields(&self, base: TV, chain: &[String]) -> Result<TV, String> {
        let mut v = base;
        for f in chain {
            v = match v {
                TV::Root => self.data.field(f).ok_or_else(|| {
                    format!("can't evaluate field {f} in type *template.templateData")
                })?,
                TV::Map(entries, zero) => entries
                    .into_iter()
                    .find(|(k, _)| k == f)
                    .map_or(*zero, |(_, v)| v),
                TV::Struct(name, fields) => fields
                    .into_iter()
                    .find(|(k, _)| k == f)
                    .map(|(_, v)| v)
                    .ok_or_else(|| format!("can't evaluate field {f} in type {name}"))?,
                TV::Nil => return Err(format!("nil pointer evaluating interface {{}}.{f}")),
                other => {
                    return Err(format!("can't evaluate field {f} in type {}", other.kind()));
                }
            };
        }
        Ok(v)
    }

    fn arg(&self, a: &Arg, dot: &TV) -> Result<TV, String> {
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(chain) => {
                if matches!(dot, TV::Root) && chain.len() == 1 && chain[0] == "Meta" {
                    return Err("wrong number of args for Meta: want 1 got 0".into());
                }
                self.fields(dot.clone(), chain)
            }
            Arg::Func(f) => call(f, Vec::new()),
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Sub(p) => self.pipe(p, dot).map_err(|(_, e)| e),
        }
    }

    fn cmd(&self, c: &Cmd, dot: &TV, piped: Option<TV>) -> Result<TV, String> {
        let (first, rest) = c.0.split_first().ok_or("empty command")?;
        let mut args = rest
            .iter()
            .map(|a| self.arg(a, dot))
            .collect::<Result<Vec<_>, _>>()?;
        args.extend(piped);
        match first {
            Arg::Func(f) => call(f, args),
            Arg::Field(chain)
                if matches!(dot, TV::Root) && chain.len() == 1 && chain[0] == "Meta" =>
            {
                match args.as_slice() {
                    [TV::Str(label)] => Ok(TV::Str(self.data.meta(label))),
                    [other] => Err(format!(
                        "wrong type for value; expected string; got {}",
                        other.kind()
                    )),
                    _ => Err(format!(
                        "wrong number of args for Meta: want 1 got {}",
                        args.len()
                    )),
                }
            }
            other => {
                if !args.is_empty() {
                    return Err(match other {
                        Arg::Field(f) => format!(
                            "{} has arguments but cannot be invoked as function",
                            f.join(".")
                        ),
                        _ => "can't give argument to non-function".into(),
                    });
                }
                self.arg(other, dot)
            }
        }
    }
}

fn number(v: &TV) -> Option<i128> {
    match v {
        TV::Int(n) => Some(i128::from(*n)),
        TV::Uint(n) => Some(i128::from(*n)),
        _ => None,
    }
}

fn compare(a: &TV, b: &TV) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (TV::Str(x), TV::Str(y)) => Ok(x.cmp(y)),
        (TV::Bool(x), TV::Bool(y)) => Ok(x.cmp(y)),
        _ => match (number(a), number(b)) {
            (Some(x), Some(y)) => Ok(x.cmp(&y)),
            _ => Err("incompatible types for comparison".into()),
        },
    }
}

fn sprint(args: &[TV], spaces_always: bool) -> String {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = |v: &TV| matches!(v, TV::Str(_));
        if i > 0 && (spaces_always || !(is_str(a) || is_str(&args[i - 1]))) {
            out.push(' ');
        }
        let _ = write!(out, "{a}");
    }
    out
}

fn sprintf(format: &str, args: &[TV]) -> String {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut zero = false;
        let mut left = false;
        while let Some(&f) = chars.peek() {
            match f {
                '0' => zero = true,
                '-' => left = true,
                _ => break,
            }
            chars.next();
        }
        let mut width = 0usize;
        while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
            width = width * 10 + d as usize;
            chars.next();
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(a) = args.next() else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        let s = match (verb, a) {
            ('x', v) if number(v).is_some() => format!("{:x}", number(v).unwrap_or_default()),
            ('X', v) if number(v).is_some() => format!("{:X}", number(v).unwrap_or_default()),
            ('o', v) if number(v).is_some() => format!("{:o}", number(v).unwrap_or_default()),
            ('x', TV::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('q', TV::Str(s)) => format!("{s:?}"),
            ('d' | 's' | 'v', v) => v.to_string(),
            (_, v) => format!("%!{verb}({}={v})", v.kind()),
        };
        let pad = width.saturating_sub(s.chars().count());
        if left {
            out.push_str(&s);
            out.extend(std::iter::repeat_n(' ', pad));
        } else {
            out.extend(std::iter::repeat_n(if zero { '0' } else { ' ' }, pad));
            out.push_str(&s);
        }
    }
    for extra in args {
        let _ = write!(out, "%!(EXTRA {}={extra})", extra.kind());
    }
    out
}

/// strconv.ParseUint(s, base, bitSize).
fn parse_uint(s: &str, base: i64, bits: i64) -> Result<u64, String> {
    let err = |what: &str| format!("strconv.ParseUint: parsing {s:?}: {what}");
    if s.is_empty() {
        return Err(err("invalid syntax"));
    }
    let (digits, base) = if base == 0 {
        let lower = s.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("0x") {
            (r.to_string(), 16)
        } else if let Some(r) = lower.strip_prefix("0b") {
            (r.to_string(), 2)
        } else if let Some(r) = lower.strip_prefix("0o") {
            (r.to_string(), 8)
        } else if lower.len() > 1 && lower.starts_with('0') {
            (lower[1..].to_string(), 8)
        } else {
            (lower, 10)
        }
    } else if (2..=36).contains(&base) {
        (s.to_string(), base as u32)
    } else {
        return Err(format!(
            "strconv.ParseUint: parsing {s:?}: invalid base {base}"
        ));
    };
    let bits = if bits == 0 { 64 } else { bits };
    if !(1..=64).contains(&bits) {
        return Err(format!(
            "strconv.ParseUint: parsing {s:?}: invalid bit size {bits}"
        ));
    }
    let digits = digits.replace('_', "");
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(err("invalid syntax"));
    }
    let n = u64::from_str_radix(&digits, base).map_err(|_| err("value out of range"))?;
    if bits < 64 && n >> bits != 0 {
        return Err(err("value out of range"));
    }
    Ok(n)
}

fn call(f: &str, args: Vec<TV>) -> Result<TV, String> {
    let want = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {f}: want {n} got {}",
                args.len()
            ))
        }
    };
    let at_least = |n: usize| -> Result<(), String> {
        if args.len() >= n {
            Ok(())
        } else {
            Err(format!(
                "wrong number of args for {f}: want at least {n} got {}",
                args.len()
            ))
        }
    };
    let r = match f {
        "and" => {
            at_least(1)?;
            args.iter()
                .find(|a| !a.truth())
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "or" => {
            at_least(1)?;
            args.iter()
                .find(|a| a.truth())
                .unwrap_or(&args[args.len() - 1])
                .clone()
        }
        "not" => {
            want(1)?;
            TV::Bool(!args[0].truth())
        }
        "len" => {
            want(1)?;
            TV::Int(match &args[0] {
                TV::Str(s) => s.len() as i64,
                TV::List(l) => l.len() as i64,
                TV::Map(m, _) => m.len() as i64,
                other => return Err(format!("error calling len: len of type {}", other.kind())),
            })
        }
        "index" => {
            at_least(1)?;
            let mut v = args[0].clone();
            for i in &args[1..] {
                v = match (v, i) {
                    (TV::List(l), i) => {
                        let n = number(i).ok_or(
                            "error calling index: cannot index slice/array with non-integer",
                        )?;
                        usize::try_from(n)
                            .ok()
                            .and_then(|n| l.get(n).cloned())
                            .ok_or_else(|| {
                                format!("error calling index: index out of range: {n}")
                            })?
                    }
                    (TV::Str(s), i) => {
                        let n = number(i)
                            .ok_or("error calling index: cannot index string with non-integer")?;
                        let b = usize::try_from(n)
                            .ok()
                            .and_then(|n| s.as_bytes().get(n).copied())
                            .ok_or_else(|| {
                                format!("error calling index: index out of range: {n}")
                            })?;
                        TV::Uint(u64::from(b))
                    }
                    (TV::Map(m, zero), TV::Str(k)) => m
                        .into_iter()
                        .find(|(mk, _)| mk == k)
                        .map_or(*zero, |(_, v)| v),
                    (other, _) => {
                        return Err(format!(
                            "error calling index: can't index item of type {}",
                            other.kind()
                        ));
                    }
                };
            }
            v
        }
        "eq" => {
            at_least(2)?;
            let mut any = false;
            for b in &args[1..] {
                if compare(&args[0], b).map_err(|e| format!("error calling eq: {e}"))?
                    == std::cmp::Ordering::Equal
                {
                    any = true;
                }
            }
            TV::Bool(any)
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let o = compare(&args[0], &args[1]).map_err(|e| format!("error calling {f}: {e}"))?;
            TV::Bool(match f {
                "ne" => o.is_ne(),
                "lt" => o.is_lt(),
                "le" => o.is_le(),
                "gt" => o.is_gt(),
                _ => o.is_ge(),
            })
        }
        "print" => TV::Str(sprint(&args, false)),
        "println" => TV::Str(sprint(&args, true) + "\n"),
        "printf" => {
            at_least(1)?;
            let TV::Str(fmt) = &args[0] else {
                return Err("error calling printf: format is not a string".into());
            };
            TV::Str(sprintf(fmt, &args[1..]))
        }
        "parseInt" => {
            want(3)?;
            let TV::Str(s) = &args[0] else {
                return Err(format!(
                    "wrong type for value; expected string; got {}",
                    args[0].kind()
                ));
            };
            let (Some(base), Some(bits)) = (number(&args[1]), number(&args[2])) else {
                return Err("wrong type for value; expected int".into());
            };
            TV::Uint(
                parse_uint(s, base as i64, bits as i64)
                    .map_err(|e| format!("error calling parseInt: {e}"))?,
            )
        }
        other => return Err(format!("function \"{other}\" not defined")),
    };
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct D;

    impl Data for D {
        fn field(&self, name: &str) -> Option<TV> {
            Some(match name {
                "Name" => TV::Str("ip0a5f0c09.example.".into()),
                "Match" => TV::List(vec![TV::Str("a".into()), TV::Str("b".into())]),
                "Group" => TV::Map(
                    vec![("b".into(), TV::Str("5f".into()))],
                    Box::new(TV::Str(String::new())),
                ),
                "Var" => TV::Map(
                    vec![("local".into(), TV::Bool(true)), ("n".into(), TV::Int(2))],
                    Box::new(TV::Nil),
                ),
                _ => return None,
            })
        }
        fn meta(&self, label: &str) -> String {
            if label == "foo" {
                "myfoo".into()
            } else {
                String::new()
            }
        }
    }

    fn run(t: &str) -> Result<String, String> {
        Template::parse("answer", t)?.execute(&D)
    }

    #[test]
    fn renders() {
        for (t, want) in [
            (
                "{{ .Name }} 60 IN A 10.{{ parseInt .Group.b 16 8 }}",
                "ip0a5f0c09.example. 60 IN A 10.95",
            ),
            ("{{ index .Match 1 }}", "b"),
            ("{{ .Meta \"foo\" }}-{{ .Meta \"bar\" }}x", "myfoo-x"),
            (
                "{{ if .Var.local }}10.0.0.1{{ else }}192.0.2.1{{ end }}",
                "10.0.0.1",
            ),
            (
                "{{ if not .Var.local }}a{{ else if .Var.n }}b{{ else }}c{{ end }}",
                "b",
            ),
            ("{{ len .Var }}", "2"),
            ("{{ eq .Group.missing \"\" }}", "true"),
            ("{{ .Var.missing }}", "<no value>"),
            ("{{ .Group.missing }}|", "|"),
            ("a  {{- \" b \" -}}  c", "a b c"),
            ("{{/* a comment */}}x", "x"),
            ("{{ .Name | printf \"%s!\" }}", "ip0a5f0c09.example.!"),
            ("{{ printf \"%03d\" .Var.n }}", "002"),
            ("{{ with .Group.b }}{{ . }}{{ end }}", "5f"),
            ("{{ \"}}\" }}", "}}"),
        ] {
            assert_eq!(run(t).unwrap(), want, "{t}");
        }
    }

    #[test]
    fn errors() {
        for (t, want) in [
            ("{{", "unclosed action"),
            (
                "{{ notAFunction }}",
                "function \"notAFunction\" not defined",
            ),
            ("{{ if .Name }}x", "unexpected EOF"),
            ("{{ end }}", "unexpected"),
            ("{{ range .Match }}{{ end }}", "not supported by clusterdns"),
        ] {
            let e = Template::parse("answer", t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
        // Parsed, then failing when executed (as Go).
        for (t, want) in [
            (
                "{{ index .Match 2 }}",
                "error calling index: index out of range: 2",
            ),
            (
                "{{ parseInt \"gg\" 16 8 }}",
                "strconv.ParseUint: parsing \"gg\": invalid syntax",
            ),
            ("{{ parseInt \"1ff\" 16 8 }}", "value out of range"),
            (
                "{{ parseInt }}",
                "wrong number of args for parseInt: want 3 got 0",
            ),
            ("{{ .Grup.d }}", "can't evaluate field Grup"),
        ] {
            let e = run(t).unwrap_err();
            assert!(e.contains(want), "{t}: {e}");
        }
    }
}
