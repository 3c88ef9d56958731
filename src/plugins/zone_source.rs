//! Zones a plugin can hand out whole: what `transfer` needs from the plugins that hold zone
//! data (`kubernetes`, `file`). A plugin implements [`ZoneSource`] and adds itself to its
//! block's [`ZoneSources`] at build time; `transfer` reads the block's sources when a transfer
//! is asked for and watches their changes to send NOTIFY.
//!
//! Neutral ground between the plugins: neither side knows the other's types.

use std::sync::{Arc, Mutex};

use hickory_proto::rr::{RData, Record};

/// Why a source cannot give a zone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The zone is not one of this source's: ask the next source.
    #[error("not authoritative for zone")]
    NotAuthoritative,
    /// The zone is this source's, but its data is not complete yet (e.g. the Kubernetes API
    /// has not been listed): a transfer now would hand out a wrong zone.
    #[error("zone not ready: {0}")]
    NotReady(String),
}

/// A plugin's zones, transferable whole.
pub trait ZoneSource: Send + Sync + 'static {
    /// The zones (lower-case FQDNs) [`snapshot`](Self::snapshot) answers for.
    fn zones(&self) -> Vec<String>;

    /// One consistent version of `zone` (a lower-case FQDN, exactly one of
    /// [`zones`](Self::zones)): its SOA and records come from the same data.
    fn snapshot(&self, zone: &str) -> Result<Box<dyn ZoneSnapshot>, SnapshotError>;

    /// A receiver marked changed whenever a zone may have a new version (compare the serials
    /// of new snapshots to know which).
    fn changes(&self) -> tokio::sync::watch::Receiver<()>;
}

/// One version of a zone. It keeps its data alive (an `Arc` of an immutable index or zone), so
/// a long transfer is not disturbed by later changes.
pub trait ZoneSnapshot: Send + 'static {
    /// The zone's SOA record; its serial names this version.
    fn soa(&self) -> Record;

    /// Every record of this version except the SOA (apex NS and glue included), in any order,
    /// each passed to `emit`. Stops early when `emit` returns false (the client went away).
    fn records(&self, emit: &mut dyn FnMut(Record) -> bool);
}

/// The serial of an SOA record (0 for anything else).
pub fn serial(soa: &Record) -> u32 {
    match &soa.data {
        RData::SOA(s) => s.serial,
        _ => 0,
    }
}

/// The zone sources of one server block, filled while the block builds (each source plugin
/// adds itself) and read by `transfer` afterwards (it is built before them: ORDER puts it
/// earlier in the chain).
#[derive(Clone, Default)]
pub struct ZoneSources(Arc<Mutex<Vec<Arc<dyn ZoneSource>>>>);

impl ZoneSources {
    /// Adds a source.
    pub fn add(&self, source: Arc<dyn ZoneSource>) {
        self.0.lock().expect("zone sources lock").push(source);
    }

    /// Every source, in the order they were added.
    pub fn all(&self) -> Vec<Arc<dyn ZoneSource>> {
        self.0.lock().expect("zone sources lock").clone()
    }
}

impl std::fmt::Debug for ZoneSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ZoneSources({})", self.all().len())
    }
}
