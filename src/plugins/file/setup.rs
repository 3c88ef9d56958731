//! `file DBFILE [ZONES...] { reload DURATION; reload_by_mtime; fallthrough [ZONES...] }` →
//! [`FileConfig`] (CoreDNS's plugin/file/setup.go). Pure: the files are read when the plugin
//! is built.

use std::path::PathBuf;
use std::time::Duration;

use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};
use crate::plugins::{Fall, origins};

/// One `file` line: a zone file and the zones read from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFile {
    /// The file (relative to the working directory: clusterdns has no `root` plugin).
    pub path: PathBuf,
    /// The origins it is read with (default: the block's zones).
    pub zones: Vec<String>,
}

/// Every `file` directive of a block (CoreDNS merges them into one plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConfig {
    /// The zone files, in Corefile order.
    pub files: Vec<ZoneFile>,
    /// How often each file is checked (default 1m; 0 = never).
    pub reload: Duration,
    /// Reload when the file's modification time changes, instead of its SOA serial.
    pub reload_by_mtime: bool,
    /// `fallthrough [ZONES]`.
    pub fall: Fall,
}

/// Parses every `file` line of a block.
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<FileConfig, Error> {
    let mut c = FileConfig {
        files: Vec::new(),
        reload: Duration::from_secs(60),
        reload_by_mtime: false,
        fall: Fall::none(),
    };
    while d.next() {
        let args = d.remaining_args();
        let Some((path, zones)) = args.split_first() else {
            return Err(d.arg_err());
        };
        let zones = origins(zones, block_zones).map_err(|e| d.err(e))?;
        c.files.push(ZoneFile {
            path: PathBuf::from(path),
            zones,
        });
        while d.next_block() {
            match d.val() {
                "fallthrough" => c.fall = Fall::parse(&d.remaining_args()),
                "reload" => {
                    let args = d.remaining_args();
                    let Some(v) = args.first() else {
                        return Err(d.err("reload duration value is expected"));
                    };
                    c.reload = parse_duration(v)
                        .ok_or_else(|| d.err(format!("time: invalid duration \"{v}\"")))?;
                }
                "reload_by_mtime" => {
                    d.expect_no_more_args()?;
                    c.reload_by_mtime = true;
                }
                // Accepted and ignored, as CoreDNS does.
                "upstream" => {
                    d.remaining_args();
                }
                other => return Err(d.err(format!("unknown property '{other}'"))),
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for f in &c.files {
        for z in &f.zones {
            if !seen.insert(z.clone()) {
                return Err(Error::plain(
                    None,
                    format!("zone {z} is read from two files"),
                ));
            }
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(s: &str) -> Result<FileConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks), &["miek.nl.".to_string()])
    }

    // CoreDNS's setup_test.go TestFileParse, plus our error cases.
    #[test]
    fn table() {
        let c = run("file db.miek.nl").unwrap();
        assert_eq!(c.files[0].path, PathBuf::from("db.miek.nl"));
        assert_eq!(c.files[0].zones, ["miek.nl."]);
        assert_eq!(c.reload, Duration::from_secs(60));
        assert!(!c.fall.through("miek.nl."));
        let c =
            run("file db.dnssex.nl dnssex.nl. Miek.NL {\n reload 30s\n fallthrough\n}").unwrap();
        assert_eq!(c.files[0].zones, ["dnssex.nl.", "miek.nl."]);
        assert_eq!(c.reload, Duration::from_secs(30));
        assert!(c.fall.through("x.miek.nl."));
        let c = run("file db.10 10.0.0.0/24 {\n reload 0\n reload_by_mtime\n upstream\n}").unwrap();
        assert_eq!(c.files[0].zones, ["0.0.10.in-addr.arpa."]);
        assert!(c.reload.is_zero());
        assert!(c.reload_by_mtime);
        let c = run("file db.a a.org\nfile db.b b.org {\n fallthrough b.org\n}").unwrap();
        assert_eq!(c.files.len(), 2);
        assert_eq!(c.files[1].zones, ["b.org."]);
        assert!(c.fall.through("x.b.org.") && !c.fall.through("x.a.org."));
        for (bad, want) in [
            ("file", "Wrong argument count"),
            (
                "file db.x {\n reload\n}",
                "reload duration value is expected",
            ),
            ("file db.x {\n reload soon\n}", "invalid duration"),
            (
                "file db.x {\n reload_by_mtime now\n}",
                "Wrong argument count",
            ),
            ("file db.x {\n bogus\n}", "unknown property 'bogus'"),
            (
                "file db.x a.org\nfile db.y a.org",
                "zone a.org. is read from two files",
            ),
            ("file db.x 10.0.0.0/33", "10.0.0.0/33"),
        ] {
            let e = run(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
