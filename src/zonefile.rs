//! RFC 1035 master files ("zone files") → hickory records, each with the file and line it came
//! from. Shared by the plugins that read zone data (`file`; `auto` and `secondary` later).
//!
//! The text is scanned by NLnet Labs' `domain` crate (`zonefile` feature): `$ORIGIN`, `$TTL`,
//! `$INCLUDE FILE [ORIGIN]`, parentheses, quoting, `\DDD` escapes, every type it knows (DNSSEC
//! types included) and RFC 3597's `TYPEnnn \# LEN HEX` for the rest; a small pre-pass adds
//! what it lacks: BIND's TTL units (`$TTL 30M`, `1h`, SOA timers like `4H`), as miekg/dns
//! (CoreDNS) and knotd read them, and the line of each entry for errors. hickory-proto's own text
//! parser reads no DNSKEY, RRSIG, NSEC or DNAME and reports no line numbers. Each record is
//! composed to wire format by `domain` and decoded by hickory, so the records are exactly what
//! a transfer of the zone would carry; types hickory does not model (the DNSSEC types, DNAME)
//! stay opaque bytes and are served as stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hickory_proto::rr::{Name, Record};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// How deep `$INCLUDE`s may nest (miekg/dns's limit, which CoreDNS uses).
pub const MAX_INCLUDE_DEPTH: usize = 7;

/// A zone file that could not be read or parsed: `FILE:LINE: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {msg}", file.display())]
pub struct Error {
    /// The file (an `$INCLUDE`d file for errors inside it).
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read at all).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

/// One record and where it was written.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The record (names as written, made absolute).
    pub record: Record,
    /// The file it came from.
    pub file: Arc<Path>,
    /// Its line in that file.
    pub line: usize,
}

/// Reads and parses `path`, relative names completed with `origin`.
pub fn parse_file(path: &Path, origin: &Name) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    parse_into(path, origin, 0, &mut out)?;
    Ok(out)
}

/// Parses `text` as if read from `path` (`$INCLUDE`s are read relative to its directory).
pub fn parse_str(text: &str, path: &Path, origin: &Name) -> Result<Vec<Entry>, Error> {
    let mut out = Vec::new();
    parse_text(text, path, origin, 0, &mut out)?;
    Ok(out)
}

fn parse_into(path: &Path, origin: &Name, depth: usize, out: &mut Vec<Entry>) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error {
        file: path.to_path_buf(),
        line: 0,
        msg: e.to_string(),
    })?;
    parse_text(&text, path, origin, depth, out)
}

fn parse_text(
    text: &str,
    path: &Path,
    origin: &Name,
    depth: usize,
    out: &mut Vec<Entry>,
) -> Result<(), Error> {
    let file: Arc<Path> = Arc::from(path);
    let err = |line: usize, msg: String| Error {
        file: path.to_path_buf(),
        line,
        msg,
    };
    let (text, lines) = prepare(text);
    let mut zf = domain::zonefile::inplace::Zonefile::with_capacity(text.len());
    zf.extend_from_slice(text.as_bytes());
    zf.set_origin(to_domain_name(origin).map_err(|m| err(0, m))?);
    let mut lines = lines.into_iter();
    loop {
        let line = lines.next().unwrap_or(0);
        // The scanner is another crate's code reading arbitrary text: a panic in it (0.12.3
        // had one for a quoted string at the very end) is this entry's error, not a crash.
        // Quiet: no backtrace printed for it, and a fuzzer's abort-on-panic hook is not called
        // (0.12.3 also indexes past a character string's end: fuzz seed scanner-charstr-oob).
        crate::server::panics::install();
        let scanned = crate::server::panics::catch_quiet(|| zf.next_entry())
            .map_err(|_| err(line, "the zone file scanner failed on this entry".into()))?;
        let entry = match scanned {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            // domain's errors read `LINE:COL: message`; its LINE is where the scanner stopped
            // (often the line after the entry), so report the entry's first line instead.
            Err(e) => {
                let text = e.to_string();
                let msg = text.split_once(": ").map_or(text.as_str(), |(_, m)| m);
                return Err(err(line, msg.to_string()));
            }
        };
        match entry {
            domain::zonefile::inplace::Entry::Record(rec) => {
                let mut wire = Vec::new();
                rec.compose(&mut wire)
                    .map_err(|_| err(line, "record too long".into()))?;
                let mut dec = BinDecoder::new(&wire);
                let record = Record::read(&mut dec)
                    .map_err(|e| err(line, format!("{} {}: {e}", rec.owner(), rec.rtype())))?;
                out.push(Entry {
                    record,
                    file: file.clone(),
                    line,
                });
            }
            domain::zonefile::inplace::Entry::Include {
                path: inc,
                origin: inc_origin,
            } => {
                if depth + 1 > MAX_INCLUDE_DEPTH {
                    return Err(err(
                        line,
                        format!("too deeply nested $INCLUDE (more than {MAX_INCLUDE_DEPTH})"),
                    ));
                }
                // Relative to the including file, as miekg/dns (and so CoreDNS) reads them.
                let inc = PathBuf::from(inc.as_ref() as &str);
                let inc = if inc.is_absolute() {
                    inc
                } else {
                    path.parent().unwrap_or(Path::new(".")).join(inc)
                };
                // The included file starts with the given origin, else the current one.
                let inc_origin = match inc_origin {
                    Some(o) => from_domain_name(&o).map_err(|m| err(line, m))?,
                    None => match zf.origin() {
                        Ok(o) => from_domain_name(&o).map_err(|m| err(line, m))?,
                        Err(_) => origin.clone(),
                    },
                };
                parse_into(&inc, &inc_origin, depth + 1, out).map_err(|e| {
                    if e.line == 0 && e.file == inc {
                        err(line, format!("$INCLUDE {}: {}", inc.display(), e.msg))
                    } else {
                        e
                    }
                })?;
            }
        }
    }
}

