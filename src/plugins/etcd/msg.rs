//! The SkyDNS message stored in etcd, and the mapping between DNS names and etcd keys
//! (CoreDNS's plugin/etcd/msg): `www.example.org.` lives under `/skydns/org/example/www/…`.

use std::net::IpAddr;

use serde::Deserialize;

/// One record as SkyDNS, CoreDNS and external-dns's CoreDNS provider write it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(default)]
pub struct Service {
    /// An IPv4/IPv6 address (A/AAAA) or a name (CNAME, SRV/MX target).
    pub host: String,
    /// SRV port.
    pub port: i64,
    /// SRV priority / MX preference (default 10).
    pub priority: i64,
    /// SRV weight (default 100 when computing shares).
    pub weight: i64,
    /// TXT text.
    pub text: String,
    /// Also an MX record.
    pub mail: bool,
    /// TTL (default 300).
    pub ttl: u32,
    /// Labels stripped from the left of a synthesized SRV/MX/NS target.
    pub targetstrip: usize,
    /// Records with the same group are answered together.
    pub group: String,
    /// The etcd key it was found at (not part of the JSON).
    #[serde(skip)]
    pub key: String,
}

/// What the `host` field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostType {
    /// An IPv4 address.
    A(std::net::Ipv4Addr),
    /// An IPv6 address.
    Aaaa(std::net::Ipv6Addr),
    /// A name (or nothing, with text).
    Cname,
    /// No host, but text.
    Txt,
}

impl Service {
    /// What `host` holds (CoreDNS's `HostType`).
    pub fn host_type(&self) -> HostType {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => HostType::A(v4),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => HostType::A(v4),
                None => HostType::Aaaa(v6),
            },
            Err(_) if self.text.is_empty() => HostType::Cname,
            Err(_) => HostType::Txt,
        }
    }

    /// The SRV/MX/NS target: `host` made absolute, less `targetstrip` labels (all of them
    /// kept when there are not enough).
    pub fn target(&self) -> String {
        target_strip(&fqdn(&self.host), self.targetstrip)
    }
}

/// `name` with a trailing dot.
pub fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn target_strip(name: &str, n: usize) -> String {
    if n == 0 {
        return name.to_string();
    }
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    if n >= labels.len() {
        return name.to_string();
    }
    fqdn(&labels[n..].join("."))
}

/// The labels of `name` (lower-case FQDN), root first.
fn reversed(name: &str) -> Vec<&str> {
    let mut l: Vec<&str> = name
        .trim_end_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
        .collect();
    l.reverse();
    l
}

/// The etcd key of `name` under `prefix` (`/skydns`): `/skydns/org/example/www`.
pub fn path(name: &str, prefix: &str) -> String {
    let mut p = format!("/{}", prefix.trim_matches('/'));
    for l in reversed(name) {
        p.push('/');
        p.push_str(l);
    }
    p
}

/// As [`path`], cut before the first wildcard label (`*` or `any`); true if there was one.
pub fn path_with_wildcard(name: &str, prefix: &str) -> (String, bool) {
    let mut p = format!("/{}", prefix.trim_matches('/'));
    for l in reversed(name) {
        if l == "*" || l == "any" {
            return (p, true);
        }
        p.push('/');
        p.push_str(l);
    }
    (p, false)
}

/// The DNS name of an etcd key (the prefix's one segment dropped): the opposite of [`path`].
pub fn domain(key: &str) -> String {
    let mut l: Vec<&str> = key.split('/').filter(|s| !s.is_empty()).collect();
    if !l.is_empty() {
        l.remove(0);
    }
    l.reverse();
    fqdn(&l.join("."))
}

/// CoreDNS's `msg.Group`: when the shortest keys carry a group, only services of that group
/// (or of none) are answered; shortest keys that disagree mean no grouping.
pub fn group(sx: Vec<Service>) -> Vec<Service> {
    let Some(first) = sx.first() else {
        return sx;
    };
    let mut group = first.group.clone();
    let mut slashes = first.key.matches('/').count();
    let lengths: Vec<usize> = sx.iter().map(|s| s.key.matches('/').count()).collect();
    for (s, &x) in sx.iter().zip(&lengths) {
        if x < slashes {
            if s.group.is_empty() {
                break;
            }
            slashes = x;
            group = s.group.clone();
        }
    }
    if group.is_empty() {
        return sx;
    }
    let mut out = Vec::new();
    for (s, &x) in sx.iter().zip(&lengths) {
        if s.group.is_empty() {
            out.push(s.clone());
            continue;
        }
        if x == slashes && s.group != group {
            return sx;
        }
        if s.group == group {
            out.push(s.clone());
        }
    }
    out
}

