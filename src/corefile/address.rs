//! Server block keys: `[SCHEME://]ZONE[:PORT]`, reverse CIDRs, normalisation
//! (core/dnsserver/register.go, plugin/normalize.go).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The transport a key asks for (its scheme).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// `dns://`: plain DNS over UDP and TCP.
    Dns,
    /// `tls://`: DNS over TLS (RFC 7858).
    Tls,
    /// `https://`: DNS over HTTPS (RFC 8484).
    Https,
}

impl Transport {
    /// The scheme as written in keys and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::Https => "https",
        }
    }

    /// CoreDNS's default port for the scheme (`dns` takes `-dns.port`).
    fn default_port(self, dns_port: u16) -> u16 {
        match self {
            Self::Dns => dns_port,
            Self::Tls => 853,
            Self::Https => 443,
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One normalised key: a lower-case fully qualified zone on a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ZoneAddr {
    /// Transport (scheme).
    pub transport: Transport,
    /// Lower-case FQDN, `.` for the root.
    pub zone: String,
    /// Port to listen on.
    pub port: u16,
}

impl fmt::Display for ZoneAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.transport, self.zone, self.port)
    }
}

/// Normalises one key; a reverse CIDR can expand to several zones.
pub fn normalize(key: &str, default_port: u16) -> Result<Vec<ZoneAddr>, String> {
    let (scheme, rest) = match key.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("dns".to_string(), key),
    };
    let transport = match scheme.as_str() {
        "dns" => Transport::Dns,
        "tls" => Transport::Tls,
        "https" => Transport::Https,
        "quic" | "grpc" | "https3" | "unix" => {
            return Err(format!(
                "transport '{scheme}' is not built in clusterdns (dns://, tls:// and https:// are): {key}"
            ));
        }
        _ => return Err(format!("unknown scheme '{scheme}' in {key}")),
    };
    let (host, port) = split_port(rest)?;
    let port = match port {
        Some(p) => p,
        None => transport.default_port(default_port),
    };
    if let Some(zones) = reverse_zones(host)? {
        return Ok(zones
            .into_iter()
            .map(|zone| ZoneAddr {
                transport,
                zone,
                port,
            })
            .collect());
    }
    let zone = fqdn(&host.to_ascii_lowercase());
    if zone.len() > 255 {
        return Err(format!("specified zone is too long: {} > 255", zone.len()));
    }
    if !is_domain_name(&zone) {
        return Err(format!("zone is not a valid domain name: {zone}"));
    }
    Ok(vec![ZoneAddr {
        transport,
        zone,
        port,
    }])
}

/// Splits `HOST:PORT`: the text after the last colon is the port when it is all digits.
fn split_port(s: &str) -> Result<(&str, Option<u16>), String> {
    let Some(i) = s.rfind(':') else {
        return Ok((s, None));
    };
    let (host, port) = (&s[..i], &s[i + 1..]);
    if port.is_empty() {
        return Err(format!("expecting data after last colon: \"{s}\""));
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        // IPv6 CIDR keys (`fd00::/8`) have colons but no port.
        if s.contains('/') {
            return Ok((s, None));
        }
        return Err(format!("invalid port '{port}' in \"{s}\""));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("invalid port '{port}' in \"{s}\""))?;
    Ok((if host.is_empty() { "." } else { host }, Some(port)))
}

/// Makes a name fully qualified.
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// RFC 1035 length rules, as Go's `dns.IsDomainName`: no empty label but the root, labels of at
/// most 63 octets.
pub fn is_domain_name(name: &str) -> bool {
    if name == "." {
        return true;
    }
    let Some(body) = name.strip_suffix('.') else {
        return false;
    };
    !body.is_empty()
        && body.split('.').all(|l| !l.is_empty() && l.len() <= 63)
        && !name.bytes().any(|b| b.is_ascii_whitespace())
}

