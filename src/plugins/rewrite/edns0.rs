//! `rewrite edns0 local|nsid|subnet set|append|replace|unset … [revert]` (CoreDNS's
//! plugin/rewrite/edns0.go): EDNS0 options of the request the rest of the chain sees.

use std::net::IpAddr;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption, NSIDPayload};

use crate::plugins::Request;
use crate::plugins::metadata::is_label;
use crate::plugins::response::code_of;

/// What the rule does with a matching option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace it, or add one if there is none.
    Set,
    /// Add one only if there is none.
    Append,
    /// Replace it only if there is one.
    Replace,
    /// Remove it.
    Unset,
}

/// The data of a `local` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Literal bytes (`0x…` hex, or the text itself).
    Bytes(Vec<u8>),
    /// `{qname}`, `{qtype}`, `{client_ip}`, `{client_port}`, `{protocol}`, `{server_ip}`,
    /// `{server_port}`, or a metadata label `{plugin/name}`.
    Var(String),
}

/// Which option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opt {
    /// EDNS0_LOCAL: a code and its data.
    Local(u16, Data),
    /// NSID, always with empty data.
    Nsid,
    /// Client subnet from the client's address, cut to these prefix lengths.
    Subnet {
        /// IPv4 prefix length.
        v4: u8,
        /// IPv6 prefix length.
        v6: u8,
    },
}

/// One `edns0` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edns0Rule {
    /// The action.
    pub action: Action,
    /// The option.
    pub opt: Opt,
    /// `revert`: the reply shows the option as it was before this rule.
    pub revert: bool,
}

const VARIABLES: &[&str] = &[
    "{qname}",
    "{qtype}",
    "{client_ip}",
    "{client_port}",
    "{protocol}",
    "{server_ip}",
    "{server_port}",
];

/// Go's `strconv.ParseUint(s, 0, bits)`: decimal, `0x` hex, `0o`/`0` octal, `0b` binary.
fn parse_uint(s: &str, max: u64) -> Result<u64, String> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (b, 2)
    } else if let Some(o) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (o, 8)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    let v = u64::from_str_radix(digits, radix)
        .map_err(|_| format!("strconv.ParseUint: parsing \"{s}\": invalid syntax"))?;
    if v > max {
        return Err(format!(
            "strconv.ParseUint: parsing \"{s}\": value out of range"
        ));
    }
    Ok(v)
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("encoding/hex: odd length hex string".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|_| format!("encoding/hex: invalid byte in \"{s}\""))
        })
        .collect()
}

/// Parses the words after `edns0` (CoreDNS's `newEdns0Rule`).
pub fn parse(args: &[String]) -> Result<Edns0Rule, String> {
    if args.len() < 2 {
        return Err("too few arguments for an EDNS0 rule".into());
    }
    let kind = args[0].to_ascii_lowercase();
    let action = match args[1].to_ascii_lowercase().as_str() {
        "set" => Action::Set,
        "append" => Action::Append,
        "replace" => Action::Replace,
        "unset" => Action::Unset,
        other => return Err(format!("invalid action: \"{other}\"")),
    };
    if action == Action::Unset {
        let opt = match (kind.as_str(), args.len()) {
            ("local", 3) => Opt::Local(parse_uint(&args[2], 0xffff)? as u16, Data::Bytes(vec![])),
            ("local", _) => return Err("local unset action requires exactly two arguments".into()),
            ("nsid", 2) => Opt::Nsid,
            ("nsid", _) => return Err("nsid unset action requires exactly one argument".into()),
            ("subnet", 2) => Opt::Subnet { v4: 0, v6: 0 },
            ("subnet", _) => return Err("subnet unset action requires exactly one argument".into()),
            _ => return Err(format!("invalid rule type \"{kind}\"")),
        };
        return Ok(Edns0Rule {
            action,
            opt,
            revert: false,
        });
    }
    let (args, revert) = match args.split_last() {
        Some((last, rest)) if last == "revert" => (rest, true),
        _ => (args, false),
    };
    let opt = match kind.as_str() {
        "local" => {
            let [_, _, code, data] = args else {
                return Err("EDNS0 local rules require three or four args".into());
            };
            let code = parse_uint(code, 0xffff)? as u16;
            let data = if data.starts_with('{') && data.ends_with('}') {
                let label = &data[1..data.len() - 1];
                if !VARIABLES.contains(&data.as_str()) && !is_label(label) {
                    return Err(format!("unsupported variable name \"{data}\""));
                }
                Data::Var(data.clone())
            } else if let Some(h) = data.strip_prefix("0x") {
                Data::Bytes(hex(h)?)
            } else {
                Data::Bytes(data.as_bytes().to_vec())
            };
            Opt::Local(code, data)
        }
        "nsid" => {
            if args.len() != 2 {
                return Err("EDNS0 NSID rules can accept no more than one arg".into());
            }
            Opt::Nsid
        }
        "subnet" => {
            let [_, _, v4, v6] = args else {
                return Err("EDNS0 subnet rules require three or four args".into());
            };
            let v4 = parse_uint(v4, u64::from(u16::MAX))?;
            if v4 > 32 {
                return Err(format!("invalid IPv4 bit mask length {v4}"));
            }
            let v6 = parse_uint(v6, u64::from(u16::MAX))?;
            if v6 > 128 {
                return Err(format!("invalid IPv6 bit mask length {v6}"));
            }
            Opt::Subnet {
                v4: v4 as u8,
                v6: v6 as u8,
            }
        }
        _ => return Err(format!("invalid rule type \"{kind}\"")),
    };
    Ok(Edns0Rule {
        action,
        opt,
        revert,
    })
}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn masked(ip: IpAddr, v4: u8, v6: u8) -> (IpAddr, u8) {
    match ip.to_canonical() {
        IpAddr::V4(a) => {
            let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            (IpAddr::V4(bits.into()), v4)
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a) & u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            (IpAddr::V6(bits.into()), v6)
        }
    }
}