/// One entry of a zone file as the pre-pass sees it.
struct RawEntry {
    /// Its first line.
    line: usize,
    /// Whether it starts with a blank (then it has no owner of its own).
    blank: bool,
    /// Byte ranges of its tokens (a quoted string is one token; parentheses are none).
    tokens: Vec<std::ops::Range<usize>>,
}

/// Splits `text` into entries: an entry ends at a line break outside parentheses and quotes;
/// comments and blank lines are none.
fn raw_entries(text: &str) -> Vec<RawEntry> {
    let b = text.as_bytes();
    let mut out: Vec<RawEntry> = Vec::new();
    let (mut line, mut depth) = (1usize, 0u32);
    let mut cur: Option<RawEntry> = None;
    let mut line_start = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                line_start = true;
                if depth == 0 {
                    out.extend(cur.take().filter(|e| !e.tokens.is_empty()));
                }
                i += 1;
                continue;
            }
            b';' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                if line_start && depth == 0 && cur.is_none() {
                    cur = Some(RawEntry {
                        line,
                        blank: true,
                        tokens: Vec::new(),
                    });
                }
                line_start = false;
                i += 1;
                continue;
            }
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        line_start = false;
        let e = cur.get_or_insert_with(|| RawEntry {
            line,
            blank: false,
            tokens: Vec::new(),
        });
        if e.tokens.is_empty() && e.line != line && e.blank {
            // A blank line that held only white space: the entry starts here.
            e.line = line;
        }
        if c == b'(' || c == b')' {
            i += 1;
            continue;
        }
        // A token: up to a blank, a parenthesis or a comment outside quotes.
        let start = i;
        let mut quoted = false;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 1,
                b'"' => quoted = !quoted,
                b'\n' if quoted => line += 1,
                b' ' | b'\t' | b'\r' | b'\n' | b'(' | b')' | b';' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        e.tokens.push(start..i.min(b.len()));
    }
    out.extend(cur.take().filter(|e| !e.tokens.is_empty()));
    out
}

/// A TTL written with BIND's units (`30M`, `1h30m`, `1W`): its seconds. Plain numbers are left
/// alone.
fn ttl_units(tok: &str) -> Option<u32> {
    let units = tok.bytes().any(|c| c.is_ascii_alphabetic());
    let shape = tok
        .bytes()
        .all(|c| c.is_ascii_digit() || b"smhdwSMHDW".contains(&c))
        && tok.bytes().next().is_some_and(|c| c.is_ascii_digit());
    if !units || !shape {
        return None;
    }
    hickory_proto::serialize::txt::parse_ttl(tok).ok()
}

