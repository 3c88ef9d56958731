//! The expr-lang (github.com/expr-lang/expr) subset of CoreDNS's `plugin/pkg/expression`
//! environment, with variables: what template `var` and `expr` options are written in.
//!
//! Literals (integers, 'strings' and "strings", `true`, `false`, `nil`, `[lists]`), the query
//! functions (`name()`, `type()`, `class()`, `proto()`, `size()`, `client_ip()`, `port()`,
//! `id()`, `opcode()`, `do()`, `bufsize()`, `server_ip()`, `server_port()`), `incidr(ip, cidr)`,
//! `metadata(label)`, a caller's `group(name|index)`, the builtins `int`, `string`, `len`,
//! `upper`, `lower`, `trim`, `replace`, `hasPrefix`, `hasSuffix`, `split`, `join`, `abs`, and
//! `any`/`all`/`none`/`one`/`filter`/`count` over a list with a `#` predicate; operators
//! `+ - * %`, `== != < <= > >=`, `in`, `not in`, `matches`, `contains`, `startsWith`,
//! `endsWith`, `&& || !` (`and or not`), unary `-`, `[index]` and parentheses.
//!
//! Expressions are type-checked when parsed, as expr-lang compiles against an environment: an
//! unknown name, a wrong argument count or `'x' + 1` is an error at start-up. Anything outside
//! the subset is refused by name.

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;

use crate::plugins::Request;

/// Static types, as far as the checker needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// int
    Int,
    /// string
    Str,
    /// bool
    Bool,
    /// a list
    List,
    /// nil
    Nil,
    /// unknown until run (a predicate's `#`)
    Any,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Self::Int => "int",
            Self::Str => "string",
            Self::Bool => "bool",
            Self::List => "[]interface {}",
            Self::Nil => "nil",
            Self::Any => "interface {}",
        }
    }

    fn fits(self, want: Ty) -> bool {
        self == want || self == Ty::Any || want == Ty::Any
    }
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// int
    Int(i64),
    /// string
    Str(String),
    /// bool
    Bool(bool),
    /// list
    List(Vec<Value>),
    /// nil
    Nil,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Str(s) => f.write_str(s),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Nil => f.write_str("<nil>"),
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
        }
    }
}

impl Value {
    fn ty(&self) -> Ty {
        match self {
            Self::Int(_) => Ty::Int,
            Self::Str(_) => Ty::Str,
            Self::Bool(_) => Ty::Bool,
            Self::List(_) => Ty::List,
            Self::Nil => Ty::Nil,
        }
    }
}

/// Functions of the environment and the builtins this subset has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Name,
    Type,
    Class,
    Proto,
    Size,
    ClientIp,
    Port,
    Id,
    Opcode,
    Do,
    Bufsize,
    ServerIp,
    ServerPort,
    InCidr,
    Metadata,
    Group,
    Int,
    String,
    Len,
    Upper,
    Lower,
    Trim,
    Replace,
    HasPrefix,
    HasSuffix,
    Split,
    Join,
    Abs,
}

/// (name, function, argument types, result).
const FUNCS: &[(&str, F, &[Ty], Ty)] = &[
    ("name", F::Name, &[], Ty::Str),
    ("type", F::Type, &[], Ty::Str),
    ("class", F::Class, &[], Ty::Str),
    ("proto", F::Proto, &[], Ty::Str),
    ("size", F::Size, &[], Ty::Int),
    ("client_ip", F::ClientIp, &[], Ty::Str),
    ("port", F::Port, &[], Ty::Str),
    ("id", F::Id, &[], Ty::Int),
    ("opcode", F::Opcode, &[], Ty::Int),
    ("do", F::Do, &[], Ty::Bool),
    ("bufsize", F::Bufsize, &[], Ty::Int),
    ("server_ip", F::ServerIp, &[], Ty::Str),
    ("server_port", F::ServerPort, &[], Ty::Str),
    ("incidr", F::InCidr, &[Ty::Str, Ty::Str], Ty::Bool),
    ("metadata", F::Metadata, &[Ty::Str], Ty::Str),
    ("group", F::Group, &[Ty::Any], Ty::Str),
    ("int", F::Int, &[Ty::Any], Ty::Int),
    ("string", F::String, &[Ty::Any], Ty::Str),
    ("len", F::Len, &[Ty::Any], Ty::Int),
    ("upper", F::Upper, &[Ty::Str], Ty::Str),
    ("lower", F::Lower, &[Ty::Str], Ty::Str),
    ("trim", F::Trim, &[Ty::Str], Ty::Str),
    ("replace", F::Replace, &[Ty::Str, Ty::Str, Ty::Str], Ty::Str),
    ("hasPrefix", F::HasPrefix, &[Ty::Str, Ty::Str], Ty::Bool),
    ("hasSuffix", F::HasSuffix, &[Ty::Str, Ty::Str], Ty::Bool),
    ("split", F::Split, &[Ty::Str, Ty::Str], Ty::List),
    ("join", F::Join, &[Ty::List, Ty::Str], Ty::Str),
    ("abs", F::Abs, &[Ty::Int], Ty::Int),
];