impl Edns0Rule {
    /// The option code the rule works on.
    pub fn code(&self) -> u16 {
        match self.opt {
            Opt::Local(c, _) => c,
            Opt::Nsid => u16::from(EdnsCode::NSID),
            Opt::Subnet { .. } => u16::from(EdnsCode::Subnet),
        }
    }

    /// The option to put in `req`, or `None` when the rule does not apply (a variable without
    /// a value).
    fn option(&self, req: &Request) -> Option<EdnsOption> {
        Some(match &self.opt {
            Opt::Local(code, Data::Bytes(b)) => EdnsOption::Unknown(*code, b.clone()),
            Opt::Local(code, Data::Var(v)) => {
                let data = match v.as_str() {
                    "{qname}" => req.qname_sent().as_bytes().to_vec(),
                    "{qtype}" => u16::from(req.qtype()).to_be_bytes().to_vec(),
                    "{client_ip}" => ip_bytes(req.src.ip()),
                    "{server_ip}" => ip_bytes(req.local.ip()),
                    "{client_port}" => req.src.port().to_be_bytes().to_vec(),
                    "{server_port}" => req.local.port().to_be_bytes().to_vec(),
                    "{protocol}" => req.proto.as_str().as_bytes().to_vec(),
                    label => req
                        .meta(&label[1..label.len() - 1])
                        .filter(|v| !v.is_empty())?
                        .as_bytes()
                        .to_vec(),
                };
                EdnsOption::Unknown(*code, data)
            }
            Opt::Nsid => EdnsOption::NSID(NSIDPayload::new(Vec::new()).ok()?),
            Opt::Subnet { v4, v6 } => {
                let (addr, prefix) = masked(req.src.ip(), *v4, *v6);
                EdnsOption::Subnet(ClientSubnet::new(addr, prefix, 0))
            }
        })
    }

