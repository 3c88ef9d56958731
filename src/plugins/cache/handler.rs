//! The `cache` handler: two moka caches (success, denial) in front of the rest of the chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use moka::notification::RemovalCause;
use moka::sync::Cache as Moka;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};

use super::NAME;
use super::setup::CacheConfig;
use crate::plugins::response::{Kind, minimal_ttl, typify};
use crate::plugins::{Handler, HandlerError, Next, Request, Response, is_subdomain};

/// `coredns_cache_*`, registered once per process.
pub struct CacheMetrics {
    entries: IntGaugeVec,
    requests: IntCounterVec,
    hits: IntCounterVec,
    misses: IntCounterVec,
    drops: IntCounterVec,
    evictions: IntCounterVec,
    prefetch: IntCounterVec,
    served_stale: IntCounterVec,
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
            prefetch: cv(
                "coredns_cache_prefetch_total",
                "The number of times the cache has prefetched a cached item.",
                &["server", "zones", "view"],
            )?,
            served_stale: cv(
                "coredns_cache_served_stale_total",
                "The number of requests served from stale cache entries.",
                &["server", "zones", "view"],
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
    /// How long moka keeps it (TTL plus the serve_stale window).
    keep: Duration,
    /// Hits within the prefetch window.
    hits: AtomicU32,
    /// When the window of `hits` started (ms after `stored`).
    window_start_ms: AtomicU64,
    /// A refresh is running (at most one per entry).
    refreshing: AtomicBool,
}

struct ItemExpiry;

impl moka::Expiry<Key, Arc<Item>> for ItemExpiry {
    fn expire_after_create(
        &self,
        _: &Key,
        v: &Arc<Item>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.keep)
    }
}

/// The `cache` plugin.
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
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
            inner: Arc::new(Inner {
                success: build(cfg.success.capacity, "success"),
                denial: build(cfg.denial.capacity, "denial"),
                cfg,
                metrics,
                zones_label,
            }),
        }
    }
}

impl Inner {
    /// A reply from `item` with `ttl` on every record (`None`: as stored).
    fn reply_from(&self, req: &Request, item: &Item, ttl: Option<u32>) -> Message {
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        msg.metadata.recursion_available = item.recursion_available;
        msg.metadata.authentic_data = item.authentic_data && (req.do_bit() || req.authentic_data);
        msg.metadata.response_code = item.rcode;
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

    /// Classifies `resp`, rewrites its TTLs to the cache duration, and stores it if it may be.
    fn store(&self, req: &Request, name: &str, key: Key, msg: &mut Message, now: Instant) {
        let server = &*req.server;
        let z = self.zones_label.as_str();
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
        if !(storable && matches) {
            return;
        }
        let (cache, bucket, label) = match kind {
            Kind::NoError | Kind::Delegation => (&self.success, &self.cfg.success, "success"),
            _ => (&self.denial, &self.cfg.denial, "denial"),
        };
        if bucket.disabled.iter().any(|d| is_subdomain(d, name)) {
            return;
        }
        let stale = self.cfg.serve_stale.map_or(Duration::ZERO, |s| s.duration);
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
                keep: duration + stale,
                hits: AtomicU32::new(0),
                window_start_ms: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
            }),
        );
        self.metrics
            .entries
            .with_label_values(&[server, label, z, ""])
            .set(i64::try_from(cache.entry_count()).unwrap_or(i64::MAX));
    }

    /// Refreshes `key` in the background through the rest of the chain (prefetch, and
    /// serve_stale's `immediate` mode). A failed refresh keeps the entry.
    fn refresh(
        self: &Arc<Self>,
        req: &Request,
        name: &str,
        key: Key,
        item: &Item,
        next: &Next<'_>,
    ) {
        if item.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, req, name, next) = (self.clone(), req.clone(), name.to_string(), next.detach());
        tokio::spawn(async move {
            if let Ok(mut resp) = next.run(&req).await {
                if !matches!(typify(&resp.msg), Kind::ServerError | Kind::Other) {
                    me.store(&req, &name, key, &mut resp.msg, Instant::now());
                }
            }
        });
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

