//! Typed configuration: the Corefile's server blocks with normalised keys and one
//! [`PluginConfig`] per directive, sorted by [`ORDER`](crate::plugins::ORDER). Pure: no sockets.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use crate::corefile::address::Transport;
use crate::corefile::{self, Error, Loc, ZoneAddr};
use crate::plugins::{self, PluginConfig};

/// A whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Server blocks in file order.
    pub blocks: Vec<BlockConfig>,
    /// Non-fatal problems found while parsing.
    pub warnings: Vec<String>,
    /// SHA-512 (hex) of the parsed blocks: names, arguments, files and lines (`reload`).
    pub digest: String,
}

impl Config {
    /// The `reload` settings, if any block has `reload` (it is process-wide).
    pub fn reload(&self) -> Option<crate::plugins::reload::ReloadConfig> {
        self.blocks
            .iter()
            .flat_map(|b| &b.plugins)
            .find_map(|p| match p {
                PluginConfig::Reload(r) => Some(*r),
                _ => None,
            })
    }
}

fn digest(parsed: &corefile::Parsed) -> String {
    let text = format!("{:?}", parsed.blocks);
    ring::digest::digest(&ring::digest::SHA512, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One server block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockConfig {
    /// Normalised keys (a reverse CIDR may have become several).
    pub keys: Vec<ZoneAddr>,
    /// Where the block starts.
    pub loc: Loc,
    /// Plugins, in chain order.
    pub plugins: Vec<PluginConfig>,
}

/// A listen host: every address, or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// Every local address (`:53`).
    Any,
    /// One address (`bind`).
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => Ok(()),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

impl BlockConfig {
    /// The block's zones (lower-case FQDNs), in key order, without duplicates.
    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = Vec::new();
        for k in &self.keys {
            if !z.contains(&k.zone) {
                z.push(k.zone.clone());
            }
        }
        z
    }

    /// The hosts the block listens on (`bind`, else every address).
    pub fn hosts(&self) -> Vec<Host> {
        for p in &self.plugins {
            if let PluginConfig::Bind(b) = p {
                return b.addrs.iter().copied().map(Host::Ip).collect();
            }
        }
        vec![Host::Any]
    }
}

/// The built-in configuration used when no Corefile exists: `.:PORT { whoami log }`.
pub fn default_corefile(port: u16) -> String {
    format!(".:{port} {{\n    whoami\n    log\n}}\n")
}

/// Parses `text` (the contents of `file`) into a configuration; every problem found is returned
/// (parse errors stop at the first, setup errors are collected across blocks).
pub fn load(file: &str, text: &str, default_port: u16) -> Result<Config, Vec<Error>> {
    let parsed = corefile::parse(file, text, &plugins::is_directive).map_err(|e| vec![e])?;
    if parsed.blocks.is_empty() {
        return Err(vec![Error::parse(
            Some(Loc {
                file: file.into(),
                line: 1,
            }),
            "no server blocks: a Corefile needs at least one, e.g. '.:53 { whoami }'",
        )]);
    }
    let mut errors = Vec::new();
    let mut blocks = Vec::new();
    for block in &parsed.blocks {
        let loc = block.keys[0].loc.clone();
        let mut keys = Vec::new();
        for k in &block.keys {
            match corefile::address::normalize(&k.text, default_port) {
                Ok(z) => keys.extend(z),
                Err(msg) => errors.push(Error::key(Some(k.loc.clone()), msg)),
            }
        }
        let zones: Vec<String> = keys.iter().map(|k: &ZoneAddr| k.zone.clone()).collect();
        let mut cfgs = Vec::new();
        for dir in &block.directives {
            match plugins::parse(dir, &zones) {
                Ok(c) => cfgs.push(c),
                Err(e) => errors.push(e),
            }
        }
        cfgs.sort_by_key(PluginConfig::rank);
        blocks.push(BlockConfig {
            keys,
            loc,
            plugins: cfgs,
        });
    }
    if errors.is_empty() {
        check_overlap(&blocks, &mut errors);
    }
    if errors.is_empty() {
        let digest = digest(&parsed);
        let mut warnings = parsed.warnings;
        warnings.extend(shadowed_views(&blocks));
        Ok(Config {
            blocks,
            digest,
            warnings,
        })
    } else {
        Err(errors)
    }
}

impl BlockConfig {
    /// Whether the block has a `view` (it then shares its zones with other blocks).
    pub fn has_view(&self) -> bool {
        self.plugins
            .iter()
            .any(|p| matches!(p, PluginConfig::View(_)))
    }
}

/// Blocks with a `view` that come after a block without one for the same zone, port and host:
/// the unfiltered block takes every query first, so the view block never answers.
fn shadowed_views(blocks: &[BlockConfig]) -> Vec<String> {
    let mut plain: HashMap<(corefile::Transport, String, u16, Host), &Loc> = HashMap::new();
    let mut out = Vec::new();
    for b in blocks {
        for k in &b.keys {
            for h in b.hosts() {
                let key = (k.transport, k.zone.clone(), k.port, h);
                if !b.has_view() {
                    plain.entry(key).or_insert(&b.loc);
                } else if let Some(first) = plain.get(&key) {
                    out.push(format!(
                        "{}:{} - the view block for {k} follows a block without a view for the same zone ({}:{}), which takes every query first: list view blocks first",
                        b.loc.file, b.loc.line, first.file, first.line
                    ));
                }
            }
        }
    }
    out
}

/// CoreDNS's listener validation: one zone per (port, host) and no wildcard/bound mix for a
/// zone. Blocks with a `view` may share a zone (they are only checked for the mix).
fn check_overlap(blocks: &[BlockConfig], errors: &mut Vec<Error>) {
    let mut seen: HashMap<(Transport, String, u16, Host), ()> = HashMap::new();
    for b in blocks {
        let hosts = b.hosts();
        let view = b.has_view();
        for k in &b.keys {
            for h in &hosts {
                let shown = match h {
                    Host::Any => format!("{k}"),
                    Host::Ip(_) => format!("{k} on {h}"),
                };
                if !view
                    && seen
                        .insert((k.transport, k.zone.clone(), k.port, *h), ())
                        .is_some()
                {
                    errors.push(Error::plain(
                        Some(b.loc.clone()),
                        format!("cannot serve {shown} - it is already defined"),
                    ));
                    continue;
                }
                let clash = match h {
                    Host::Any => seen
                        .keys()
                        .find(|(t, z, p, oh)| {
                            *t == k.transport && z == &k.zone && *p == k.port && *oh != Host::Any
                        })
                        .map(|(_, _, _, oh)| *oh),
                    Host::Ip(_) => seen
                        .contains_key(&(k.transport, k.zone.clone(), k.port, Host::Any))
                        .then_some(Host::Any),
                };
                if let Some(other) = clash {
                    let other_shown = match other {
                        Host::Any => format!("{k}"),
                        Host::Ip(_) => format!("{k} on {other}"),
                    };
                    errors.push(Error::plain(
                        Some(b.loc.clone()),
                        format!("cannot serve {shown} - zone overlap listener capacity with {other_shown}"),
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_plugins_by_order_not_by_file() {
        let c = load(
            "Corefile",
            ".:53 {\n whoami\n log\n errors\n prometheus\n}",
            53,
        )
        .unwrap();
        let names: Vec<_> = c.blocks[0].plugins.iter().map(PluginConfig::name).collect();
        assert_eq!(names, ["prometheus", "errors", "log", "whoami"]);
    }

    #[test]
    fn default_port_applies_to_keys_without_one() {
        let c = load(
            "Corefile",
            "example.org example.net:5300 {\n whoami\n}",
            1053,
        )
        .unwrap();
        let keys: Vec<String> = c.blocks[0].keys.iter().map(ToString::to_string).collect();
        assert_eq!(keys, ["dns://example.org.:1053", "dns://example.net.:5300"]);
    }

    #[test]
    fn overlap() {
        let e = load("Corefile", ".:53 {\n whoami\n}\n.:53 {\n whoami\n}", 53).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "Corefile:4 - cannot serve dns://.:53 - it is already defined"
        );
        let e = load(
            "Corefile",
            ".:53 {\n whoami\n}\n.:53 {\n bind 127.0.0.1\n whoami\n}",
            53,
        )
        .unwrap_err();
        assert!(
            e[0].to_string().contains("zone overlap listener capacity"),
            "{}",
            e[0]
        );
        assert!(
            load(
                "Corefile",
                ".:53 {\n bind 127.0.0.1\n whoami\n}\n.:53 {\n bind 127.0.0.2\n whoami\n}",
                53
            )
            .is_ok()
        );
    }
}