/// The environment's own names (CoreDNS's `expression.DefaultEnv`); `group` only for template.
const ENV_NAMES: &[&str] = &[
    "incidr",
    "metadata",
    "type",
    "name",
    "class",
    "proto",
    "size",
    "client_ip",
    "port",
    "id",
    "opcode",
    "do",
    "bufsize",
    "server_ip",
    "server_port",
];

/// expr-lang's builtin functions (its `builtin.Index`), reserved as variable names.
const BUILTINS: &[&str] = &[
    "all",
    "none",
    "any",
    "one",
    "filter",
    "map",
    "find",
    "findIndex",
    "findLast",
    "findLastIndex",
    "count",
    "sum",
    "groupBy",
    "sortBy",
    "reduce",
    "len",
    "type",
    "abs",
    "ceil",
    "floor",
    "round",
    "int",
    "float",
    "string",
    "trim",
    "trimPrefix",
    "trimSuffix",
    "upper",
    "lower",
    "split",
    "splitAfter",
    "replace",
    "repeat",
    "join",
    "indexOf",
    "lastIndexOf",
    "hasPrefix",
    "hasSuffix",
    "max",
    "min",
    "mean",
    "median",
    "toJSON",
    "fromJSON",
    "toBase64",
    "fromBase64",
    "now",
    "duration",
    "date",
    "timezone",
    "first",
    "last",
    "get",
    "keys",
    "values",
    "toPairs",
    "fromPairs",
    "sort",
    "bitand",
    "bitor",
    "bitxor",
    "bitnand",
    "bitnot",
    "bitshl",
    "bitshr",
    "bitushr",
    "uniq",
    "concat",
    "flatten",
    "min",
    "max",
];

/// Words of the language that are not identifiers.
const KEYWORDS: &[&str] = &[
    "true",
    "false",
    "nil",
    "let",
    "in",
    "not",
    "and",
    "or",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "if",
    "else",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pred {
    Any,
    All,
    None,
    One,
    Filter,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone)]
enum Node {
    Lit(Value),
    List(Vec<Node>),
    Var(usize),
    Hash,
    Call(F, Vec<Node>),
    Pred(Pred, Box<Node>, Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    Matches(Box<Node>, Regex),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Neg(Box<Node>),
    Index(Box<Node>, Box<Node>),
}

/// What an expression may refer to when it is parsed.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    vars: Vec<(String, Ty)>,
    /// Whether `group()` exists (template's environment).
    pub group: bool,
}

impl Scope {
    /// A scope with `group()` when `group`.
    pub fn new(group: bool) -> Self {
        Self {
            vars: Vec::new(),
            group,
        }
    }

    /// Declares variable `name` of the type of `e`: refused when `name` is not an identifier,
    /// or is a function, builtin, keyword or an earlier variable (CoreDNS: "reserved").
    pub fn declare(&mut self, name: &str, e: &Expr) -> Result<(), String> {
        let ident = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ident {
            return Err(format!("invalid variable name \"{name}\""));
        }
        if ENV_NAMES.contains(&name)
            || (name == "group" && self.group)
            || BUILTINS.contains(&name)
            || KEYWORDS.contains(&name)
            || self.vars.iter().any(|(v, _)| v == name)
        {
            return Err(format!("variable name \"{name}\" is reserved"));
        }
        self.vars.push((name.to_string(), e.ty));
        Ok(())
    }

    /// The declared variables, in order.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether no variable is declared.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }
}

/// A parsed, type-checked expression.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    root: Node,
    ty: Ty,
}

impl PartialEq for Expr {
    fn eq(&self, o: &Self) -> bool {
        self.text == o.text
    }
}

