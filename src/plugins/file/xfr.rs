//! The file zones as [`ZoneSource`]s for `transfer` (CoreDNS's plugin/file/xfr.go): a
//! transfer is the loaded zone's SOA and every record, from the one immutable [`Zone`] it
//! loaded; each reload that swaps in a new zone marks the source changed (CoreDNS's reload
//! then calls `transfer.Notify`).

use std::sync::Arc;

use hickory_proto::rr::Record;
use tokio::sync::watch;

use super::{Served, Zone};
use crate::plugins::zone_source::{SnapshotError, ZoneSnapshot, ZoneSource};

/// A block's file zones, transferable.
pub(crate) struct FileZones {
    pub(crate) zones: Vec<Arc<Served>>,
    /// Sent after every zone a reload swapped in.
    pub(crate) changed: Arc<watch::Sender<()>>,
}

impl ZoneSource for FileZones {
    fn zones(&self) -> Vec<String> {
        self.zones.iter().map(|z| z.name.clone()).collect()
    }

    /// Only a name that is exactly one of the zones (xfr.go: `matched != zone` is not ours).
    fn snapshot(&self, zone: &str) -> Result<Box<dyn ZoneSnapshot>, SnapshotError> {
        let served = self
            .zones
            .iter()
            .find(|z| z.name == zone)
            .ok_or(SnapshotError::NotAuthoritative)?;
        let loaded = served.zone.load_full().ok_or_else(|| {
            SnapshotError::NotReady(format!(
                "zone file {} could not be read yet",
                served.path.display()
            ))
        })?;
        Ok(Box::new(FileSnapshot(loaded)))
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }
}

/// One loaded version of a file zone.
struct FileSnapshot(Arc<Zone>);

impl ZoneSnapshot for FileSnapshot {
    fn soa(&self) -> Record {
        self.0.soa().clone()
    }

    fn records(&self, emit: &mut dyn FnMut(Record) -> bool) {
        for r in self.0.records() {
            if !emit(r.clone()) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use arc_swap::ArcSwapOption;
    use hickory_proto::rr::Name;

    use super::*;
    use crate::plugins::zone_source::serial;

    const DB: &str = "$ORIGIN miek.nl.\n$TTL 1800\n\
        @ IN SOA linode.atoom.net. miek.miek.nl. 1282630057 14400 3600 604800 14400\n\
        \x20 IN NS linode.atoom.net.\n\
        \x20 IN MX 1 aspmx.l.google.com.\n\
        \x20 IN A 139.162.196.78\n\
        a IN A 139.162.196.78\n\
        www IN CNAME a\n";

    fn served(name: &str, zone: Option<Zone>) -> Arc<Served> {
        Arc::new(Served {
            name: name.into(),
            origin: Name::from_ascii(name).unwrap(),
            path: PathBuf::from("db.miek.nl"),
            zone: ArcSwapOption::new(zone.map(Arc::new)),
        })
    }

    fn source(zones: Vec<Arc<Served>>) -> FileZones {
        FileZones {
            zones,
            changed: Arc::new(watch::Sender::new(())),
        }
    }

    fn miek() -> Zone {
        let origin = Name::from_ascii("miek.nl.").unwrap();
        let entries = crate::zonefile::parse_str(DB, std::path::Path::new("db"), &origin).unwrap();
        Zone::from_entries(std::path::Path::new("db"), &origin, entries).unwrap()
    }

    /// xfr_test.go ExampleZone_All (the records of the file, once each, the SOA apart) and
    /// TestTransferRequiresExactZone.
    #[test]
    fn a_snapshot_is_the_file_and_only_the_exact_zone_has_one() {
        let src = source(vec![
            served("miek.nl.", Some(miek())),
            served("a.org.", None),
        ]);
        assert_eq!(src.zones(), ["miek.nl.", "a.org."]);
        let snap = src.snapshot("miek.nl.").ok().unwrap();
        assert_eq!(serial(&snap.soa()), 1282630057);
        let mut got = Vec::new();
        snap.records(&mut |r| {
            got.push(format!("{} {} {}", r.name, r.record_type(), r.data));
            true
        });
        got.sort();
        assert_eq!(
            got,
            [
                "a.miek.nl. A 139.162.196.78",
                "miek.nl. A 139.162.196.78",
                "miek.nl. MX 1 aspmx.l.google.com.",
                "miek.nl. NS linode.atoom.net.",
                "www.miek.nl. CNAME a.miek.nl.",
            ]
        );
        // A consumer that goes away stops the walk.
        let mut n = 0;
        snap.records(&mut |_| {
            n += 1;
            false
        });
        assert_eq!(n, 1);
        assert!(matches!(
            src.snapshot("www.miek.nl."),
            Err(SnapshotError::NotAuthoritative)
        ));
        assert!(matches!(
            src.snapshot("example.org."),
            Err(SnapshotError::NotAuthoritative)
        ));
        // A zone whose file could not be read yet is not handed out empty.
        assert!(matches!(
            src.snapshot("a.org."),
            Err(SnapshotError::NotReady(_))
        ));
    }
}
