//! `fallthrough [ZONES...]` (CoreDNS's `plugin/pkg/fall`) and zone arguments of plugins.

use crate::corefile::address::{fqdn, reverse_zones};

/// Which names a plugin passes on instead of answering NXDOMAIN.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fall {
    zones: Vec<String>,
}

impl Fall {
    /// No fallthrough.
    pub fn none() -> Self {
        Self::default()
    }

    /// From the directive's arguments: none = every name.
    pub fn parse(args: &[String]) -> Self {
        if args.is_empty() {
            return Self {
                zones: vec![".".into()],
            };
        }
        let zones = args
            .iter()
            .flat_map(|a| match reverse_zones(a) {
                Ok(Some(z)) => z,
                _ => vec![fqdn(&a.to_ascii_lowercase())],
            })
            .collect();
        Self { zones }
    }

    /// Whether `fallthrough` was given (for any zone).
    pub fn is_enabled(&self) -> bool {
        !self.zones.is_empty()
    }

    /// Whether `qname` (lower-case FQDN) falls through.
    pub fn through(&self, qname: &str) -> bool {
        self.zones.iter().any(|z| is_subdomain(z, qname))
    }
}

/// Whether `name` is `zone` or below it (both lower-case FQDNs).
pub fn is_subdomain(zone: &str, name: &str) -> bool {
    zone == "."
        || name == zone
        || (name.len() > zone.len()
            && name.ends_with(zone)
            && name.as_bytes()[name.len() - zone.len() - 1] == b'.')
}

/// A plugin's zone arguments (`CIDR`s expanded to reverse zones), or the block's zones when
/// there are none (CoreDNS's `OriginsFromArgsOrServerBlock`).
pub fn origins(args: &[String], block_zones: &[String]) -> Result<Vec<String>, String> {
    if args.is_empty() {
        return Ok(block_zones.to_vec());
    }
    let mut out = Vec::new();
    for a in args {
        match reverse_zones(a)? {
            Some(z) => out.extend(z),
            None => out.push(fqdn(&a.to_ascii_lowercase())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fallthrough_zones() {
        let all = Fall::parse(&[]);
        assert!(all.through("anything.example."));
        let rev = Fall::parse(&["in-addr.arpa".into(), "ip6.arpa".into()]);
        assert!(rev.through("1.0.0.10.in-addr.arpa."));
        assert!(!rev.through("cluster.local."));
        assert!(!Fall::none().through("x."));
        assert!(!is_subdomain("example.org.", "myexample.org."));
        assert_eq!(
            origins(&["10.0.0.0/8".into(), "Cluster.Local".into()], &[]).unwrap(),
            ["10.in-addr.arpa.", "cluster.local."]
        );
    }
}