/// What an evaluation sees: the request, the variables evaluated so far (in declaration order)
/// and the regex groups for `group()` (index 0 = the whole match; named ones by name).
pub struct Env<'a> {
    /// The query.
    pub req: &'a Request,
    /// Values of the variables declared before this expression.
    pub vars: &'a [Value],
    /// `group(i)`: the i-th capture.
    pub groups: &'a [&'a str],
    /// `group(name)`: named captures.
    pub named: &'a [(&'a str, &'a str)],
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

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
                if ch as char == c {
                    break;
                }
                if ch == b'\\' {
                    let esc = *b.get(j + 1).ok_or("literal not terminated")? as char;
                    text.push(match esc {
                        '\\' => '\\',
                        '\'' => '\'',
                        '"' => '"',
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        other => return Err(format!("invalid char escape \\{other}")),
                    });
                    j += 2;
                    continue;
                }
                let len = s[j..].chars().next().map_or(1, char::len_utf8);
                text.push_str(&s[j..j + len]);
                j += len;
            }
            out.push(Tok::Str(text));
            i = j + 1;
        } else if c.is_ascii_digit() {
            let j = i + b[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || **c == b'_')
                .count();
            if b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
                return Err("floating-point numbers are not supported by clusterdns".into());
            }
            let n = s[i..j]
                .replace('_', "")
                .parse()
                .map_err(|_| format!("bad number {}", &s[i..j]))?;
            out.push(Tok::Int(n));
            i = j;
        } else if c.is_ascii_alphabetic() || c == '_' || c == '$' {
            let j = i + b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_' || **c == b'$')
                .count();
            out.push(Tok::Ident(s[i..j].to_string()));
            i = j;
        } else {
            const OPS: &[&str] = &[
                "==", "!=", "<=", ">=", "&&", "||", "**", "??", "..", "<", ">", "!", "(", ")", "[",
                "]", ",", "+", "-", "*", "/", "%", "#", "?", ":", ".", "|", "{", "}",
            ];
            match OPS.iter().find(|op| s[i..].starts_with(**op)) {
                Some(op) => {
                    out.push(Tok::Op(op));
                    i += op.len();
                }
                None => {
                    let ch = s[i..].chars().next().unwrap_or('?');
                    return Err(format!("unexpected token '{ch}'"));
                }
            }
        }
    }
    Ok(out)
}

struct Parser<'s> {
    toks: Vec<Tok>,
    pos: usize,
    scope: &'s Scope,
    /// Inside a predicate (where `#` is bound).
    in_pred: bool,
}

type Typed = (Node, Ty);

