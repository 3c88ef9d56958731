//! `dns64`: synthesizes AAAA records from A records for IPv6-only clients (RFC 6147, plugin/dns64).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::AAAA;
use hickory_proto::rr::{RData, Record, RecordType};

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "dns64";

/// A parsed `dns64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dns64Config {
    /// The translation prefix (default 64:ff9b::/96).
    pub prefix: Ipv6Addr,
    /// Its length: 32, 40, 48, 56, 64 or 96.
    pub len: u8,
    /// Synthesize even when real AAAA records exist.
    pub translate_all: bool,
    /// Also for clients that asked over IPv4.
    pub allow_ipv4: bool,
}

fn parse_prefix(d: &Dispenser<'_>, s: &str) -> Result<(Ipv6Addr, u8), Error> {
    let bad = || d.err(format!("invalid netmask: {s}"));
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv6Addr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if ![32, 40, 48, 56, 64, 96].contains(&len) {
        return Err(d.err(format!(
            "invalid prefix length: {s}: must be one of 32, 40, 48, 56, 64 or 96"
        )));
    }
    let bits = u128::from(ip);
    if len < 128 && bits & (u128::MAX >> len) != 0 {
        return Err(d.err(format!("invalid prefix: {s}: host bits must be zero")));
    }
    Ok((ip, len))
}

/// Parses `dns64 [PREFIX] { prefix PREFIX; translate_all; allow_ipv4 }`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<Dns64Config, Error> {
    d.next();
    let mut c = Dns64Config {
        prefix: "64:ff9b::".parse().expect("literal"),
        len: 96,
        translate_all: false,
        allow_ipv4: false,
    };
    let args = d.remaining_args();
    match args.as_slice() {
        [] => {}
        [p] => (c.prefix, c.len) = parse_prefix(d, p)?,
        _ => return Err(d.arg_err()),
    }
    while d.next_block() {
        match d.val() {
            "prefix" => {
                let p = d.single_arg()?;
                (c.prefix, c.len) = parse_prefix(d, &p)?;
            }
            "translate_all" => {
                d.expect_no_more_args()?;
                c.translate_all = true;
            }
            "allow_ipv4" => {
                d.expect_no_more_args()?;
                c.allow_ipv4 = true;
            }
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    Ok(c)
}

/// Embeds `v4` in `prefix/len` as RFC 6052 §2.2 says (bits 64–71 stay zero).
pub fn embed(prefix: Ipv6Addr, len: u8, v4: Ipv4Addr) -> Ipv6Addr {
    let mut b = prefix.octets();
    let v = v4.octets();
    let start = usize::from(len / 8);
    let mut i = start;
    for octet in v {
        if i == 8 {
            i += 1; // the u-octet
        }
        b[i] = octet;
        i += 1;
    }
    Ipv6Addr::from(b)
}

/// The handler.
pub struct Dns64 {
    cfg: Dns64Config,
}

impl Dns64 {
    /// A handler for `cfg`.
    pub fn handler(cfg: Dns64Config) -> Arc<dyn Handler> {
        Arc::new(Self { cfg })
    }
}

#[async_trait::async_trait]
impl Handler for Dns64 {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let from_v6 = req.src.ip().to_canonical().is_ipv6();
        if req.qtype() != RecordType::AAAA || !(self.cfg.allow_ipv4 || from_v6) {
            return next.run(req).await;
        }
        let resp = next.run(req).await?;
        let m = &resp.msg;
        let has_aaaa = m
            .answers
            .iter()
            .any(|r| r.record_type() == RecordType::AAAA);
        let translate = m.metadata.response_code == ResponseCode::NoError
            && (self.cfg.translate_all || !has_aaaa);
        if !translate {
            return Ok(resp);
        }
        let Ok(a) = req.lookup(req.qname().clone(), RecordType::A).await else {
            return Ok(resp);
        };
        let soa_min = m
            .authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(s) => Some(s.minimum.min(r.ttl)),
                _ => None,
            })
            .unwrap_or(u32::MAX);
        let mut answers = Vec::new();
        let mut synthesized = 0;
        for r in &a.answers {
            match &r.data {
                RData::A(v4) => {
                    let mut aaaa = Record::from_rdata(
                        r.name.clone(),
                        r.ttl.min(soa_min),
                        RData::AAAA(AAAA(embed(self.cfg.prefix, self.cfg.len, v4.0))),
                    );
                    aaaa.dns_class = r.dns_class;
                    answers.push(aaaa);
                    synthesized += 1;
                }
                _ => answers.push(r.clone()),
            }
        }
        if synthesized == 0 {
            return Ok(resp);
        }
        let mut msg = req.reply();
        msg.metadata.authoritative = m.metadata.authoritative;
        msg.metadata.recursion_available = m.metadata.recursion_available;
        msg.add_answers(answers);
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc as StdArc;

    use super::*;
    use crate::corefile::lexer::lex;

    #[test]
    fn rfc6052_embedding() {
        let v4: Ipv4Addr = "192.0.2.33".parse().unwrap();
        let cases = [
            ("2001:db8::", 32, "2001:db8:c000:221::"),
            ("2001:db8:100::", 40, "2001:db8:1c0:2:21::"),
            ("2001:db8:122::", 48, "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::", 56, "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::", 64, "2001:db8:122:344:c0:2:2100:0"),
            ("64:ff9b::", 96, "64:ff9b::c000:221"),
        ];
        for (p, len, want) in cases {
            assert_eq!(
                embed(p.parse().unwrap(), len, v4).to_string(),
                want,
                "/{len}"
            );
        }
    }

    #[test]
    fn setup() {
        let run = |s: &str| {
            let toks = lex(&StdArc::from("Corefile"), s);
            parse(&mut Dispenser::new(&toks))
        };
        let c = run("dns64").unwrap();
        assert_eq!((c.prefix.to_string(), c.len), ("64:ff9b::".to_string(), 96));
        let c = run("dns64 {\n prefix 2001:db8::/64\n translate_all\n allow_ipv4\n}").unwrap();
        assert!(c.translate_all && c.allow_ipv4 && c.len == 64);
        assert!(
            run("dns64 2001:db8::/33")
                .unwrap_err()
                .to_string()
                .contains("invalid prefix length")
        );
        assert!(
            run("dns64 2001:db8::1/96")
                .unwrap_err()
                .to_string()
                .contains("host bits")
        );
        assert!(
            run("dns64 {\n bogus\n}")
                .unwrap_err()
                .to_string()
                .contains("unknown property")
        );
    }
}