fn is_class(tok: &str) -> bool {
    let t = tok.to_ascii_uppercase();
    matches!(t.as_str(), "IN" | "CH" | "CS" | "HS" | "NONE" | "ANY") || t.starts_with("CLASS")
}

/// Prepares `text` for `domain`'s scanner, which knows neither BIND's TTL units nor a last
/// entry without a line break: TTLs with units (`$TTL`, an RR's TTL, SOA's four timers) become
/// seconds, and a final line break is added. Line breaks are kept, so lines stay where they
/// were. Returns the text and the first line of every entry other than `$ORIGIN` and `$TTL`
/// (which the scanner consumes itself), in the order the scanner returns them.
fn prepare(text: &str) -> (String, Vec<usize>) {
    let entries = raw_entries(text);
    let mut edits: Vec<(std::ops::Range<usize>, u32)> = Vec::new();
    let mut lines = Vec::new();
    for e in &entries {
        let tok = |i: usize| e.tokens.get(i).map(|r| &text[r.clone()]);
        let first = tok(0).unwrap_or_default().to_ascii_uppercase();
        if first == "$TTL" {
            if let Some(s) = tok(1).and_then(ttl_units) {
                edits.push((e.tokens[1].clone(), s));
            }
            continue;
        }
        if first == "$ORIGIN" {
            continue;
        }
        lines.push(e.line);
        if first.starts_with('$') {
            continue;
        }
        let mut i = usize::from(!e.blank);
        for _ in 0..2 {
            match tok(i) {
                Some(t) if ttl_units(t).is_some() => {
                    edits.push((e.tokens[i].clone(), ttl_units(t).unwrap_or_default()));
                    i += 1;
                }
                Some(t) if t.bytes().all(|c| c.is_ascii_digit()) || is_class(t) => i += 1,
                _ => break,
            }
        }
        if tok(i).is_some_and(|t| t.eq_ignore_ascii_case("SOA")) {
            // MNAME RNAME SERIAL REFRESH RETRY EXPIRE MINIMUM
            for j in i + 4..=i + 7 {
                if let Some(s) = tok(j).and_then(ttl_units) {
                    edits.push((e.tokens[j].clone(), s));
                }
            }
        }
    }
    let mut out = String::with_capacity(text.len() + 1);
    let mut at = 0;
    for (r, secs) in edits {
        out.push_str(&text[at..r.start]);
        out.push_str(&secs.to_string());
        at = r.end;
    }
    out.push_str(&text[at..]);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    (out, lines)
}

fn to_domain_name(name: &Name) -> Result<domain::base::Name<Bytes>, String> {
    let mut wire = Vec::new();
    for label in name.iter() {
        wire.push(label.len() as u8);
        wire.extend_from_slice(label);
    }
    wire.push(0);
    domain::base::Name::from_octets(Bytes::from(wire)).map_err(|e| format!("bad origin: {e}"))
}