fn check(t: Ty, want: Ty, what: &str) -> Result<(), String> {
    if t.fits(want) {
        Ok(())
    } else {
        Err(format!(
            "{what}: cannot use {} as {}",
            t.name(),
            want.name()
        ))
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_word(&self, at: usize, w: &str) -> bool {
        matches!(self.toks.get(at), Some(Tok::Ident(n)) if n == w)
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of expression".into(),
            Some(Tok::Ident(n)) => format!("token Identifier(\"{n}\")"),
            Some(Tok::Str(s)) => format!("token String(\"{s}\")"),
            Some(Tok::Int(n)) => format!("token Number(\"{n}\")"),
            Some(Tok::Op(o)) => format!("token Operator(\"{o}\")"),
        }
    }

    fn expect(&mut self, op: &str) -> Result<(), String> {
        if self.is_op(op) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{op}', found {}", self.found()))
        }
    }

    fn or(&mut self) -> Result<Typed, String> {
        let mut l = self.and()?;
        while self.is_op("||") || self.is_word(self.pos, "or") {
            self.pos += 1;
            let r = self.and()?;
            check(l.1, Ty::Bool, "invalid operation: ||")?;
            check(r.1, Ty::Bool, "invalid operation: ||")?;
            l = (Node::Or(Box::new(l.0), Box::new(r.0)), Ty::Bool);
        }
        if self.is_op("?") || self.is_op("??") {
            return Err(
                "the conditional operators ?: and ?? are not supported by clusterdns".into(),
            );
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Typed, String> {
        let mut l = self.cmp()?;
        while self.is_op("&&") || self.is_word(self.pos, "and") {
            self.pos += 1;
            let r = self.cmp()?;
            check(l.1, Ty::Bool, "invalid operation: &&")?;
            check(r.1, Ty::Bool, "invalid operation: &&")?;
            l = (Node::And(Box::new(l.0), Box::new(r.0)), Ty::Bool);
        }
        Ok(l)
    }

    fn cmp(&mut self) -> Result<Typed, String> {
        let mut l = self.add()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("==")) => Op::Eq,
                Some(Tok::Op("!=")) => Op::Ne,
                Some(Tok::Op("<")) => Op::Lt,
                Some(Tok::Op("<=")) => Op::Le,
                Some(Tok::Op(">")) => Op::Gt,
                Some(Tok::Op(">=")) => Op::Ge,
                Some(Tok::Ident(w)) if w == "in" => Op::In,
                Some(Tok::Ident(w)) if w == "contains" => Op::Contains,
                Some(Tok::Ident(w)) if w == "startsWith" => Op::StartsWith,
                Some(Tok::Ident(w)) if w == "endsWith" => Op::EndsWith,
                Some(Tok::Ident(w)) if w == "not" && self.is_word(self.pos + 1, "in") => {
                    self.pos += 1;
                    Op::NotIn
                }
                Some(Tok::Ident(w)) if w == "matches" => {
                    self.pos += 1;
                    let r = self.add()?;
                    check(l.1, Ty::Str, "invalid operation: matches")?;
                    let Node::Lit(Value::Str(p)) = r.0 else {
                        return Err(
                            "'matches' needs a string literal on its right in clusterdns".into(),
                        );
                    };
                    let re = Regex::new(&p).map_err(|e| format!("error parsing regexp: {e}"))?;
                    l = (Node::Matches(Box::new(l.0), re), Ty::Bool);
                    continue;
                }
                _ => return Ok(l),
            };
            self.pos += 1;
            let r = self.add()?;
            let ty = match op {
                Op::Eq | Op::Ne => {
                    if !(l.1.fits(r.1) || l.1 == Ty::Nil || r.1 == Ty::Nil) {
                        return Err(format!(
                            "invalid operation: {} (mismatched types {} and {})",
                            op_text(op),
                            l.1.name(),
                            r.1.name()
                        ));
                    }
                    Ty::Bool
                }
                Op::Lt | Op::Le | Op::Gt | Op::Ge => {
                    if !(l.1.fits(r.1)
                        && matches!(l.1, Ty::Int | Ty::Str | Ty::Any)
                        && matches!(r.1, Ty::Int | Ty::Str | Ty::Any))
                    {
                        return Err(format!(
                            "invalid operation: {} (mismatched types {} and {})",
                            op_text(op),
                            l.1.name(),
                            r.1.name()
                        ));
                    }
                    Ty::Bool
                }
                Op::In | Op::NotIn => {
                    check(r.1, Ty::List, "invalid operation: in")?;
                    Ty::Bool
                }
                _ => {
                    check(l.1, Ty::Str, "invalid operation")?;
                    check(r.1, Ty::Str, "invalid operation")?;
                    Ty::Bool
                }
            };
            l = (Node::Bin(op, Box::new(l.0), Box::new(r.0)), ty);
        }
    }

    fn add(&mut self) -> Result<Typed, String> {
        let mut l = self.mul()?;
        loop {
            let op = if self.is_op("+") {
                Op::Add
            } else if self.is_op("-") {
                Op::Sub
            } else {
                return Ok(l);
            };
            self.pos += 1;
            let r = self.mul()?;
            l = arith(op, l, r)?;
        }
    }

    fn mul(&mut self) -> Result<Typed, String> {
        let mut l = self.unary()?;
        loop {
            let op = if self.is_op("*") {
                Op::Mul
            } else if self.is_op("%") {
                Op::Mod
            } else if self.is_op("/") || self.is_op("**") {
                return Err("'/' and '**' (floating point) are not supported by clusterdns".into());
            } else {
                return Ok(l);
            };
            self.pos += 1;
            let r = self.unary()?;
            l = arith(op, l, r)?;
        }
    }

    fn unary(&mut self) -> Result<Typed, String> {
        if self.is_op("!") || (self.is_word(self.pos, "not") && !self.is_word(self.pos + 1, "in")) {
            self.pos += 1;
            let (n, t) = self.unary()?;
            check(t, Ty::Bool, "invalid operation: !")?;
            return Ok((Node::Not(Box::new(n)), Ty::Bool));
        }
        if self.is_op("-") {
            self.pos += 1;
            let (n, t) = self.unary()?;
            check(t, Ty::Int, "invalid operation: -")?;
            return Ok((Node::Neg(Box::new(n)), Ty::Int));
        }
        let mut p = self.primary()?;
        while self.is_op("[") {
            self.pos += 1;
            let i = self.or()?;
            self.expect("]")?;
            check(p.1, Ty::List, "invalid operation: index")?;
            check(i.1, Ty::Int, "invalid operation: index")?;
            p = (Node::Index(Box::new(p.0), Box::new(i.0)), Ty::Any);
        }
        if self.is_op(".") || self.is_op("|") || self.is_op("..") {
            return Err(format!("{} is not supported by clusterdns", self.found()));
        }
        Ok(p)
    }

    fn args(&mut self) -> Result<Vec<Typed>, String> {
        self.expect("(")?;
        let mut args = Vec::new();
        while !self.is_op(")") {
            if self.peek().is_none() {
                return Err("unexpected end of expression".into());
            }
            args.push(self.or()?);
            if !self.is_op(")") {
                self.expect(",")?;
            }
        }
        self.pos += 1;
        Ok(args)
    }

    fn primary(&mut self) -> Result<Typed, String> {
        let Some(tok) = self.peek().cloned() else {
            return Err("unexpected end of expression".into());
        };
        self.pos += 1;
        match tok {
            Tok::Str(s) => Ok((Node::Lit(Value::Str(s)), Ty::Str)),
            Tok::Int(n) => Ok((Node::Lit(Value::Int(n)), Ty::Int)),
            Tok::Op("(") => {
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Tok::Op("#") if self.in_pred => Ok((Node::Hash, Ty::Any)),
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    if self.peek().is_none() {
                        return Err("unexpected end of expression".into());
                    }
                    items.push(self.or()?.0);
                    if !self.is_op("]") {
                        self.expect(",")?;
                    }
                }
                self.pos += 1;
                Ok((Node::List(items), Ty::List))
            }
            Tok::Ident(w) if w == "true" || w == "false" => {
                Ok((Node::Lit(Value::Bool(w == "true")), Ty::Bool))
            }
            Tok::Ident(w) if w == "nil" => Ok((Node::Lit(Value::Nil), Ty::Nil)),
            Tok::Ident(w) => {
                if !self.is_op("(") {
                    return match self.scope.vars.iter().position(|(v, _)| *v == w) {
                        Some(i) => Ok((Node::Var(i), self.scope.vars[i].1)),
                        None => Err(format!("unknown name {w}")),
                    };
                }
                let pred = match w.as_str() {
                    "any" => Some(Pred::Any),
                    "all" => Some(Pred::All),
                    "none" => Some(Pred::None),
                    "one" => Some(Pred::One),
                    "filter" => Some(Pred::Filter),
                    "count" => Some(Pred::Count),
                    _ => None,
                };
                if let Some(pred) = pred {
                    self.pos += 1;
                    let (list, lt) = self.or()?;
                    check(lt, Ty::List, &format!("{w}()"))?;
                    self.expect(",")?;
                    let braced = self.is_op("{");
                    if braced {
                        self.pos += 1;
                    }
                    let outer = self.in_pred;
                    self.in_pred = true;
                    let (body, bt) = self.or()?;
                    self.in_pred = outer;
                    if braced {
                        self.expect("}")?;
                    }
                    self.expect(")")?;
                    let ty = match pred {
                        Pred::Filter => Ty::List,
                        Pred::Count => Ty::Int,
                        _ => Ty::Bool,
                    };
                    if pred != Pred::Filter || bt != Ty::Any {
                        check(bt, Ty::Bool, &format!("{w}() predicate"))?;
                    }
                    return Ok((Node::Pred(pred, Box::new(list), Box::new(body)), ty));
                }
                let Some(&(_, f, params, ret)) = FUNCS
                    .iter()
                    .find(|(n, f, ..)| *n == w && (*f != F::Group || self.scope.group))
                else {
                    if BUILTINS.contains(&w.as_str()) {
                        return Err(format!("function {w}() is not supported by clusterdns"));
                    }
                    return Err(format!("unknown func {w}"));
                };
                let args = self.args()?;
                if args.len() != params.len() {
                    return Err(format!(
                        "too {} arguments to call {w}",
                        if args.len() > params.len() {
                            "many"
                        } else {
                            "few"
                        }
                    ));
                }
                for (i, ((_, t), want)) in args.iter().zip(params).enumerate() {
                    check(*t, *want, &format!("argument {} of {w}()", i + 1))?;
                }
                Ok((Node::Call(f, args.into_iter().map(|a| a.0).collect()), ret))
            }
            Tok::Op(o) => Err(format!("unexpected token Operator(\"{o}\")")),
        }
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Add => "+",
        Op::Sub => "-",
        Op::Mul => "*",
        Op::Mod => "%",
        Op::Eq => "==",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::In => "in",
        Op::NotIn => "not in",
        Op::Contains => "contains",
        Op::StartsWith => "startsWith",
        Op::EndsWith => "endsWith",
    }
}