/// `10.0.0.0/8` → `10.in-addr.arpa.`; prefixes off an octet (nibble) boundary are rounded up
/// and split into several zones. Not a CIDR → `Ok(None)`.
pub fn reverse_zones(host: &str) -> Result<Option<Vec<String>>, String> {
    let Some((ip, len)) = host.split_once('/') else {
        return Ok(None);
    };
    let invalid = || format!("invalid CIDR {host}");
    if ip.starts_with(':') || (ip.contains(':') && ip.starts_with('0')) {
        return Err(invalid());
    }
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let len: u32 = len.parse().map_err(|_| invalid())?;
    let zones = match ip {
        IpAddr::V4(v4) => {
            if len > 32 {
                return Err(invalid());
            }
            let base = u32::from(v4) & mask(len, 32) as u32;
            let rounded = len.div_ceil(8) * 8;
            let count = 1u64 << (rounded - len);
            (0..count)
                .map(|i| {
                    let addr = base as u64 + i.checked_shl(32 - rounded).unwrap_or(0);
                    let octets = Ipv4Addr::from(addr as u32).octets();
                    let mut labels: Vec<String> = octets[..(rounded / 8) as usize]
                        .iter()
                        .map(u8::to_string)
                        .collect();
                    labels.reverse();
                    labels.push("in-addr.arpa.".to_string());
                    labels.join(".")
                })
                .collect()
        }
        IpAddr::V6(v6) => {
            if len > 128 {
                return Err(invalid());
            }
            let base = u128::from(v6) & mask(len, 128);
            let rounded = len.div_ceil(4) * 4;
            let count = 1u128 << (rounded - len);
            (0..count)
                .map(|i| {
                    // A /0 has one zone (i = 0): a shift by 128 would overflow (found by fuzzing).
                    let addr = base + i.checked_shl(128 - rounded).unwrap_or(0);
                    let hex = format!("{:032x}", u128::from(Ipv6Addr::from(addr)));
                    let mut labels: Vec<String> = hex[..(rounded / 4) as usize]
                        .chars()
                        .map(|c| c.to_string())
                        .collect();
                    labels.reverse();
                    labels.push("ip6.arpa.".to_string());
                    labels.join(".")
                })
                .collect()
        }
    };
    Ok(Some(zones))
}

fn mask(len: u32, bits: u32) -> u128 {
    if len == 0 {
        0
    } else {
        let all: u128 = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        all & !((1u128 << (bits - len)) - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(key: &str) -> Result<Vec<String>, String> {
        normalize(key, 53).map(|v| v.into_iter().map(|z| z.to_string()).collect())
    }

    #[test]
    fn keys() {
        let ok: &[(&str, &[&str])] = &[
            (".", &["dns://.:53"]),
            (".:1053", &["dns://.:1053"]),
            (":1053", &["dns://.:1053"]),
            ("Example.ORG", &["dns://example.org.:53"]),
            ("dns://example.org:5300", &["dns://example.org.:5300"]),
            ("cluster.local.:53", &["dns://cluster.local.:53"]),
            ("10.0.0.0/8", &["dns://10.in-addr.arpa.:53"]),
            ("10.0.0.0/24:9053", &["dns://0.0.10.in-addr.arpa.:9053"]),
            ("0.0.0.0/0", &["dns://in-addr.arpa.:53"]),
            ("2001:db8::/32", &["dns://8.b.d.0.1.0.0.2.ip6.arpa.:53"]),
            // cidr.Reverse of a /0 walks past every label: the whole tree (found by fuzzing,
            // where a shift by 128 overflowed).
            ("23:ff9b::/0", &["dns://ip6.arpa.:53"]),
            // Default ports by scheme (register.go); the -dns.port flag is for dns:// only.
            ("tls://.", &["tls://.:853"]),
            ("TLS://example.org:5553", &["tls://example.org.:5553"]),
            ("https://.", &["https://.:443"]),
            ("https://example.org:8443", &["https://example.org.:8443"]),
            ("tls://10.0.0.0/24", &["tls://0.0.10.in-addr.arpa.:853"]),
        ];
        for (key, want) in ok {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(zones(key), Ok(want), "{key}");
        }
    }

    #[test]
    fn cidr_rounding() {
        let z = zones("10.0.0.0/17").unwrap();
        assert_eq!(z.len(), 128);
        assert_eq!(z[0], "dns://0.0.10.in-addr.arpa.:53");
        assert_eq!(z[127], "dns://127.0.10.in-addr.arpa.:53");
        assert_eq!(zones("10.0.0.0/27").unwrap().len(), 32);
        assert_eq!(zones("fd00::/7").unwrap().len(), 2);
    }

    #[test]
    fn errors() {
        let bad: &[(&str, &str)] = &[
            ("grpc://.", "transport 'grpc' is not built in clusterdns"),
            ("quic://.", "transport 'quic' is not built in clusterdns"),
            (
                "https3://.",
                "transport 'https3' is not built in clusterdns",
            ),
            (
                "unix:///run/dns.sock",
                "transport 'unix' is not built in clusterdns",
            ),
            ("tls://.:", "expecting data after last colon"),
            ("foo://.", "unknown scheme"),
            ("example.org:", "expecting data after last colon"),
            (".:70000", "invalid port"),
            ("example.org:dns", "invalid port 'dns'"),
            ("a..b", "not a valid domain name"),
            ("10.0.0.0/33", "invalid CIDR"),
            ("::/0", "invalid CIDR"),
            (&"a".repeat(300), "too long"),
        ];
        for (key, want) in bad {
            let err = zones(key).unwrap_err();
            assert!(err.contains(want), "{key}: {err}");
        }
    }
}
