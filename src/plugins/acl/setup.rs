//! `acl [ZONES...] { ACTION [type QTYPE...] [net SOURCE...] }` → [`AclConfig`]
//! (CoreDNS's plugin/acl/setup.go).

use hickory_proto::rr::RecordType;
use ipnet::IpNet;

use crate::corefile::{Dispenser, Error};
use crate::plugins::origins;

/// What a matching policy does with the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let it through; later rules are not looked at.
    Allow,
    /// REFUSED with Extended DNS Error 15 (Blocked).
    Block,
    /// NOERROR with no records and Extended DNS Error 17 (Filtered).
    Filter,
    /// No reply at all.
    Drop,
}

/// One `ACTION [type …] [net …]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The action.
    pub action: Action,
    /// Query types it matches (`None`: every type, `type *` or no `type` section).
    pub qtypes: Option<Vec<RecordType>>,
    /// Client networks it matches (`None`: every address, `net *` or no `net` section).
    pub nets: Option<Vec<IpNet>>,
}

/// One `acl` directive: its zones and its policies, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Zones (default: the block's).
    pub zones: Vec<String>,
    /// Policies, first match wins.
    pub policies: Vec<Policy>,
}

/// Every `acl` line of a block, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    /// The rules.
    pub rules: Vec<Rule>,
}

fn is_section(t: &str) -> bool {
    t.eq_ignore_ascii_case("type") || t.eq_ignore_ascii_case("net")
}

/// A CIDR, or a single address (as `/32` or `/128`, CoreDNS's `normalize`).
pub fn parse_net(token: &str) -> Option<IpNet> {
    if token.contains('/') {
        return token.parse().ok();
    }
    token.parse::<std::net::IpAddr>().ok().map(IpNet::from)
}

fn policy(d: &Dispenser<'_>, action: &str, args: &[String]) -> Result<Policy, Error> {
    let action = match action.to_ascii_lowercase().as_str() {
        "allow" => Action::Allow,
        "block" => Action::Block,
        "filter" => Action::Filter,
        "drop" => Action::Drop,
        _ => {
            return Err(d.err(format!(
                "unexpected token \"{action}\"; expect 'allow', 'block', 'filter' or 'drop'"
            )));
        }
    };
    let (mut types, mut all_types, mut has_type) = (Vec::new(), false, false);
    let (mut nets, mut all_nets, mut has_net) = (Vec::new(), false, false);
    let mut rest = args;
    while let Some((section, tail)) = rest.split_first() {
        if !is_section(section) {
            return Err(d.err(format!(
                "unexpected token \"{section}\"; expect 'type | net'"
            )));
        }
        let n = tail.iter().take_while(|t| !is_section(t)).count();
        let (tokens, next) = tail.split_at(n);
        rest = next;
        let section = section.to_ascii_lowercase();
        if tokens.is_empty() {
            return Err(d.err(format!("no token specified in \"{section}\" section")));
        }
        // As CoreDNS: `*` matches everything; what follows it in the section is not read.
        if section == "type" {
            has_type = true;
            for t in tokens {
                if t == "*" {
                    all_types = true;
                    break;
                }
                let qtype = t
                    .parse::<RecordType>()
                    .ok()
                    .filter(|q| !matches!(q, RecordType::Unknown(_)) && t.to_uppercase() == *t)
                    .ok_or_else(|| {
                        d.err(format!("unexpected token \"{t}\"; expect legal QTYPE"))
                    })?;
                types.push(qtype);
            }
        } else {
            has_net = true;
            for t in tokens {
                if t == "*" {
                    all_nets = true;
                    break;
                }
                let net =
                    parse_net(t).ok_or_else(|| d.err(format!("illegal CIDR notation \"{t}\"")))?;
                nets.push(net);
            }
        }
    }
    // No `type` section: every type; no `net` section: every address.
    let p = Policy {
        action,
        qtypes: (has_type && !all_types).then_some(types),
        nets: (has_net && !all_nets).then_some(nets),
    };
    Ok(p)
}