fn arith(op: Op, l: Typed, r: Typed) -> Result<Typed, String> {
    let ty = match (l.1, r.1) {
        (Ty::Int, Ty::Int) => Ty::Int,
        (Ty::Str, Ty::Str) if op == Op::Add => Ty::Str,
        (Ty::Any, t) | (t, Ty::Any) if matches!(t, Ty::Int | Ty::Str | Ty::Any) => Ty::Any,
        (a, b) => {
            return Err(format!(
                "invalid operation: {} (mismatched types {} and {})",
                op_text(op),
                a.name(),
                b.name()
            ));
        }
    };
    Ok((Node::Bin(op, Box::new(l.0), Box::new(r.0)), ty))
}

impl Expr {
    /// Parses and type-checks `text` against `scope`.
    pub fn parse(text: &str, scope: &Scope) -> Result<Self, String> {
        let mut p = Parser {
            toks: lex(text)?,
            pos: 0,
            scope,
            in_pred: false,
        };
        if p.toks.is_empty() {
            return Err("unexpected end of expression".into());
        }
        let (root, ty) = p.or()?;
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {}", p.found()));
        }
        Ok(Self {
            text: text.to_string(),
            root,
            ty,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates; an error is a runtime error of expr-lang (a bad address given to `incidr`).
    pub fn eval(&self, env: &Env<'_>) -> Result<Value, String> {
        eval(&self.root, env, None)
    }
}

fn as_str(v: Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(format!("expected string, got {}", other.ty().name())),
    }
}

fn as_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(n) => Ok(*n),
        other => Err(format!("expected int, got {}", other.ty().name())),
    }
}