fn from_domain_name(name: &domain::base::Name<Bytes>) -> Result<Name, String> {
    let mut dec = BinDecoder::new(name.as_slice());
    Name::read(&mut dec).map_err(|e| format!("bad name {name}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{RData, RecordType};

    fn origin() -> Name {
        Name::from_ascii("example.org.").unwrap()
    }

    #[test]
    fn reads_directives_types_and_lines() {
        let text = "$ORIGIN example.org.\n\
                    $TTL 300\n\
                    ; comment\n\
                    @ IN SOA ns1 hostmaster ( 1 7200 3600\n 1209600 60 )\n\
                    \tIN NS ns1\n\
                    \n\
                    www 60 IN A 192.0.2.1\n\
                    \tIN AAAA 2001:db8::1\n\
                    txt IN TXT \"a b\" c\n\
                    dn IN DNAME example.net.\n\
                    key IN DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==\n\
                    x IN TYPE65000 \\# 2 abcd\n\
                    $ORIGIN sub.example.org.\n\
                    a IN CNAME www.example.org.\n";
        let e = parse_str(text, Path::new("db.test"), &origin()).unwrap();
        let got: Vec<_> = e
            .iter()
            .map(|e| {
                (
                    e.record.name.to_string(),
                    e.record.record_type(),
                    e.record.ttl,
                    e.line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("example.org.".into(), RecordType::SOA, 300, 4),
                ("example.org.".into(), RecordType::NS, 300, 6),
                ("www.example.org.".into(), RecordType::A, 60, 8),
                ("www.example.org.".into(), RecordType::AAAA, 300, 9),
                ("txt.example.org.".into(), RecordType::TXT, 300, 10),
                ("dn.example.org.".into(), RecordType::DNAME, 300, 11),
                ("key.example.org.".into(), RecordType::DNSKEY, 300, 12),
                ("x.example.org.".into(), RecordType::Unknown(65000), 300, 13),
                ("a.sub.example.org.".into(), RecordType::CNAME, 300, 15),
            ]
        );
        let RData::SOA(soa) = &e[0].record.data else {
            panic!()
        };
        assert_eq!(soa.mname.to_string(), "ns1.example.org.");
        assert_eq!(soa.minimum, 60);
    }

    #[test]
    fn a_panic_in_the_scanner_is_an_error_on_its_entry() {
        // Found by the zonefile fuzz target: domain 0.12.3 indexes past the end of a TXT
        // character string here (inplace.rs convert_charstr).
        let text = "0 IN 00000864 TXT(\"wil00d\"0000sETXT(\"wil00d\"0000sE";
        let origin = Name::from_ascii("example.org.").unwrap();
        let e = parse_str(text, Path::new("db.example.org"), &origin).unwrap_err();
        assert!(
            e.to_string()
                .contains("the zone file scanner failed on this entry"),
            "{e}"
        );
    }

    #[test]
    fn includes_relative_to_the_including_file_with_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inc.db"), "host IN A 192.0.2.7\n").unwrap();
        std::fs::write(
            dir.path().join("main.db"),
            "@ 60 IN SOA ns hm 1 2 3 4 5\n$INCLUDE inc.db\n$INCLUDE inc.db other.example.org.\nafter IN A 192.0.2.8\n",
        )
        .unwrap();
        let e = parse_file(&dir.path().join("main.db"), &origin()).unwrap();
        let names: Vec<_> = e.iter().map(|e| e.record.name.to_string()).collect();
        assert_eq!(
            names,
            [
                "example.org.",
                "host.example.org.",
                "host.other.example.org.",
                "after.example.org."
            ]
        );
        assert!(e[1].file.ends_with("inc.db"));
        assert_eq!((e[1].line, e[3].line), (1, 4));
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, line, want) in [
            ("@ IN SOA ns hm 1 2 3 4 5\nwww IN A 300.1.1.1\n", 2, ""),
            ("@ IN SOA ns hm 1 2 3 4 5\n\n\nwww IN BOGUS x\n", 4, ""),
            ("@ IN SOA ns hm 1 2 3 4 5\nwww IN A (192.0.2.1\n", 2, ""),
            ("$INCLUDE missing.db\n", 1, "missing.db"),
        ] {
            let e = parse_str(text, Path::new("/nonexistent/db.x"), &origin()).unwrap_err();
            assert_eq!(e.file, Path::new("/nonexistent/db.x"), "{text}");
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(
                e.to_string()
                    .starts_with(&format!("/nonexistent/db.x:{line}: "))
            );
            assert!(e.msg.contains(want), "{text}: {e}");
        }
        let e = parse_file(Path::new("/nonexistent/db.y"), &origin()).unwrap_err();
        assert_eq!(e.line, 0);
    }

    #[test]
    fn ttl_units_and_a_last_line_without_a_break() {
        let text = "$TTL 30M\n@ IN SOA ns hm ( 1 4H 1h ; refresh, retry\n 1W 2d )\nwww 1h30m IN A 192.0.2.1\nIN TXT \"1h in a string\"\nt IN 2m TXT \"last\"";
        let e = parse_str(text, Path::new("t"), &origin()).unwrap();
        let RData::SOA(soa) = &e[0].record.data else {
            panic!()
        };
        assert_eq!(
            (
                e[0].record.ttl,
                soa.refresh,
                soa.retry,
                soa.expire,
                soa.minimum
            ),
            (1800, 14400, 3600, 604800, 172800)
        );
        assert_eq!((e[1].record.ttl, e[1].line), (5400, 4));
        assert_eq!(
            e[2].record.name.to_string(),
            "IN.example.org.",
            "an owner named IN"
        );
        assert_eq!(e[2].record.data.to_string(), "1h in a string");
        assert_eq!((e[3].record.ttl, e[3].line), (120, 6));
    }
}
