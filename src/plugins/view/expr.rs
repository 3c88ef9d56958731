//! The part of the expr-lang language (github.com/expr-lang/expr) that `view` expressions use:
//! CoreDNS's query functions (`name()`, `type()`, `client_ip()`, …) and `incidr()`, string,
//! number, boolean and list literals, `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `not in`,
//! `matches`, `contains`, `startsWith`, `endsWith`, `&&`/`and`, `||`/`or`, `!`/`not` and
//! parentheses. Anything else is refused when the Corefile is loaded, by name.
//!
//! Expressions are type-checked when they are parsed (as expr-lang compiles against CoreDNS's
//! environment), regular expressions and CIDRs of literals are compiled once, and evaluation
//! looks at the request without copying it.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

use crate::plugins::{Proto, Request};

/// A query function of CoreDNS's expression environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Bufsize,
    Class,
    ClientIp,
    Do,
    Id,
    Name,
    Opcode,
    Port,
    Proto,
    ServerIp,
    ServerPort,
    Size,
    Type,
}

impl Func {
    fn by_name(n: &str) -> Option<(Self, Ty)> {
        Some(match n {
            "bufsize" => (Self::Bufsize, Ty::Int),
            "class" => (Self::Class, Ty::Str),
            "client_ip" => (Self::ClientIp, Ty::Str),
            "do" => (Self::Do, Ty::Bool),
            "id" => (Self::Id, Ty::Int),
            "name" => (Self::Name, Ty::Str),
            "opcode" => (Self::Opcode, Ty::Int),
            "port" => (Self::Port, Ty::Str),
            "proto" => (Self::Proto, Ty::Str),
            "server_ip" => (Self::ServerIp, Ty::Str),
            "server_port" => (Self::ServerPort, Ty::Str),
            "size" => (Self::Size, Ty::Int),
            "type" => (Self::Type, Ty::Str),
            _ => return None,
        })
    }
}