fn as_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(format!("expected bool, got {}", other.ty().name())),
    }
}

fn cmp(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Ok(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Ok(x.cmp(y)),
        _ => Err(format!(
            "invalid operation: {} and {} cannot be compared",
            a.ty().name(),
            b.ty().name()
        )),
    }
}

fn call(f: F, args: Vec<Value>, env: &Env<'_>) -> Result<Value, String> {
    let req = env.req;
    let ip = |a: IpAddr| Value::Str(a.to_canonical().to_string());
    let mut args = args.into_iter();
    let mut next = || args.next().unwrap_or(Value::Nil);
    Ok(match f {
        F::Name => Value::Str(req.qname_lower().to_string()),
        F::Type => Value::Str(req.qtype().to_string()),
        F::Class => Value::Str(req.qclass().to_string()),
        F::Proto => Value::Str(req.proto.as_str().to_string()),
        F::Size => Value::Int(req.size as i64),
        F::ClientIp => ip(req.src.ip()),
        F::Port => Value::Str(req.src.port().to_string()),
        F::Id => Value::Int(i64::from(req.id)),
        F::Opcode => Value::Int(i64::from(u8::from(req.op_code))),
        F::Do => Value::Bool(req.do_bit()),
        F::Bufsize => Value::Int(i64::from(req.max_size())),
        F::ServerIp => ip(req.local.ip()),
        F::ServerPort => Value::Str(req.local.port().to_string()),
        F::InCidr => {
            let (a, c) = (as_str(next())?, as_str(next())?);
            let a: IpAddr = a
                .parse()
                .map_err(|_| "first argument is not an IP address".to_string())?;
            let net: IpNet = c
                .parse()
                .map_err(|_| format!("invalid CIDR address: {c}"))?;
            Value::Bool(net.contains(&a.to_canonical()))
        }
        F::Metadata => Value::Str(req.meta(&as_str(next())?).unwrap_or("").to_string()),
        F::Group => Value::Str(match next() {
            Value::Int(i) => usize::try_from(i)
                .ok()
                .and_then(|i| env.groups.get(i))
                .map_or(String::new(), |s| (*s).to_string()),
            Value::Str(n) => match n.parse::<usize>() {
                Ok(i) => env
                    .groups
                    .get(i)
                    .map_or(String::new(), |s| (*s).to_string()),
                Err(_) => env
                    .named
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map_or(String::new(), |(_, v)| (*v).to_string()),
            },
            _ => String::new(),
        }),
        F::Int => match next() {
            Value::Int(n) => Value::Int(n),
            Value::Bool(b) => Value::Int(i64::from(b)),
            Value::Str(s) => Value::Int(
                s.trim()
                    .parse()
                    .map_err(|_| format!("strconv.Atoi: parsing \"{s}\": invalid syntax"))?,
            ),
            other => return Err(format!("invalid operation: int({})", other.ty().name())),
        },
        F::String => Value::Str(next().to_string()),
        F::Len => match next() {
            Value::Str(s) => Value::Int(s.chars().count() as i64),
            Value::List(l) => Value::Int(l.len() as i64),
            other => {
                return Err(format!(
                    "invalid argument for len (type {})",
                    other.ty().name()
                ));
            }
        },
        F::Upper => Value::Str(as_str(next())?.to_uppercase()),
        F::Lower => Value::Str(as_str(next())?.to_lowercase()),
        F::Trim => Value::Str(as_str(next())?.trim().to_string()),
        F::Replace => {
            let (s, from, to) = (as_str(next())?, as_str(next())?, as_str(next())?);
            Value::Str(s.replace(&from, &to))
        }
        F::HasPrefix => {
            let (s, p) = (as_str(next())?, as_str(next())?);
            Value::Bool(s.starts_with(&p))
        }
        F::HasSuffix => {
            let (s, p) = (as_str(next())?, as_str(next())?);
            Value::Bool(s.ends_with(&p))
        }
        F::Split => {
            let (s, sep) = (as_str(next())?, as_str(next())?);
            Value::List(s.split(&sep).map(|p| Value::Str(p.to_string())).collect())
        }
        F::Join => {
            let Value::List(l) = next() else {
                return Err("join: expected a list".into());
            };
            let sep = as_str(next())?;
            Value::Str(
                l.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join(&sep),
            )
        }
        F::Abs => Value::Int(as_int(&next())?.abs()),
    })
}