/// Parses every `acl` line of a block.
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<AclConfig, Error> {
    let mut rules = Vec::new();
    while d.next() {
        let args = d.remaining_args();
        let zones = origins(&args, block_zones).map_err(|e| d.err(e))?;
        let mut policies = Vec::new();
        while d.next_block() {
            let action = d.val().to_string();
            let args = d.remaining_args();
            policies.push(policy(d, &action, &args)?);
        }
        rules.push(Rule { zones, policies });
    }
    Ok(AclConfig { rules })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<AclConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks), &[".".to_string()])
    }

    /// CoreDNS's TestSetup table (plugin/acl/setup_test.go): (name, config, should fail).
    const SETUP: &[(&str, &str, bool)] = &[
        (
            "Blacklist 1",
            "acl {\n block type A net 192.168.0.0/16\n}",
            false,
        ),
        (
            "Blacklist 2",
            "acl {\n block type * net 192.168.0.0/16\n}",
            false,
        ),
        ("Blacklist 3", "acl {\n block type A net *\n}", false),
        (
            "Blacklist 4",
            "acl {\n allow type * net 192.168.1.0/24\n block type * net 192.168.0.0/16\n}",
            false,
        ),
        (
            "Filter 1",
            "acl {\n filter type A net 192.168.0.0/16\n}",
            false,
        ),
        (
            "Whitelist 1",
            "acl {\n allow type * net 192.168.0.0/16\n block type * net *\n}",
            false,
        ),
        ("Drop 1", "acl {\n drop type * net 192.168.0.0/16\n}", false),
        (
            "fine-grained 1",
            "acl a.example.org {\n block type * net 192.168.1.0/24\n}",
            false,
        ),
        (
            "fine-grained 2",
            "acl a.example.org {\n block type * net 192.168.1.0/24\n}\nacl b.example.org {\n block type * net 192.168.2.0/24\n}",
            false,
        ),
        (
            "Multiple Networks 1",
            "acl example.org {\n block type * net 192.168.1.0/24 192.168.3.0/24\n}",
            false,
        ),
        (
            "Multiple Qtypes 1",
            "acl example.org {\n block type TXT ANY CNAME net 192.168.3.0/24\n}",
            false,
        ),
        (
            "Missing argument 1",
            "acl {\n block A net 192.168.0.0/16\n}",
            true,
        ),
        (
            "Missing argument 2",
            "acl {\n block type net 192.168.0.0/16\n}",
            true,
        ),
        (
            "Illegal argument 1",
            "acl {\n block type ABC net 192.168.0.0/16\n}",
            true,
        ),
        (
            "Illegal argument 2",
            "acl {\n blck type A net 192.168.0.0/16\n}",
            true,
        ),
        (
            "Illegal argument 3",
            "acl {\n block type A net 192.168.0/16\n}",
            true,
        ),
        (
            "Illegal argument 4",
            "acl {\n block type A net 192.168.0.0/33\n}",
            true,
        ),
        (
            "Blacklist 1 IPv6",
            "acl {\n block type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}",
            false,
        ),
        (
            "Blacklist 2 IPv6",
            "acl {\n block type * net 2001:db8:85a3::8a2e:370:7334\n}",
            false,
        ),
        ("Blacklist 3 IPv6", "acl {\n block type A\n}", false),
        (
            "Blacklist 4 IPv6",
            "acl {\n allow net 2001:db8:abcd:0012::0/64\n block net 2001:db8:abcd:0012::0/48\n}",
            false,
        ),
        (
            "Filter 1 IPv6",
            "acl {\n filter type A net 2001:0db8:85a3:0000:0000:8a2e:0370:7334\n}",
            false,
        ),
        (
            "Whitelist 1 IPv6",
            "acl {\n allow net 2001:db8:abcd:0012::0/64\n block\n}",
            false,
        ),
        (
            "Drop 1 IPv6",
            "acl {\n drop net 2001:db8:abcd:0012::0/64\n}",
            false,
        ),
        (
            "fine-grained 1 IPv6",
            "acl a.example.org {\n block net 2001:db8:abcd:0012::0/64\n}",
            false,
        ),
        (
            "fine-grained 2 IPv6",
            "acl a.example.org {\n block net 2001:db8:abcd:0012::0/64\n}\nacl b.example.org {\n block net 2001:db8:abcd:0013::0/64\n}",
            false,
        ),
        (
            "Multiple Networks 1 IPv6",
            "acl example.org {\n block net 2001:db8:abcd:0012::0/64 2001:db8:85a3::8a2e:370:7334/64\n}",
            false,
        ),
        (
            "Illegal argument 1 IPv6",
            "acl {\n block type A net 2001::85a3::8a2e:370:7334\n}",
            true,
        ),
        (
            "Illegal argument 2 IPv6",
            "acl {\n block type A net 2001:db8:85a3:::8a2e:370:7334\n}",
            true,
        ),
    ];

    #[test]
    fn coredns_setup_table() {
        for (name, config, fails) in SETUP {
            assert_eq!(run(config).is_err(), *fails, "{name}: {:?}", run(config));
        }
    }

    #[test]
    fn error_messages_name_the_bad_token() {
        for (input, want) in [
            (
                "acl {\n blck type A\n}",
                "Corefile:2 - Error during parsing: unexpected token \"blck\"; expect 'allow', 'block', 'filter' or 'drop'",
            ),
            (
                "acl {\n block A net 10.0.0.0/8\n}",
                "unexpected token \"A\"; expect 'type | net'",
            ),
            (
                "acl {\n block type net 10.0.0.0/8\n}",
                "no token specified in \"type\" section",
            ),
            (
                "acl {\n block type ABC\n}",
                "unexpected token \"ABC\"; expect legal QTYPE",
            ),
            (
                "acl {\n block net 192.168.0/16\n}",
                "illegal CIDR notation \"192.168.0/16\"",
            ),
        ] {
            let e = run(input).unwrap_err().to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
    }

    #[test]
    fn normalize_and_defaults() {
        // CoreDNS's TestNormalize: a bare address is a /32 or /128; a host-bit CIDR is kept.
        assert_eq!(
            parse_net("10.218.10.8/24").unwrap().to_string(),
            "10.218.10.8/24"
        );
        assert_eq!(
            parse_net("10.218.10.8").unwrap().to_string(),
            "10.218.10.8/32"
        );
        assert_eq!(
            parse_net("2001:0db8:85a3:0000:0000:8a2e:0370:7334")
                .unwrap()
                .to_string(),
            "2001:db8:85a3::8a2e:370:7334/128"
        );
        let c = run("acl example.org {\n block\n allow type A AAAA net 10.0.0.0/8\n}").unwrap();
        assert_eq!(c.rules[0].zones, ["example.org."]);
        let [block, allow] = &c.rules[0].policies[..] else {
            panic!()
        };
        assert_eq!(
            (block.action, &block.qtypes, &block.nets),
            (Action::Block, &None, &None)
        );
        assert_eq!(allow.qtypes, Some(vec![RecordType::A, RecordType::AAAA]));
        assert_eq!(allow.nets.as_ref().unwrap().len(), 1);
        // `*` anywhere in a section means all, as in CoreDNS.
        let c = run("acl {\n block type A * net 10.0.0.1 *\n}").unwrap();
        assert_eq!(
            (&c.rules[0].policies[0].qtypes, &c.rules[0].policies[0].nets),
            (&None, &None)
        );
    }
}