/// TXT text in 255-octet strings.
pub fn split255(s: &str) -> Vec<Vec<u8>> {
    let b = s.as_bytes();
    if b.is_empty() {
        return vec![Vec::new()];
    }
    b.chunks(255).map(|c| c.to_vec()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // CoreDNS msg/path_test.go, service_test.go and type_test.go.
    #[test]
    fn paths_and_domains() {
        assert_eq!(
            path("service.staging.skydns.local.", "skydns"),
            "/skydns/local/skydns/staging/service"
        );
        assert_eq!(
            path("service.staging.skydns.local.", "/skydns/"),
            "/skydns/local/skydns/staging/service"
        );
        assert_eq!(
            domain("/skydns/local/skydns/staging/service"),
            "service.staging.skydns.local."
        );
        assert_eq!(
            domain("/skydns/local/skydns/staging/service/"),
            "service.staging.skydns.local."
        );
        assert_eq!(
            path_with_wildcard("service.*.skydns.local.", "skydns"),
            ("/skydns/local/skydns".to_string(), true)
        );
        assert_eq!(
            path_with_wildcard("x.any.local.", "skydns"),
            ("/skydns/local".to_string(), true)
        );
        assert_eq!(
            path_with_wildcard("x.y.local.", "skydns"),
            ("/skydns/local/y/x".to_string(), false)
        );
    }

    #[test]
    fn host_types_and_targets() {
        let s = |host: &str, text: &str| Service {
            host: host.into(),
            text: text.into(),
            ..Default::default()
        };
        assert_eq!(
            s("10.0.0.1", "").host_type(),
            HostType::A("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            s("::1", "").host_type(),
            HostType::Aaaa("::1".parse().unwrap())
        );
        assert_eq!(
            s("::ffff:10.0.0.1", "").host_type(),
            HostType::A("10.0.0.1".parse().unwrap())
        );
        assert_eq!(s("www.example.org", "").host_type(), HostType::Cname);
        assert_eq!(s("", "text").host_type(), HostType::Txt);
        let mut t = s("a.b.c.example.org", "");
        assert_eq!(t.target(), "a.b.c.example.org.");
        t.targetstrip = 2;
        assert_eq!(t.target(), "c.example.org.");
        t.targetstrip = 9;
        assert_eq!(t.target(), "a.b.c.example.org.");
        assert_eq!(
            split255(&"x".repeat(300))
                .iter()
                .map(Vec::len)
                .collect::<Vec<_>>(),
            [255, 45]
        );
    }

    #[test]
    fn groups() {
        let s = |key: &str, group: &str| Service {
            key: key.into(),
            group: group.into(),
            host: key.into(),
            ..Default::default()
        };
        // CoreDNS group_test.go: a group on the shortest key selects its members.
        let sx = vec![
            s("/skydns/test/skydns/dom/a", "g1"),
            s("/skydns/test/skydns/dom/b/c", "g2"),
            s("/skydns/test/skydns/dom/b/d", "g1"),
        ];
        assert_eq!(group(sx).len(), 2);
        // Disagreement on the shortest level: everything.
        let sx = vec![
            s("/skydns/test/skydns/dom/a", "g1"),
            s("/skydns/test/skydns/dom/b", "g2"),
        ];
        assert_eq!(group(sx).len(), 2);
        // No group: everything.
        let sx = vec![
            s("/skydns/test/skydns/dom/a", ""),
            s("/skydns/test/skydns/dom/b/c", "g2"),
        ];
        assert_eq!(group(sx).len(), 2);
    }

    #[test]
    fn external_dns_values_parse() {
        // What external-dns's CoreDNS provider writes (its `Service` JSON).
        let v: Service = serde_json::from_str(
            r#"{"host":"192.0.2.10","port":0,"priority":0,"weight":0,"text":"","mail":false,"ttl":300,"targetstrip":0,"group":""}"#,
        )
        .unwrap();
        assert_eq!((v.host.as_str(), v.ttl), ("192.0.2.10", 300));
        let v: Service = serde_json::from_str(
            r#"{"text":"\"heritage=external-dns,external-dns/owner=default\"","ttl":60}"#,
        )
        .unwrap();
        assert_eq!(v.host_type(), HostType::Txt);
    }
}