#[async_trait::async_trait]
impl Handler for Cache {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let c = &self.inner;
        let name = req.qname_lower();
        if !c.cfg.zones.iter().any(|z| is_subdomain(z, name))
            || matches!(req.qtype(), RecordType::AXFR | RecordType::IXFR)
        {
            return next.run(req).await;
        }
        let server = &*req.server;
        let z = c.zones_label.as_str();
        c.metrics.requests.with_label_values(&[server, z, ""]).inc();
        let key = Key {
            name: name.into(),
            qtype: u16::from(req.qtype()),
            qclass: u16::from(req.qclass()),
            dnssec_ok: req.do_bit(),
            checking_disabled: req.checking_disabled,
        };
        let now = Instant::now();
        let mut stale: Option<Arc<Item>> = None;
        for (cache, kind) in [(&c.success, "success"), (&c.denial, "denial")] {
            let Some(item) = cache.get(&key) else {
                continue;
            };
            let age = now.duration_since(item.stored);
            if age < item.ttl {
                c.metrics
                    .hits
                    .with_label_values(&[server, kind, z, ""])
                    .inc();
                if let Some(p) = c.cfg.prefetch {
                    let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
                    let window = item.window_start_ms.load(Ordering::Relaxed);
                    if age_ms.saturating_sub(window) > p.duration.as_millis() as u64 {
                        // A gap longer than the window: popularity starts over.
                        item.window_start_ms.store(age_ms, Ordering::Relaxed);
                        item.hits.store(0, Ordering::Relaxed);
                    }
                    let hits = item.hits.fetch_add(1, Ordering::Relaxed) + 1;
                    let left = item.ttl - age;
                    let threshold = item.ttl.mul_f64(f64::from(p.percentage) / 100.0);
                    if hits >= p.amount && left <= threshold.max(Duration::from_secs(1)) {
                        c.metrics.prefetch.with_label_values(&[server, z, ""]).inc();
                        c.refresh(req, name, key.clone(), &item, &next);
                    }
                }
                let ttl = (!c.cfg.keepttl).then(|| secs(item.ttl - age));
                return Ok(Response::new(c.reply_from(req, &item, ttl), NAME));
            }
            if stale.is_none()
                && c.cfg
                    .serve_stale
                    .is_some_and(|s| age < item.ttl + s.duration)
            {
                stale = Some(item);
            }
        }
        if let (Some(item), Some(st)) = (&stale, c.cfg.serve_stale) {
            if !st.verify {
                c.metrics
                    .served_stale
                    .with_label_values(&[server, z, ""])
                    .inc();
                c.refresh(req, name, key, item, &next);
                return Ok(Response::new(c.reply_from(req, item, Some(0)), NAME));
            }
        }
        c.metrics.misses.with_label_values(&[server, z, ""]).inc();
        let result = next.clone().run(req).await;
        if let Some(item) = &stale {
            // `verify`: the upstream answer wins unless it failed.
            let failed = match &result {
                Err(_) => true,
                Ok(r) => r.rcode() == ResponseCode::ServFail,
            };
            if failed {
                c.metrics
                    .served_stale
                    .with_label_values(&[server, z, ""])
                    .inc();
                return Ok(Response::new(c.reply_from(req, item, Some(0)), NAME));
            }
        }
        let mut resp = result?;
        c.store(req, name, key, &mut resp.msg, now);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData};

    use super::*;
    use crate::corefile::Dispenser;
    use crate::corefile::lexer::lex;
    use crate::plugins::{Chain, Proto};

    /// An upstream that counts queries and answers A 192.0.2.1 with TTL 60, or SERVFAIL.
    struct Upstream {
        seen: AtomicUsize,
        fail: AtomicBool,
    }

    #[async_trait::async_trait]
    impl Handler for Upstream {
        fn name(&self) -> &'static str {
            "upstream"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            let mut m = req.reply();
            if self.fail.load(Ordering::SeqCst) {
                m.metadata.response_code = ResponseCode::ServFail;
            } else {
                m.add_answer(Record::from_rdata(
                    req.qname().clone(),
                    60,
                    RData::A(A::new(192, 0, 2, 1)),
                ));
            }
            Ok(Response::new(m, "upstream"))
        }
    }

    fn setup(corefile: &str) -> (Chain, Arc<Upstream>, Arc<CacheMetrics>) {
        let toks = lex(&Arc::from("Corefile"), corefile);
        let cfg = super::super::parse(&mut Dispenser::new(&toks), &[".".to_string()]).unwrap();
        let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
        let up = Arc::new(Upstream {
            seen: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
        });
        let chain = Chain::new(vec![Arc::new(Cache::new(cfg, metrics.clone())), up.clone()]);
        (chain, up, metrics)
    }

    async fn ask(chain: &Chain) -> Message {
        let req = Request::new(
            Name::from_ascii("www.example.org.").unwrap(),
            RecordType::A,
            "127.0.0.1:5000".parse().unwrap(),
            Proto::Udp,
        );
        chain.run(&req).await.unwrap().msg
    }

    fn count(v: &IntCounterVec) -> u64 {
        v.with_label_values(&["dns://:53", ".", ""]).get()
    }

    #[tokio::test(start_paused = true)]
    async fn hit_miss_and_ttl_countdown() {
        let (chain, up, m) = setup("cache");
        assert_eq!(ask(&chain).await.answers[0].ttl, 60);
        tokio::time::advance(Duration::from_secs(10)).await;
        let r = ask(&chain).await;
        assert_eq!(r.answers[0].ttl, 50, "remaining TTL");
        assert!(r.metadata.authoritative);
        assert_eq!(up.seen.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(51)).await;
        ask(&chain).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 2, "expired entry is a miss");
        assert_eq!(count(&m.requests), 3);
        assert_eq!(count(&m.misses), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn servfail_is_cached_for_its_duration() {
        let (chain, up, _) = setup("cache {\n servfail 2s\n}");
        up.fail.store(true, Ordering::SeqCst);
        ask(&chain).await;
        ask(&chain).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(3)).await;
        up.fail.store(false, Ordering::SeqCst);
        assert_eq!(ask(&chain).await.answers.len(), 1);
        assert_eq!(up.seen.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn prefetch_refreshes_popular_entries_before_they_expire() {
        let (chain, up, m) = setup("cache {\n prefetch 2 1m 10%\n}");
        ask(&chain).await;
        tokio::time::advance(Duration::from_secs(50)).await;
        ask(&chain).await; // 1 hit, 10 s left: not yet (threshold 6 s)
        tokio::time::advance(Duration::from_secs(5)).await;
        ask(&chain).await; // 2 hits, 5 s left: refresh in the background
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(up.seen.load(Ordering::SeqCst), 2);
        assert_eq!(count(&m.prefetch), 1);
        tokio::time::advance(Duration::from_secs(10)).await; // past the first entry's TTL
        let r = ask(&chain).await;
        assert_eq!(
            up.seen.load(Ordering::SeqCst),
            2,
            "served from the refreshed entry"
        );
        assert_eq!(r.answers[0].ttl, 50);
    }

    #[tokio::test(start_paused = true)]
    async fn serve_stale_immediate_and_verify() {
        let (chain, up, m) = setup("cache {\n serve_stale 1h\n}");
        ask(&chain).await;
        tokio::time::advance(Duration::from_secs(70)).await;
        up.fail.store(true, Ordering::SeqCst);
        let r = ask(&chain).await;
        assert_eq!(r.answers.len(), 1, "stale answer served at once");
        assert_eq!(r.answers[0].ttl, 0);
        assert_eq!(count(&m.served_stale), 1);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            up.seen.load(Ordering::SeqCst),
            2,
            "refreshed in the background"
        );

        let (chain, up, m) = setup("cache {\n serve_stale 1h verify\n}");
        ask(&chain).await;
        tokio::time::advance(Duration::from_secs(70)).await;
        up.fail.store(true, Ordering::SeqCst);
        let r = ask(&chain).await;
        assert_eq!(
            (r.answers.len(), r.answers[0].ttl),
            (1, 0),
            "upstream failed: stale"
        );
        assert_eq!(count(&m.served_stale), 1);
        up.fail.store(false, Ordering::SeqCst);
        let r = ask(&chain).await;
        assert_eq!(r.answers[0].ttl, 60, "upstream answered: fresh");
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_zones_pass_through() {
        let (chain, up, _) = setup("cache {\n disable success example.org\n}");
        ask(&chain).await;
        ask(&chain).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 2);
    }
}