    /// Applies the rule to `req`'s OPT record (made, with a 4096-byte buffer, when the client
    /// sent none): whether it did something, and the option as it was before.
    pub fn apply(&self, req: &mut Request) -> (bool, Option<EdnsOption>) {
        let code = self.code();
        let before = req.edns.as_ref().and_then(|e| {
            e.options()
                .as_ref()
                .iter()
                .find(|(_, o)| code_of(o) == code)
                .map(|(_, o)| o.clone())
        });
        // A variable without a value leaves the request alone; any other rule gives it an OPT
        // record, whether or not it then changes an option (as CoreDNS's setupEdns0Opt).
        let option = match self.action {
            Action::Unset => None,
            _ => match self.option(req) {
                Some(o) => Some(o),
                None => return (false, before),
            },
        };
        let edns = req.edns.get_or_insert_with(|| {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e
        });
        if matches!(
            (self.action, &before),
            (Action::Replace, None) | (Action::Append, Some(_))
        ) {
            return (false, before);
        }
        let new = option;
        edns.options_mut().remove(EdnsCode::from(code));
        if let Some(o) = new {
            edns.options_mut().insert(o);
        }
        (true, before)
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::plugins::Proto;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn coredns_rule_table() {
        // The edns0 rows of CoreDNS's TestNewRule (plugin/rewrite/rewrite_test.go):
        // (arguments after `edns0`, should fail).
        for (args, fails) in [
            ("", true),
            ("unknown-rule-type set", true),
            ("unknown-rule-type unset", true),
            ("local", true),
            ("local set", true),
            ("local set 0xffee", true),
            ("local set invalid-uint abcdefg", true),
            ("local set 65518 abcdefg", false),
            ("local set 0xffee abcdefg", false),
            ("local set 0xffee abcdefg revert", false),
            ("local append 0xffee abcdefg", false),
            ("local append 0xffee abcdefg revert", false),
            ("local replace 0xffee abcdefg", false),
            ("local replace 0xffee abcdefg revert", false),
            ("local unset 0xffee", false),
            ("local unset 0xffee abcdefg", true),
            ("local unset 0xffee revert", true),
            ("local foo 0xffee abcdefg", true),
            ("local set 0xffee 0xabcdefg", true),
            ("nsid set junk", true),
            ("nsid set", false),
            ("nsid set revert", false),
            ("nsid append", false),
            ("nsid append revert", false),
            ("nsid replace", false),
            ("nsid replace revert", false),
            ("nsid unset", false),
            ("nsid unset revert", true),
            ("nsid foo", true),
            ("local set invalid-uint {qname}", true),
            ("local set 0xffee {dummy}", true),
            ("local set 0xffee {qname}", false),
            ("local set 0xffee {qtype}", false),
            ("local set 0xffee {client_ip}", false),
            ("local set 0xffee {client_port}", false),
            ("local set 0xffee {protocol}", false),
            ("local set 0xffee {server_ip}", false),
            ("local set 0xffee {server_port}", false),
            ("local set 0xffee {server_port} revert", false),
            ("local append 0xffee {dummy}", true),
            ("local append 0xffee {qname}", false),
            ("local replace 0xffee {dummy}", true),
            ("local replace 0xffee {server_port} revert", false),
            ("local set 0xffee {test/label}", false),
            ("subnet set -1 56", true),
            ("subnet set 24 -56", true),
            ("subnet set 33 56", true),
            ("subnet set 24 129", true),
            ("subnet set 24 56", false),
            ("subnet set 24 56 revert", false),
            ("subnet append 24 56", false),
            ("subnet append 24 56 72", true),
            ("subnet append 24 56 revert", false),
            ("subnet replace 24 56", false),
            ("subnet replace 24 56 revert", false),
            ("subnet unset", false),
            ("subnet unset 24 56", true),
            ("subnet unset revert", true),
        ] {
            assert_eq!(
                parse(&words(args)).is_err(),
                fails,
                "edns0 {args}: {:?}",
                parse(&words(args))
            );
        }
        for (args, want) in [
            ("local set 0xffee 0x61626364", Data::Bytes(b"abcd".to_vec())),
            ("local set 0xffee abcd", Data::Bytes(b"abcd".to_vec())),
            (
                "local set 65518 {client_ip}",
                Data::Var("{client_ip}".into()),
            ),
        ] {
            assert_eq!(
                parse(&words(args)).unwrap().opt,
                Opt::Local(0xffee, want),
                "{args}"
            );
        }
        assert_eq!(parse_uint("0177", 0xffff), Ok(127));
    }

    fn req(src: &str) -> Request {
        let mut r = Request::new(
            Name::from_ascii("example.com.").unwrap(),
            RecordType::A,
            src.parse().unwrap(),
            Proto::Udp,
        );
        r.local = "127.0.0.1:53".parse().unwrap();
        r
    }

    fn apply(args: &str, r: &mut Request) -> bool {
        parse(&words(args)).unwrap().apply(r).0
    }

    fn opts(r: &Request) -> Vec<EdnsOption> {
        r.edns.as_ref().map_or(vec![], |e| {
            e.options()
                .as_ref()
                .iter()
                .map(|(_, o)| o.clone())
                .collect()
        })
    }

    #[test]
    fn coredns_local_nsid_and_variable_tables() {
        // CoreDNS's TestRewriteEDNS0Local: a request without options.
        let local = |d: &[u8]| EdnsOption::Unknown(0xffee, d.to_vec());
        let nsid = EdnsOption::NSID(NSIDPayload::new(vec![]).unwrap());
        for (args, want) in [
            (
                "local set 0xffee 0xabcdef",
                vec![local(&[0xab, 0xcd, 0xef])],
            ),
            (
                "local append 0xffee abcdefghijklmnop",
                vec![local(b"abcdefghijklmnop")],
            ),
            ("local replace 0xffee abcdefghijklmnop", vec![]),
            ("nsid set", vec![nsid.clone()]),
            ("nsid append", vec![nsid.clone()]),
            ("nsid replace", vec![]),
        ] {
            let mut r = req("10.240.0.1:40212");
            apply(args, &mut r);
            assert_eq!(opts(&r), want, "{args}");
            assert_eq!(
                r.edns.as_ref().map(|e| e.max_payload()),
                Some(4096),
                "{args}"
            );
        }
        // CoreDNS's TestRewriteEDNS0LocalVariable: the test writer's addresses.
        for (args, want) in [
            ("local set 0xffee {qname}", Some(b"example.com.".to_vec())),
            ("local set 0xffee {qtype}", Some(vec![0x00, 0x01])),
            (
                "local set 0xffee {client_ip}",
                Some(vec![0x0A, 0xF0, 0x00, 0x01]),
            ),
            ("local set 0xffee {client_port}", Some(vec![0x9D, 0x14])),
            ("local set 0xffee {protocol}", Some(b"udp".to_vec())),
            ("local set 0xffee {server_port}", Some(vec![0x00, 0x35])),
            (
                "local set 0xffee {server_ip}",
                Some(vec![0x7F, 0x00, 0x00, 0x01]),
            ),
            ("local set 0xffee {test/label}", Some(b"my-value".to_vec())),
            ("local set 0xffee {test/empty}", None),
            ("local set 0xffee {test/does-not-exist}", None),
        ] {
            let mut r = req("10.240.0.1:40212");
            let mut meta = crate::plugins::metadata::Meta::default();
            meta.set("test/label", "my-value");
            meta.set("test/empty", "");
            r.meta = Some(std::sync::Arc::new(meta));
            let done = apply(args, &mut r);
            assert_eq!(done, want.is_some(), "{args}");
            assert_eq!(
                opts(&r),
                want.into_iter().map(|d| local(&d)).collect::<Vec<_>>(),
                "{args}"
            );
        }
        // Append keeps an existing option; replace and set change it; unset removes it.
        let mut r = req("10.240.0.1:40212");
        apply("local set 0xffee one", &mut r);
        assert!(!apply("local append 0xffee two", &mut r));
        assert_eq!(opts(&r), [local(b"one")]);
        assert!(apply("local replace 0xffee three", &mut r));
        assert_eq!(opts(&r), [local(b"three")]);
        assert!(apply("local unset 0xffee", &mut r));
        assert!(opts(&r).is_empty());
    }

    #[test]
    fn coredns_subnet_table() {
        // CoreDNS's TestRewriteEDNS0Subnet: the test writers' clients are 10.240.0.1 and
        // fe80::42:ff:feca:4c65.
        for (src, args, addr, prefix) in [
            ("10.240.0.1:40212", "subnet set 24 56", "10.240.0.0", 24),
            ("10.240.0.1:40212", "subnet set 32 56", "10.240.0.1", 32),
            ("10.240.0.1:40212", "subnet set 0 56", "0.0.0.0", 0),
            (
                "[fe80::42:ff:feca:4c65]:40212",
                "subnet set 24 56",
                "fe80::",
                56,
            ),
            (
                "[fe80::42:ff:feca:4c65]:40212",
                "subnet set 24 128",
                "fe80::42:ff:feca:4c65",
                128,
            ),
            ("[fe80::42:ff:feca:4c65]:40212", "subnet set 24 0", "::", 0),
            // A v4 client of a dual-stack socket is a v4 client.
            ("[::ffff:192.0.2.77]:1", "subnet set 24 56", "192.0.2.0", 24),
        ] {
            let mut r = req(src);
            apply(args, &mut r);
            let want = EdnsOption::Subnet(ClientSubnet::new(addr.parse().unwrap(), prefix, 0));
            assert_eq!(opts(&r), [want], "{src} {args}");
        }
    }
}