fn eval(n: &Node, env: &Env<'_>, hash: Option<&Value>) -> Result<Value, String> {
    Ok(match n {
        Node::Lit(v) => v.clone(),
        Node::List(items) => Value::List(
            items
                .iter()
                .map(|i| eval(i, env, hash))
                .collect::<Result<_, _>>()?,
        ),
        Node::Var(i) => env.vars.get(*i).cloned().unwrap_or(Value::Nil),
        Node::Hash => hash.cloned().unwrap_or(Value::Nil),
        Node::Call(f, args) => {
            let args = args
                .iter()
                .map(|a| eval(a, env, hash))
                .collect::<Result<Vec<_>, _>>()?;
            call(*f, args, env)?
        }
        Node::Pred(p, list, body) => {
            let Value::List(items) = eval(list, env, hash)? else {
                return Err("predicate over a non-list".into());
            };
            let mut hits = Vec::new();
            for item in &items {
                let v = eval(body, env, Some(item))?;
                let yes = as_bool(&v)?;
                match p {
                    Pred::Any if yes => return Ok(Value::Bool(true)),
                    Pred::All if !yes => return Ok(Value::Bool(false)),
                    Pred::None if yes => return Ok(Value::Bool(false)),
                    _ => {}
                }
                if yes {
                    hits.push(item.clone());
                }
            }
            match p {
                Pred::Any => Value::Bool(false),
                Pred::All | Pred::None => Value::Bool(true),
                Pred::One => Value::Bool(hits.len() == 1),
                Pred::Filter => Value::List(hits),
                Pred::Count => Value::Int(hits.len() as i64),
            }
        }
        Node::Bin(op, l, r) => {
            let (l, r) = (eval(l, env, hash)?, eval(r, env, hash)?);
            match op {
                Op::Add => match (l, r) {
                    (Value::Int(a), Value::Int(b)) => Value::Int(a.wrapping_add(b)),
                    (Value::Str(a), Value::Str(b)) => Value::Str(a + &b),
                    (a, b) => {
                        return Err(format!(
                            "invalid operation: {} + {}",
                            a.ty().name(),
                            b.ty().name()
                        ));
                    }
                },
                Op::Sub => Value::Int(as_int(&l)?.wrapping_sub(as_int(&r)?)),
                Op::Mul => Value::Int(as_int(&l)?.wrapping_mul(as_int(&r)?)),
                Op::Mod => {
                    let d = as_int(&r)?;
                    if d == 0 {
                        return Err("integer divide by zero".into());
                    }
                    Value::Int(as_int(&l)?.wrapping_rem(d))
                }
                Op::Eq => Value::Bool(l == r),
                Op::Ne => Value::Bool(l != r),
                Op::Lt => Value::Bool(cmp(&l, &r)?.is_lt()),
                Op::Le => Value::Bool(cmp(&l, &r)?.is_le()),
                Op::Gt => Value::Bool(cmp(&l, &r)?.is_gt()),
                Op::Ge => Value::Bool(cmp(&l, &r)?.is_ge()),
                Op::In | Op::NotIn => {
                    let Value::List(items) = r else {
                        return Err("'in' needs a list".into());
                    };
                    Value::Bool(items.contains(&l) == (*op == Op::In))
                }
                Op::Contains => Value::Bool(as_str(l)?.contains(&as_str(r)?)),
                Op::StartsWith => Value::Bool(as_str(l)?.starts_with(&as_str(r)?)),
                Op::EndsWith => Value::Bool(as_str(l)?.ends_with(&as_str(r)?)),
            }
        }
        Node::Matches(l, re) => Value::Bool(re.is_match(&as_str(eval(l, env, hash)?)?)),
        Node::And(l, r) => {
            Value::Bool(as_bool(&eval(l, env, hash)?)? && as_bool(&eval(r, env, hash)?)?)
        }
        Node::Or(l, r) => {
            Value::Bool(as_bool(&eval(l, env, hash)?)? || as_bool(&eval(r, env, hash)?)?)
        }
        Node::Not(e) => Value::Bool(!as_bool(&eval(e, env, hash)?)?),
        Node::Neg(e) => Value::Int(as_int(&eval(e, env, hash)?)?.wrapping_neg()),
        Node::Index(l, i) => {
            let Value::List(items) = eval(l, env, hash)? else {
                return Err("index of a non-list".into());
            };
            let i = as_int(&eval(i, env, hash)?)?;
            let at = if i < 0 { items.len() as i64 + i } else { i };
            usize::try_from(at)
                .ok()
                .and_then(|at| items.get(at).cloned())
                .ok_or_else(|| {
                    format!("index out of range: {i} (array length is {})", items.len())
                })?
        }
    })
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::plugins::Proto;

    fn req() -> Request {
        Request::new(
            Name::from_ascii("a.example.").unwrap(),
            RecordType::A,
            "10.240.0.1:40212".parse().unwrap(),
            Proto::Udp,
        )
    }

    fn run(text: &str, groups: &[&str]) -> Result<Value, String> {
        let e = Expr::parse(text, &Scope::new(true))?;
        let r = req();
        e.eval(&Env {
            req: &r,
            vars: &[],
            groups,
            named: &[("ip", "10-1-2-3")],
        })
    }

    #[test]
    fn evaluates_the_readme_forms() {
        // CoreDNS template README: the device-address example.
        assert_eq!(
            run("replace(group('ip'), '-', '.')", &[]).unwrap(),
            Value::Str("10.1.2.3".into())
        );
        assert_eq!(
            run(
                "any(['10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', '169.254.0.0/16'], incidr(replace(group('ip'), '-', '.'), #))",
                &[]
            )
            .unwrap(),
            Value::Bool(true)
        );
        assert_eq!(run("int('7') * 3 % 4", &[]).unwrap(), Value::Int(1));
        assert_eq!(
            run("group(1) + group(0)", &["ab", "b"]).unwrap(),
            Value::Str("bab".into())
        );
        assert_eq!(
            run("type() in ['A', 'AAAA'] and not (1 > 2)", &[]).unwrap(),
            Value::Bool(true)
        );
        assert_eq!(run("count([1, 2, 3], # > 1)", &[]).unwrap(), Value::Int(2));
        assert!(run("incidr('notanip', '10.0.0.0/8')", &[]).is_err());
        assert!(run("int('x')", &[]).is_err());
    }

    #[test]
    fn refuses_at_parse_time() {
        let scope = Scope::new(true);
        for (text, want) in [
            ("1 +", "unexpected end"),
            ("invalid expression", "unknown name invalid"),
            ("undefined == 1", "unknown name undefined"),
            ("1 + 'x'", "mismatched types int and string"),
            ("name() ==", "unexpected end"),
            ("nosuch()", "unknown func nosuch"),
            ("toJSON(1)", "not supported by clusterdns"),
            ("1 / 2", "not supported by clusterdns"),
            ("incidr(1, '10.0.0.0/8')", "cannot use int as string"),
            ("name(1)", "too many arguments"),
        ] {
            let e = Expr::parse(text, &scope).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(Expr::parse("group(1)", &Scope::new(false)).is_err());
    }
}