/// Static types, checked at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Str,
    Int,
    Bool,
    List,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Self::Str => "string",
            Self::Int => "int",
            Self::Bool => "bool",
            Self::List => "array",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Int(i64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Lit),
    List(Vec<Lit>),
    Call(Func),
    InCidr(Box<Node>, CidrArg),
    Cmp(Cmp, Box<Node>, Box<Node>),
    In(Box<Node>, Vec<Lit>, bool),
    Matches(Box<Node>, Regex),
    Str(StrOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

#[derive(Debug, Clone)]
enum CidrArg {
    /// A literal CIDR, parsed once.
    Net(IpNet),
    /// Anything else: parsed when evaluated (a bad one makes the expression false).
    Expr(Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StrOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// A parsed expression; it evaluates to a boolean.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    root: Node,
}

impl PartialEq for Expr {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

const SUPPORTED: &str = "supported: name() type() class() proto() size() client_ip() port() \
     server_ip() server_port() id() opcode() do() bufsize() incidr(), literals, == != < <= > >= \
     in, not in, matches, contains, startsWith, endsWith, && || ! and or not, ( ) and [ ]";

fn lex(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == '\'' || c == '"' {
            let mut text = String::new();
            let mut j = i + 1;
            loop {
                let Some(&ch) = b.get(j) else {
                    return Err("literal not terminated".into());
                };
                let ch = ch as char;
                if ch == c {
                    break;
                }
                if ch == '\\' {
                    let esc = *b.get(j + 1).ok_or("literal not terminated")? as char;
                    text.push(match esc {
                        '\\' => '\\',
                        '\'' => '\'',
                        '"' => '"',
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => return Err(format!("invalid escape sequence \\{other}")),
                    });
                    j += 2;
                    continue;
                }
                // Multi-byte UTF-8 is copied through byte by byte into a String below.
                let len = s[j..].chars().next().map_or(1, char::len_utf8);
                text.push_str(&s[j..j + len]);
                j += len;
            }
            out.push(Tok::Str(text));
            i = j + 1;
        } else if c.is_ascii_digit() {
            let j = i + b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            let n = s[i..j]
                .parse()
                .map_err(|_| format!("bad number {}", &s[i..j]))?;
            out.push(Tok::Int(n));
            i = j;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let j = i + b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                .count();
            out.push(Tok::Ident(s[i..j].to_string()));
            i = j;
        } else {
            const OPS: &[&str] = &[
                "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ",",
            ];
            match OPS.iter().find(|op| s[i..].starts_with(**op)) {
                Some(op) => {
                    out.push(Tok::Op(op));
                    i += op.len();
                }
                None => {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    return Err(format!(
                        "unsupported operator or character '{ch}' ({SUPPORTED})"
                    ));
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn peek_is(&self, t: &Tok) -> bool {
        self.peek() == Some(t)
    }

    fn ident_is(&self, at: usize, name: &str) -> bool {
        matches!(self.toks.get(at), Some(Tok::Ident(n)) if n == name)
    }

    fn expect(&mut self, t: Tok) -> Result<(), String> {
        if self.peek_is(&t) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {t:?}, found {}", self.found()))
        }
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of expression".into(),
            Some(Tok::Ident(n)) => format!("'{n}'"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Int(n)) => n.to_string(),
            Some(Tok::Op(o)) => format!("'{o}'"),
        }
    }

    fn or(&mut self) -> Result<(Node, Ty), String> {
        let mut left = self.and()?;
        while self.peek_is(&Tok::Op("||")) || self.ident_is(self.pos, "or") {
            self.pos += 1;
            let right = self.and()?;
            left = (
                Node::Or(bool_arg(left, "||")?, bool_arg(right, "||")?),
                Ty::Bool,
            );
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<(Node, Ty), String> {
        let mut left = self.cmp()?;
        while self.peek_is(&Tok::Op("&&")) || self.ident_is(self.pos, "and") {
            self.pos += 1;
            let right = self.cmp()?;
            left = (
                Node::And(bool_arg(left, "&&")?, bool_arg(right, "&&")?),
                Ty::Bool,
            );
        }
        Ok(left)
    }

    fn cmp(&mut self) -> Result<(Node, Ty), String> {
        let left = self.unary()?;
        let op = match self.peek() {
            Some(Tok::Op(o @ ("==" | "!=" | "<" | "<=" | ">" | ">="))) => *o,
            Some(Tok::Ident(n))
                if matches!(
                    n.as_str(),
                    "in" | "matches" | "contains" | "startsWith" | "endsWith"
                ) =>
            {
                match n.as_str() {
                    "in" => "in",
                    "matches" => "matches",
                    "contains" => "contains",
                    "startsWith" => "startsWith",
                    _ => "endsWith",
                }
            }
            Some(Tok::Ident(n)) if n == "not" && self.ident_is(self.pos + 1, "in") => {
                self.pos += 1;
                "not in"
            }
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.unary()?;
        let (l, lt) = left;
        let (r, rt) = right;
        let node = match op {
            "in" | "not in" => {
                let Node::List(items) = r else {
                    return Err(format!(
                        "'{op}' needs a list literal such as ['A', 'AAAA'] on its right"
                    ));
                };
                if let Some(bad) = items.iter().find(|i| lit_ty(i) != lt) {
                    return Err(format!(
                        "mismatched types {} and {} in '{op}'",
                        lt.name(),
                        lit_ty(bad).name()
                    ));
                }
                Node::In(Box::new(l), items, op == "not in")
            }
            "matches" => {
                let Node::Lit(Lit::Str(pattern)) = r else {
                    return Err(
                        "'matches' needs a string literal (the regular expression) on its right"
                            .into(),
                    );
                };
                if lt != Ty::Str {
                    return Err(format!(
                        "'matches' needs a string on its left, not {}",
                        lt.name()
                    ));
                }
                let re = Regex::new(&pattern)
                    .map_err(|e| format!("bad regular expression '{pattern}': {e}"))?;
                Node::Matches(Box::new(l), re)
            }
            "contains" | "startsWith" | "endsWith" => {
                if lt != Ty::Str || rt != Ty::Str {
                    return Err(format!(
                        "'{op}' needs strings, not {} and {}",
                        lt.name(),
                        rt.name()
                    ));
                }
                let f = match op {
                    "contains" => StrOp::Contains,
                    "startsWith" => StrOp::StartsWith,
                    _ => StrOp::EndsWith,
                };
                Node::Str(f, Box::new(l), Box::new(r))
            }
            _ => {
                if lt != rt || lt == Ty::List {
                    return Err(format!(
                        "invalid operation: {} {op} {}",
                        lt.name(),
                        rt.name()
                    ));
                }
                let c = match op {
                    "==" => Cmp::Eq,
                    "!=" => Cmp::Ne,
                    "<" => Cmp::Lt,
                    "<=" => Cmp::Le,
                    ">" => Cmp::Gt,
                    _ => Cmp::Ge,
                };
                if lt == Ty::Bool && !matches!(c, Cmp::Eq | Cmp::Ne) {
                    return Err(format!("invalid operation: bool {op} bool"));
                }
                Node::Cmp(c, Box::new(l), Box::new(r))
            }
        };
        Ok((node, Ty::Bool))
    }

    fn unary(&mut self) -> Result<(Node, Ty), String> {
        if self.peek_is(&Tok::Op("!"))
            || (self.ident_is(self.pos, "not") && !self.ident_is(self.pos + 1, "in"))
        {
            self.pos += 1;
            let inner = self.unary()?;
            return Ok((Node::Not(bool_arg(inner, "!")?), Ty::Bool));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<(Node, Ty), String> {
        let Some(tok) = self.peek().cloned() else {
            return Err("unexpected end of expression".into());
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok((Node::Lit(Lit::Str(s)), Ty::Str)),
            Tok::Int(n) => Ok((Node::Lit(Lit::Int(n)), Ty::Int)),
            Tok::Op("(") => {
                let inner = self.or()?;
                self.expect(Tok::Op(")"))?;
                Ok(inner)
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.peek_is(&Tok::Op("]")) {
                    let item = match self.peek().cloned() {
                        Some(Tok::Str(s)) => Lit::Str(s),
                        Some(Tok::Int(n)) => Lit::Int(n),
                        Some(Tok::Ident(b)) if b == "true" || b == "false" => {
                            Lit::Bool(b == "true")
                        }
                        _ => {
                            return Err(format!(
                                "list items must be literals, found {}",
                                self.found()
                            ));
                        }
                    };
                    self.pos += 1;
                    if let Some(first) = items.first() {
                        if lit_ty(first) != lit_ty(&item) {
                            return Err("list items must all have the same type".into());
                        }
                    }
                    items.push(item);
                    if !self.peek_is(&Tok::Op("]")) {
                        self.expect(Tok::Op(","))?;
                    }
                }
                self.pos += 1;
                Ok((Node::List(items), Ty::List))
            }
            Tok::Ident(n) if n == "true" || n == "false" => {
                Ok((Node::Lit(Lit::Bool(n == "true")), Ty::Bool))
            }
            Tok::Ident(n) => {
                if !self.peek_is(&Tok::Op("(")) {
                    return Err(format!("unknown name '{n}' ({SUPPORTED})"));
                }
                self.pos += 1;
                let mut args = Vec::new();
                while !self.peek_is(&Tok::Op(")")) {
                    args.push(self.or()?);
                    if !self.peek_is(&Tok::Op(")")) {
                        self.expect(Tok::Op(","))?;
                    }
                }
                self.pos += 1;
                if n == "incidr" {
                    let [(ip, ipt), (cidr, cidrt)] = <[(Node, Ty); 2]>::try_from(args)
                        .map_err(|a| format!("incidr() takes 2 arguments, not {}", a.len()))?;
                    if ipt != Ty::Str || cidrt != Ty::Str {
                        return Err("incidr() takes two strings: an address and a CIDR".into());
                    }
                    let cidr = match cidr {
                        Node::Lit(Lit::Str(c)) => CidrArg::Net(
                            c.parse::<IpNet>()
                                .map_err(|_| format!("incidr(): invalid CIDR address: {c}"))?,
                        ),
                        other => CidrArg::Expr(Box::new(other)),
                    };
                    return Ok((Node::InCidr(Box::new(ip), cidr), Ty::Bool));
                }
                if n == "metadata" {
                    return Err("function 'metadata' is not supported in view expressions by clusterdns (views are chosen before metadata is collected)".into());
                }
                let Some((f, ty)) = Func::by_name(&n) else {
                    return Err(format!("unsupported function '{n}' ({SUPPORTED})"));
                };
                if !args.is_empty() {
                    return Err(format!("{n}() takes no arguments"));
                }
                Ok((Node::Call(f), ty))
            }
            Tok::Op(o) => Err(format!("unexpected '{o}'")),
        }
    }
}

fn lit_ty(l: &Lit) -> Ty {
    match l {
        Lit::Str(_) => Ty::Str,
        Lit::Int(_) => Ty::Int,
        Lit::Bool(_) => Ty::Bool,
    }
}

fn bool_arg((n, t): (Node, Ty), op: &str) -> Result<Box<Node>, String> {
    if t != Ty::Bool {
        return Err(format!("'{op}' needs booleans, not {}", t.name()));
    }
    Ok(Box::new(n))
}

impl Expr {
    /// Parses and type-checks `text`; the result must be a boolean.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(text)?,
            pos: 0,
        };
        if p.toks.is_empty() {
            return Err("empty expression".into());
        }
        let (root, ty) = p.or()?;
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {} after the expression", p.found()));
        }
        if ty != Ty::Bool {
            return Err(format!(
                "expression must evaluate to a bool, not {}",
                ty.name()
            ));
        }
        Ok(Self {
            text: text.to_string(),
            root,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `req` passes. An evaluation error (a bad address given to `incidr`) is false,
    /// as in CoreDNS.
    pub fn eval(&self, req: &Request) -> bool {
        matches!(eval(&self.root, req), Some(V::Bool(true)))
    }
}

#[derive(Debug, PartialEq, PartialOrd)]
enum V<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

impl<'a> V<'a> {
    fn of(l: &'a Lit) -> Self {
        match l {
            Lit::Str(s) => V::Str(Cow::Borrowed(s)),
            Lit::Int(n) => V::Int(*n),
            Lit::Bool(b) => V::Bool(*b),
        }
    }
}

fn call(f: Func, req: &Request) -> V<'_> {
    let ip = |a: IpAddr| V::Str(Cow::Owned(a.to_canonical().to_string()));
    match f {
        Func::Bufsize => V::Int(i64::from(req.max_size())),
        Func::Class => V::Str(Cow::Owned(req.qclass().to_string())),
        Func::ClientIp => ip(req.src.ip()),
        Func::Do => V::Bool(req.do_bit()),
        Func::Id => V::Int(i64::from(req.id)),
        Func::Name => V::Str(Cow::Borrowed(req.qname_lower())),
        Func::Opcode => V::Int(i64::from(u8::from(req.op_code))),
        Func::Port => V::Str(Cow::Owned(req.src.port().to_string())),
        Func::Proto => V::Str(Cow::Borrowed(match req.proto {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        })),
        Func::ServerIp => ip(req.local.ip()),
        Func::ServerPort => V::Str(Cow::Owned(req.local.port().to_string())),
        Func::Size => V::Int(req.size as i64),
        Func::Type => V::Str(Cow::Owned(req.qtype().to_string())),
    }
}

fn str_of<'a>(n: &'a Node, req: &'a Request) -> Option<Cow<'a, str>> {
    match eval(n, req)? {
        V::Str(s) => Some(s),
        _ => None,
    }
}

fn eval<'a>(n: &'a Node, req: &'a Request) -> Option<V<'a>> {
    Some(match n {
        Node::Lit(l) => V::of(l),
        Node::List(_) => return None,
        Node::Call(f) => call(*f, req),
        Node::InCidr(ip, cidr) => {
            let addr: IpAddr = match &**ip {
                // No text round trip for the common case.
                Node::Call(Func::ClientIp) => req.src.ip().to_canonical(),
                Node::Call(Func::ServerIp) => req.local.ip().to_canonical(),
                other => str_of(other, req)?.parse().ok()?,
            };
            let net = match cidr {
                CidrArg::Net(n) => *n,
                CidrArg::Expr(e) => str_of(e, req)?.parse().ok()?,
            };
            V::Bool(net.contains(&addr))
        }
        Node::Cmp(c, l, r) => {
            let (l, r) = (eval(l, req)?, eval(r, req)?);
            V::Bool(match c {
                Cmp::Eq => l == r,
                Cmp::Ne => l != r,
                Cmp::Lt => l < r,
                Cmp::Le => l <= r,
                Cmp::Gt => l > r,
                Cmp::Ge => l >= r,
            })
        }
        Node::In(l, items, negate) => {
            let l = eval(l, req)?;
            V::Bool(items.iter().any(|i| V::of(i) == l) != *negate)
        }
        Node::Matches(l, re) => V::Bool(re.is_match(&str_of(l, req)?)),
        Node::Str(op, l, r) => {
            let (l, r) = (str_of(l, req)?, str_of(r, req)?);
            V::Bool(match op {
                StrOp::Contains => l.contains(&*r),
                StrOp::StartsWith => l.starts_with(&*r),
                StrOp::EndsWith => l.ends_with(&*r),
            })
        }
        Node::And(l, r) => V::Bool(
            matches!(eval(l, req)?, V::Bool(true)) && matches!(eval(r, req)?, V::Bool(true)),
        ),
        Node::Or(l, r) => V::Bool(
            matches!(eval(l, req), Some(V::Bool(true))) || matches!(eval(r, req)?, V::Bool(true)),
        ),
        Node::Not(e) => V::Bool(!matches!(eval(e, req)?, V::Bool(true))),
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Edns;
    use hickory_proto::rr::{Name, RecordType};

    use super::*;

    fn req(name: &str, qtype: RecordType, src: &str) -> Request {
        let mut r = Request::new(
            Name::from_ascii(name).unwrap(),
            qtype,
            src.parse().unwrap(),
            Proto::Udp,
        );
        r.local = "127.0.0.1:53".parse().unwrap();
        r.size = 40;
        r.id = 7;
        r
    }

    fn ok(text: &str, r: &Request) -> bool {
        Expr::parse(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .eval(r)
    }

    #[test]
    fn the_forms_real_configs_use() {
        let v4 = req("Test.", RecordType::A, "192.168.1.9:5353");
        let v6 = req(
            "abc.x.y.example.com.",
            RecordType::AAAA,
            "[2001:db8::5]:5353",
        );
        let mapped = req("test.", RecordType::A, "[::ffff:127.0.0.3]:5353");
        // CoreDNS's README examples.
        assert!(ok("incidr(client_ip(), '192.168.0.0/16')", &v4));
        assert!(!ok("incidr(client_ip(), '127.0.0.0/24')", &v4));
        assert!(
            ok("incidr(client_ip(), '127.0.0.0/24')", &mapped),
            "v4 client of a dual-stack socket"
        );
        assert!(ok("incidr(client_ip(), '2001:0DB8::/32')", &v6));
        assert!(ok("type() in ['A', 'AAAA']", &v4));
        assert!(!ok("type() in ['MX']", &v4));
        assert!(ok("type() not in ['MX']", &v4));
        assert!(ok(r"name() matches '^abc\\..*\\.example\\.com\\.$'", &v6));
        assert!(!ok(r"name() matches '^abc\\..*\\.example\\.com\\.$'", &v4));
        assert!(ok(
            "(type() == 'A' && name() == 'test.') || client_ip() == '1.2.3.4'",
            &v4
        ));
        assert!(ok(
            "client_ip() == '1.2.3.4' or type() == 'A' and name() == 'test.'",
            &v4
        ));
        // CoreDNS's view_test.go TestFilter_ErrorPaths on example.com.
        let ex = req("example.com.", RecordType::A, "10.240.0.1:40212");
        assert!(ok("name() == 'example.com.'", &ex));
        assert!(!ok("name() == 'notexample.com.'", &ex));
        assert!(!ok("incidr('invalid', '1.2.3.0/24')", &ex));
        // The rest of the environment.
        assert!(ok(
            "proto() == 'udp' && port() == '40212' && server_port() == '53'",
            &ex
        ));
        assert!(ok(
            "server_ip() == '127.0.0.1' && class() == 'IN' && size() == 40 && id() == 7",
            &ex
        ));
        assert!(ok(
            "opcode() == 0 && !do() && bufsize() == 512 && bufsize() >= 512",
            &ex
        ));
        let mut with_do = ex.clone();
        let mut e = Edns::new();
        e.set_dnssec_ok(true);
        e.set_max_payload(1232);
        with_do.edns = Some(e);
        assert!(ok(
            "do() && bufsize() > 512 && not (bufsize() < 1000)",
            &with_do
        ));
        assert!(ok(
            "name() endsWith '.com.' && name() startsWith 'exa' && name() contains 'mple'",
            &ex
        ));
        assert!(ok("incidr(server_ip(), \"127.0.0.0/8\")", &ex));
        assert!(ok("incidr('10.1.2.3', '10.0.0.0/8') == true", &ex));
    }

    #[test]
    fn refused_by_name_when_loaded() {
        for (text, want) in [
            ("invalid expression", "unknown name 'invalid'"),
            ("upper(name()) == 'X'", "unsupported function 'upper'"),
            (
                "metadata('kubernetes/namespace') == 'x'",
                "function 'metadata' is not supported",
            ),
            ("len(name()) > 3", "unsupported function 'len'"),
            ("size() + 1 > 3", "unsupported operator or character '+'"),
            ("name() == 1", "invalid operation: string == int"),
            ("1", "expression must evaluate to a bool, not int"),
            ("name()", "expression must evaluate to a bool, not string"),
            ("type() in 'A'", "needs a list literal"),
            ("type() in ['A', 1]", "same type"),
            ("name() matches '('", "bad regular expression"),
            ("name() matches name()", "needs a string literal"),
            ("incidr(client_ip(), '10.0.0.0/33')", "invalid CIDR address"),
            ("incidr(client_ip())", "incidr() takes 2 arguments"),
            ("name('x') == 'y'", "name() takes no arguments"),
            ("name() == 'x", "literal not terminated"),
            (r"name() == '\q'", r"invalid escape sequence \q"),
            ("(name() == 'x'", "expected Op(\")\")"),
            ("name() == 'x' )", "unexpected ')' after the expression"),
            ("", "empty expression"),
            ("a.b == 'x'", "unsupported operator or character '.'"),
            (
                "type() == 'A' ? true : false",
                "unsupported operator or character '?'",
            ),
        ] {
            let e = Expr::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
