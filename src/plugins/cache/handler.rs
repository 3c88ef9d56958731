//! The `cache` handler: two moka caches (success, denial) in front of the rest of the chain.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use moka::notification::RemovalCause;
use moka::sync::Cache as Moka;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::NAME;
use super::setup::CacheConfig;
use crate::plugins::{Handler, HandlerError, Next, Request, Response, is_subdomain};

/// `coredns_cache_*`, registered once per process.
pub struct CacheMetrics {
    entries: IntGaugeVec,
    requests: IntCounterVec,
    hits: IntCounterVec,
    misses: IntCounterVec,
    drops: IntCounterVec,
    evictions: IntCounterVec,
}

impl CacheMetrics {
    /// Creates and registers the metrics.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let cv = |n: &str, h: &str, l: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(n, h), l)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let entries = IntGaugeVec::new(
            Opts::new(
                "coredns_cache_entries",
                "The number of elements in the cache.",
            ),
            &["server", "type", "zones", "view"],
        )?;
        r.register(Box::new(entries.clone()))?;
        Ok(Self {
            entries,
            requests: cv(
                "coredns_cache_requests_total",
                "The count of cache requests.",
                &["server", "zones", "view"],
            )?,
            hits: cv(
                "coredns_cache_hits_total",
                "The count of cache hits.",
                &["server", "type", "zones", "view"],
            )?,
            misses: cv(
                "coredns_cache_misses_total",
                "The count of cache misses. Deprecated, derive misses from cache hits/requests counters.",
                &["server", "zones", "view"],
            )?,
            drops: cv(
                "coredns_cache_drops_total",
                "The number responses that are not cached, because the reply is malformed.",
                &["server", "zones", "view"],
            )?,
            evictions: cv(
                "coredns_cache_evictions_total",
                "The count of cache evictions.",
                &["server", "type", "zones", "view"],
            )?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: Box<str>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

#[derive(Debug)]
struct Item {
    rcode: ResponseCode,
    recursion_available: bool,
    authentic_data: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
    stored: Instant,
    ttl: Duration,
}

struct ItemExpiry;

impl moka::Expiry<Key, Arc<Item>> for ItemExpiry {
    fn expire_after_create(&self, _: &Key, v: &Arc<Item>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// What kind of reply it is (CoreDNS's `response.Typify`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NoError,
    NoData,
    NameError,
    ServerError,
    Delegation,
    Other,
}

fn typify(m: &Message) -> Kind {
    let rcode = m.metadata.response_code;
    if !m.answers.is_empty() && rcode == ResponseCode::NoError {
        return Kind::NoError;
    }
    let soa = m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    let ns = m
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::NS);
    match rcode {
        ResponseCode::NoError if soa => Kind::NoData,
        ResponseCode::NXDomain if soa => Kind::NameError,
        ResponseCode::ServFail | ResponseCode::NotImp => Kind::ServerError,
        ResponseCode::NoError if ns => Kind::Delegation,
        ResponseCode::NoError => Kind::NoError,
        _ => Kind::Other,
    }
}

/// CoreDNS's `dnsutil.MinimalTTL`: the smallest TTL in the reply, 5 s when there is none.
fn minimal_ttl(m: &Message, kind: Kind) -> Duration {
    const FAIL_SAFE: Duration = Duration::from_secs(5);
    if !matches!(kind, Kind::NoError | Kind::NameError | Kind::NoData) {
        return FAIL_SAFE;
    }
    m.answers
        .iter()
        .chain(&m.authorities)
        .chain(&m.additionals)
        .map(|r| r.ttl)
        .min()
        .map_or(FAIL_SAFE, |t| Duration::from_secs(u64::from(t.min(3600))))
}

/// The `cache` plugin.
pub struct Cache {
    cfg: CacheConfig,
    success: Moka<Key, Arc<Item>>,
    denial: Moka<Key, Arc<Item>>,
    metrics: Arc<CacheMetrics>,
    zones_label: String,
}

impl Cache {
    /// A cache for `cfg`, counting into `metrics`.
    pub fn new(cfg: CacheConfig, metrics: Arc<CacheMetrics>) -> Self {
        let zones_label = cfg.zones.join(",");
        let build = |cap: u64, kind: &'static str| {
            let (m, z) = (metrics.clone(), zones_label.clone());
            Moka::builder()
                .max_capacity(cap)
                .expire_after(ItemExpiry)
                .eviction_listener(move |_k, _v, cause| {
                    if cause == RemovalCause::Size {
                        // The server label is not known here; CoreDNS's is per block too.
                        m.evictions.with_label_values(&["", kind, &z, ""]).inc();
                    }
                })
                .build()
        };
        Self {
            success: build(cfg.success.capacity, "success"),
            denial: build(cfg.denial.capacity, "denial"),
            cfg,
            metrics,
            zones_label,
        }
    }

    fn reply_from(&self, req: &Request, item: &Item, now: Instant) -> Message {
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        msg.metadata.recursion_available = item.recursion_available;
        msg.metadata.authentic_data = item.authentic_data && (req.do_bit() || req.authentic_data);
        msg.metadata.response_code = item.rcode;
        let ttl = if self.cfg.keepttl {
            None
        } else {
            let left = item.ttl.saturating_sub(now.duration_since(item.stored));
            Some(u32::try_from(left.as_secs()).unwrap_or(u32::MAX))
        };
        let fix = |rs: &[Record]| -> Vec<Record> {
            rs.iter()
                .cloned()
                .map(|mut r| {
                    if let Some(t) = ttl {
                        r.ttl = t;
                    }
                    r
                })
                .collect()
        };
        msg.answers = fix(&item.answers);
        msg.authorities = fix(&item.authorities);
        msg.additionals = fix(&item.additionals);
        msg
    }
}

fn lower_name(req: &Request) -> String {
    let mut s = req.qname().to_ascii().to_ascii_lowercase();
    if !s.ends_with('.') {
        s.push('.');
    }
    s
}

#[async_trait::async_trait]
impl Handler for Cache {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = lower_name(req);
        if !self.cfg.zones.iter().any(|z| is_subdomain(z, &name))
            || matches!(req.qtype(), RecordType::AXFR | RecordType::IXFR)
        {
            return next.run(req).await;
        }
        let server = &*req.server;
        let z = self.zones_label.as_str();
        self.metrics
            .requests
            .with_label_values(&[server, z, ""])
            .inc();
        let key = Key {
            name: name.clone().into_boxed_str(),
            qtype: u16::from(req.qtype()),
            qclass: u16::from(req.qclass()),
            dnssec_ok: req.do_bit(),
            checking_disabled: req.checking_disabled,
        };
        let now = Instant::now();
        for (cache, kind) in [(&self.success, "success"), (&self.denial, "denial")] {
            if let Some(item) = cache.get(&key) {
                if now.duration_since(item.stored) < item.ttl {
                    self.metrics
                        .hits
                        .with_label_values(&[server, kind, z, ""])
                        .inc();
                    return Ok(Response::new(self.reply_from(req, &item, now), NAME));
                }
            }
        }
        self.metrics
            .misses
            .with_label_values(&[server, z, ""])
            .inc();
        let mut resp = next.run(req).await?;
        let msg = &mut resp.msg;
        let kind = typify(msg);
        let msg_ttl = minimal_ttl(msg, kind);
        let clamp = |b: &super::setup::Bucket| msg_ttl.clamp(b.min_ttl, b.max_ttl.max(b.min_ttl));
        let duration = match kind {
            Kind::NameError | Kind::NoData => clamp(&self.cfg.denial),
            Kind::ServerError => self.cfg.servfail,
            _ => clamp(&self.cfg.success),
        };
        let matches = msg
            .queries
            .first()
            .is_none_or(|q| q.name() == req.qname() && q.query_type() == req.qtype());
        let storable = !msg.metadata.truncation && kind != Kind::Other && !duration.is_zero();
        if storable && !matches {
            self.metrics.drops.with_label_values(&[server, z, ""]).inc();
        }
        let secs = u32::try_from(duration.as_secs()).unwrap_or(u32::MAX);
        for r in msg
            .answers
            .iter_mut()
            .chain(msg.authorities.iter_mut())
            .chain(msg.additionals.iter_mut())
        {
            r.ttl = secs;
        }
        if storable && matches {
            let (cache, bucket, label) = match kind {
                Kind::NoError | Kind::Delegation => (&self.success, &self.cfg.success, "success"),
                _ => (&self.denial, &self.cfg.denial, "denial"),
            };
            if !bucket.disabled.iter().any(|d| is_subdomain(d, &name)) {
                cache.insert(
                    key,
                    Arc::new(Item {
                        rcode: msg.metadata.response_code,
                        recursion_available: msg.metadata.recursion_available,
                        authentic_data: msg.metadata.authentic_data,
                        answers: msg.answers.clone(),
                        authorities: msg.authorities.clone(),
                        additionals: msg.additionals.clone(),
                        stored: now,
                        ttl: duration,
                    }),
                );
                self.metrics
                    .entries
                    .with_label_values(&[server, label, z, ""])
                    .set(i64::try_from(cache.entry_count()).unwrap_or(i64::MAX));
            }
        }
        Ok(resp)
    }
}
