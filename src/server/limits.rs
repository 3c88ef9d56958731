//! Limits of connection-oriented DNS listeners: how long a client may take to send a query and
//! to take a reply, how long a connection may sit idle, how many queries one connection gets,
//! and how many connections are open at once. Plain TCP uses them; the DoT and DoH listeners
//! take the same [`ConnLimits`] (with their own defaults) and [`Admission`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

use crate::plugins::prometheus::Metrics;
use crate::plugins::timeouts::TimeoutsConfig;

/// Open connections per listener by default. CoreDNS has no cap for plain TCP and DoT (only the
/// process's file descriptors); DoH and gRPC get 200 (`DefaultHTTPSMaxConnections`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// The limits of one connection-oriented listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// The first query of a connection (length and message) must arrive within this time of
    /// the connection opening.
    pub read: Duration,
    /// A reply must be written within this time.
    pub write: Duration,
    /// Each further query must arrive within this time of the previous reply.
    pub idle: Duration,
    /// Queries served on one connection before it is closed (`None`: unlimited).
    pub max_queries: Option<u32>,
    /// Connections open at once; more are accepted and closed at once (counted), never left
    /// waiting in the kernel's backlog. At most half the process's file descriptors are used
    /// this way, whatever the setting, so forwarding and the API watches keep theirs.
    pub max_connections: usize,
}

impl ConnLimits {
    /// CoreDNS's defaults for a DNS server (core/dnsserver/server.go `NewServer`): read 3 s,
    /// write 5 s, idle 10 s, unlimited queries per connection (`tcpMaxQueries = -1`).
    pub const DNS: Self = Self {
        read: Duration::from_secs(3),
        write: Duration::from_secs(5),
        idle: Duration::from_secs(10),
        max_queries: None,
        max_connections: DEFAULT_MAX_CONNECTIONS,
    };

    /// These limits with what a `timeouts` block sets.
    pub fn with_timeouts(mut self, t: &TimeoutsConfig) -> Self {
        if let Some(d) = t.read {
            self.read = d;
        }
        if let Some(d) = t.write {
            self.write = d;
        }
        if let Some(d) = t.idle {
            self.idle = d;
        }
        if let Some(q) = t.max_queries {
            self.max_queries = q;
        }
        self
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self::DNS
    }
}

/// A listener's count of open connections against its cap, with the metrics
/// `clusterdns_dns_connections_open{server}` and
/// `clusterdns_dns_connections_refused_total{server}`.
pub struct Admission {
    open: AtomicUsize,
    /// The most connections the process's descriptors allow this listener.
    fd_cap: usize,
    open_gauge: IntGauge,
    refused: IntCounter,
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted(Arc<Admission>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.open_gauge.dec();
    }
}

impl Admission {
    /// The admission of the listener labelled `server` (`dns://:53`).
    pub fn new(metrics: &Metrics, server: &str) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            fd_cap: usize::try_from(nofile_soft() / 2).unwrap_or(usize::MAX),
            open_gauge: metrics.connections_open.with_label_values(&[server]),
            refused: metrics.connections_refused.with_label_values(&[server]),
        })
    }

    /// A place for one more connection, or `None` (counted as refused) when `max` (or the
    /// descriptor budget) is reached.
    pub fn admit(self: &Arc<Self>, max: usize) -> Option<Admitted> {
        let max = max.min(self.fd_cap);
        let prev = self.open.fetch_add(1, Ordering::Relaxed);
        if prev >= max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused.inc();
            return None;
        }
        self.open_gauge.inc();
        Some(Admitted(self.clone()))
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// The soft limit on open file descriptors (RLIMIT_NOFILE).
pub fn nofile_soft() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does at start since Go 1.19
/// (so CoreDNS has it too): the default soft limit of 1024 would cap a server at about 500 TCP
/// connections. Returns the soft limit now in force.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(e) => {
                tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
                soft
            }
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coredns_defaults_and_timeouts_on_top() {
        let d = ConnLimits::default();
        assert_eq!(
            (d.read, d.write, d.idle, d.max_queries),
            (
                Duration::from_secs(3),
                Duration::from_secs(5),
                Duration::from_secs(10),
                None
            )
        );
        let t = TimeoutsConfig {
            read: Some(Duration::from_secs(15)),
            write: None,
            idle: Some(Duration::from_secs(60)),
            max_queries: Some(Some(128)),
        };
        let l = ConnLimits::DNS.with_timeouts(&t);
        assert_eq!(l.read, Duration::from_secs(15));
        assert_eq!(l.write, Duration::from_secs(5), "unset keeps the default");
        assert_eq!(l.idle, Duration::from_secs(60));
        assert_eq!(l.max_queries, Some(128));
        let unlimited = TimeoutsConfig {
            max_queries: Some(None),
            ..Default::default()
        };
        assert_eq!(l.with_timeouts(&unlimited).max_queries, None);
    }

    #[test]
    fn admission_caps_counts_and_frees() {
        let m = Metrics::new(prometheus::Registry::new()).unwrap();
        let a = Admission::new(&m, "dns://:53");
        let one = a.admit(2).unwrap();
        let two = a.admit(2).unwrap();
        assert!(a.admit(2).is_none());
        assert_eq!(
            m.connections_refused
                .with_label_values(&["dns://:53"])
                .get(),
            1
        );
        assert_eq!(
            m.connections_open.with_label_values(&["dns://:53"]).get(),
            2
        );
        drop(one);
        assert_eq!(a.open(), 1);
        let _three = a.admit(2).unwrap();
        drop(two);
        assert_eq!(
            m.connections_open.with_label_values(&["dns://:53"]).get(),
            1
        );
    }
}
