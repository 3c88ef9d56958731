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
use crate::plugins::response::{Kind, answers_question, minimal_ttl_with_maximum, typify};
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
    /// The reply answers the question (`serve_stale_policy prefer_positive`).
    answering: bool,
    /// `prefer_positive`: the answer this entry replaced when it does not answer itself.
    last_known_good: Option<Arc<Item>>,
}

impl Item {
    /// This entry if it answers its question, else the answer it replaced, if any.
    fn answering_item(self: &Arc<Self>) -> Option<Arc<Item>> {
        if self.answering {
            return Some(self.clone());
        }
        self.last_known_good.clone()
    }
}

/// CoreDNS's `cacheResponseType` and the NODATA rule of its `key`: a NOERROR reply whose answer
/// section does not answer the question along the CNAME chain (dangling chain, chain ending in
/// another type, records off the chain, two CNAMEs at one owner, a loop) is a NODATA — cached
/// as a denial when it carries an SOA, not cached at all without one (`true`, RFC 2308 §5).
fn cache_kind(msg: &Message) -> (Kind, bool) {
    let kind = typify(msg);
    let nodata = kind == Kind::NoError
        && !msg.answers.is_empty()
        && msg
            .queries
            .first()
            .is_some_and(|q| !answers_question(msg, q.name(), q.query_type(), q.query_class()));
    if !nodata {
        return (kind, false);
    }
    let soa = msg
        .authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA);
    if soa {
        (Kind::NoData, false)
    } else {
        (kind, true)
    }
}

/// Whether `msg` is a complete positive answer to `req`'s question.
fn usable(msg: &Message, req: &Request) -> bool {
    !msg.metadata.truncation
        && typify(msg) == Kind::NoError
        && answers_question(msg, req.qname(), req.qtype(), req.qclass())
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
        let (kind, answers_nothing) = cache_kind(msg);
        let clamp = |b: &super::setup::Bucket| {
            minimal_ttl_with_maximum(msg, kind, b.max_ttl)
                .clamp(b.min_ttl, b.max_ttl.max(b.min_ttl))
        };
        let duration = match kind {
            Kind::NameError | Kind::NoData => clamp(&self.cfg.denial),
            Kind::ServerError => self.cfg.servfail,
            _ => clamp(&self.cfg.success),
        };
        // CoreDNS's request.Match: a reply (QR set) to this question.
        let matches = msg.metadata.message_type == hickory_proto::op::MessageType::Response
            && msg
                .queries
                .first()
                .is_none_or(|q| q.name() == req.qname() && q.query_type() == req.qtype());
        let storable = !msg.metadata.truncation
            && !matches!(kind, Kind::Other | Kind::Meta)
            && !answers_nothing
            && !duration.is_zero();
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
        let answering = usable(msg, req);
        let mut keep = duration + stale;
        let mut last_known_good = None;
        // Keep at most one entry per name where the other can never be served again: a new
        // answer outdates a denial, a new denial (not a SERVFAIL, which never hides an answer)
        // outdates an answer — except that prefer_positive keeps answers. So a fresh success
        // entry is served without looking at the denial cache.
        if label == "success" && (answering || !self.cfg.prefer_positive) {
            self.denial.invalidate(&key);
        } else if label == "denial"
            && !self.cfg.prefer_positive
            && msg.metadata.response_code != ResponseCode::ServFail
        {
            self.success.invalidate(&key);
        }
        if self.cfg.prefer_positive && label == "success" && !answering {
            if let Some(prev) = self.success.get(&key).and_then(|p| p.answering_item()) {
                // A non-answer must not destroy the last known good answer: keep it behind
                // this entry for as long as it could be served.
                let left = (prev.stored + prev.keep).saturating_duration_since(now);
                keep = keep.max(left);
                last_known_good = Some(prev);
            }
        }
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
                keep,
                hits: AtomicU32::new(0),
                window_start_ms: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                answering,
                last_known_good,
            }),
        );
        self.metrics
            .entries
            .with_label_values(&[server, label, z, ""])
            .set(i64::try_from(cache.entry_count()).unwrap_or(i64::MAX));
    }

    /// A reply from a fresh entry: counts the hit and starts a prefetch when the entry is
    /// popular and about to expire.
    #[allow(clippy::too_many_arguments)]
    fn hit(
        self: &Arc<Self>,
        req: &Request,
        name: &str,
        key: Key,
        item: &Arc<Item>,
        age: Duration,
        kind: &str,
        next: &Next<'_>,
    ) -> Response {
        let (server, z) = (&*req.server, self.zones_label.as_str());
        self.metrics
            .hits
            .with_label_values(&[server, kind, z, ""])
            .inc();
        if let Some(p) = self.cfg.prefetch {
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
                self.metrics
                    .prefetch
                    .with_label_values(&[server, z, ""])
                    .inc();
                self.refresh(req, name, key, item, next);
            }
        }
        // CoreDNS's item.ttl: the stored TTL less the whole seconds elapsed (3599 after 1.3 s).
        let ttl = (!self.cfg.keepttl).then(|| secs(item.ttl).saturating_sub(secs(age)));
        Response::new(self.reply_from(req, item, ttl), NAME)
    }

    /// Refreshes `key` in the background through the rest of the chain (prefetch, and
    /// serve_stale's `immediate` mode). A failed refresh keeps the entry.
    fn refresh(
        self: &Arc<Self>,
        req: &Request,
        name: &str,
        key: Key,
        item: &Arc<Item>,
        next: &Next<'_>,
    ) {
        if item.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, req, name, next) = (self.clone(), req.clone(), name.to_string(), next.detach());
        let item = item.clone();
        tokio::spawn(async move {
            if let Ok(mut resp) = next.run(&req).await {
                if !matches!(
                    typify(&resp.msg),
                    Kind::ServerError | Kind::Other | Kind::Meta
                ) {
                    me.store(&req, &name, key, &mut resp.msg, Instant::now());
                }
            }
            // An entry that stays in use (a failed refresh, a last known good answer) may be
            // refreshed again.
            item.refreshing.store(false, Ordering::Release);
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
        let window = c.cfg.serve_stale.map_or(Duration::ZERO, |s| s.duration);
        let mut stale: Option<Arc<Item>> = None;
        if c.cfg.prefer_positive {
            // An answer (or the last known good one behind a later non-answer) that is fresh or
            // within the stale window wins over whatever the denial cache holds.
            if let Some(item) = c.success.get(&key).and_then(|i| i.answering_item()) {
                let age = now.duration_since(item.stored);
                if age < item.ttl {
                    return Ok(c.hit(req, name, key, &item, age, "success", &next));
                }
                if age < item.ttl + window {
                    stale = Some(item);
                }
            }
        }
        let mut looked_up = None;
        if stale.is_none() && !c.cfg.prefer_positive {
            // The hot path: a fresh answer (no newer denial can exist, see `store`).
            let found = c.success.get(&key);
            if let Some(item) = &found {
                let age = now.duration_since(item.stored);
                if age < item.ttl {
                    return Ok(c.hit(req, name, key, item, age, "success", &next));
                }
            }
            looked_up = Some(found);
        }
        if stale.is_none() {
            // Entries that are fresh, or within the stale window.
            let usable =
                |i: Option<Arc<Item>>| i.filter(|i| now.duration_since(i.stored) < i.ttl + window);
            let success = usable(looked_up.unwrap_or_else(|| c.success.get(&key)));
            let mut denial = usable(c.denial.get(&key));
            // A cached SERVFAIL does not shadow an answer (CoreDNS does the same).
            if success.is_some()
                && denial
                    .as_ref()
                    .is_some_and(|d| d.rcode == ResponseCode::ServFail)
            {
                denial = None;
            }
            // A fresh entry before a stale one; then the newer one (the name changed since the
            // other was stored); a tie goes to the denial (CoreDNS looks at it first).
            let rank = |i: &Arc<Item>, denial: bool| {
                let fresh = now.duration_since(i.stored) < i.ttl;
                (fresh, i.stored, denial)
            };
            let pick = match (success, denial) {
                (Some(s), Some(d)) if rank(&s, false) > rank(&d, true) => Some((s, "success")),
                (_, Some(d)) => Some((d, "denial")),
                (Some(s), None) => Some((s, "success")),
                (None, None) => None,
            };
            if let Some((item, kind)) = pick {
                let age = now.duration_since(item.stored);
                if age < item.ttl {
                    return Ok(c.hit(req, name, key, &item, age, kind, &next));
                }
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
            // `verify`: the upstream answer wins unless it failed — with `prefer_positive` and
            // a stale answer, unless it is not an answer.
            let failed = match &result {
                Err(_) => true,
                Ok(r) if c.cfg.prefer_positive && item.answering => !usable(&r.msg, req),
                Ok(r) => r.rcode() == ResponseCode::ServFail,
            };
            if failed {
                if let (Ok(mut r), true) = (result, c.cfg.prefer_positive) {
                    // Cached (a later query may want it), but not sent.
                    c.store(req, name, key, &mut r.msg, now);
                }
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

    /// An upstream whose reply kind can be switched (CoreDNS's test backends).
    struct Switch {
        mode: std::sync::atomic::AtomicU8,
        seen: AtomicUsize,
    }

    const ANSWER: u8 = 0;
    const NXDOMAIN: u8 = 1;
    const NODATA: u8 = 2;
    const SERVFAIL: u8 = 3;
    const NOTIMP: u8 = 4;
    const EMPTY: u8 = 5;
    const REFERRAL: u8 = 6;
    const GLUE: u8 = 7;
    const EXTRA_ONLY: u8 = 8;

    #[async_trait::async_trait]
    impl Handler for Switch {
        fn name(&self) -> &'static str {
            "switch"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            use hickory_proto::rr::rdata::{NS, SOA};
            self.seen.fetch_add(1, Ordering::SeqCst);
            let n = |s: &str| Name::from_ascii(s).unwrap();
            let soa = Record::from_rdata(
                n("example.org."),
                300,
                RData::SOA(SOA::new(
                    n("ns.example.org."),
                    n("hostmaster.example.org."),
                    1,
                    7200,
                    3600,
                    1209600,
                    300,
                )),
            );
            let ns = Record::from_rdata(n("example.org."), 60, RData::NS(NS(n("ns.example.org."))));
            let mut m = req.reply();
            match self.mode.load(Ordering::SeqCst) {
                ANSWER => {
                    m.add_answer(Record::from_rdata(
                        req.qname().clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 10)),
                    ));
                }
                NXDOMAIN => {
                    m.metadata.response_code = ResponseCode::NXDomain;
                    m.add_authority(soa);
                }
                NODATA => {
                    m.add_authority(soa);
                }
                SERVFAIL => m.metadata.response_code = ResponseCode::ServFail,
                NOTIMP => m.metadata.response_code = ResponseCode::NotImp,
                EMPTY => {}
                REFERRAL => {
                    m.add_authority(ns);
                }
                GLUE => {
                    m.add_authority(ns);
                    m.add_additional(Record::from_rdata(
                        n("ns.example.org."),
                        60,
                        RData::A(A::new(192, 0, 2, 53)),
                    ));
                }
                _ => {
                    m.add_additional(Record::from_rdata(
                        req.qname().clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 54)),
                    ));
                }
            }
            Ok(Response::new(m, "switch"))
        }
    }

    fn switch(corefile: &str) -> (Chain, Arc<Switch>) {
        let toks = lex(&Arc::from("Corefile"), corefile);
        let cfg = super::super::parse(&mut Dispenser::new(&toks), &[".".to_string()]).unwrap();
        let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
        let up = Arc::new(Switch {
            mode: std::sync::atomic::AtomicU8::new(ANSWER),
            seen: AtomicUsize::new(0),
        });
        (
            Chain::new(vec![Arc::new(Cache::new(cfg, metrics)), up.clone()]),
            up,
        )
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn prefer_positive_keeps_an_answer_over_a_later_denial() {
        // CoreDNS's TestPreferPositiveCachePolicy, through the handler: an answer goes stale,
        // the background refresh caches NXDOMAIN; the default policy then answers NXDOMAIN,
        // prefer_positive the stale answer (until the stale window ends).
        for (policy, want_after) in [
            ("", ResponseCode::NXDomain),
            ("serve_stale_policy prefer_positive", ResponseCode::NoError),
        ] {
            let (chain, up) = switch(&format!("cache {{\n serve_stale 1h\n {policy}\n}}"));
            assert_eq!(ask(&chain).await.answers.len(), 1);
            tokio::time::advance(Duration::from_secs(120)).await;
            up.mode.store(NXDOMAIN, Ordering::SeqCst);
            let r = ask(&chain).await;
            assert_eq!(
                (r.metadata.response_code, r.answers[0].ttl),
                (ResponseCode::NoError, 0),
                "stale answer first"
            );
            settle().await;
            let r = ask(&chain).await;
            assert_eq!(r.metadata.response_code, want_after, "{policy:?}");
            if !policy.is_empty() {
                tokio::time::advance(Duration::from_secs(3600)).await;
                assert_eq!(
                    ask(&chain).await.metadata.response_code,
                    ResponseCode::NXDomain,
                    "after the stale window"
                );
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn prefer_positive_retains_the_last_known_good_answer() {
        // CoreDNS's TestPreferPositiveRetainsLKGAcrossNonAnswerSuccessRefreshes: an empty
        // NOERROR, a referral, a referral with glue, an additional-only reply.
        let (chain, up) =
            switch("cache {\n serve_stale 1h\n serve_stale_policy prefer_positive\n}");
        ask(&chain).await;
        tokio::time::advance(Duration::from_secs(120)).await;
        for mode in [EMPTY, REFERRAL, GLUE, EXTRA_ONLY] {
            up.mode.store(mode, Ordering::SeqCst);
            let r = ask(&chain).await;
            assert_eq!(r.answers[0].data.to_string(), "192.0.2.10", "mode {mode}");
            settle().await;
            let r = ask(&chain).await;
            assert_eq!(
                r.answers[0].data.to_string(),
                "192.0.2.10",
                "after a refresh with mode {mode}"
            );
            tokio::time::advance(Duration::from_secs(10)).await;
        }
        // A new answer replaces it.
        up.mode.store(ANSWER, Ordering::SeqCst);
        ask(&chain).await;
        settle().await;
        assert_eq!(ask(&chain).await.answers[0].ttl, 60, "fresh again");
    }

    #[tokio::test(start_paused = true)]
    async fn prefer_positive_verify_keeps_stale_on_non_answers() {
        // CoreDNS's TestPreferPositiveVerifyKeepsStaleOnNonAnswers.
        for mode in [NXDOMAIN, NODATA, SERVFAIL, NOTIMP] {
            let (chain, up) =
                switch("cache {\n serve_stale 1h verify\n serve_stale_policy prefer_positive\n}");
            ask(&chain).await;
            tokio::time::advance(Duration::from_secs(120)).await;
            up.mode.store(mode, Ordering::SeqCst);
            let r = ask(&chain).await;
            assert_eq!(up.seen.load(Ordering::SeqCst), 2, "verified upstream first");
            assert_eq!(
                (r.metadata.response_code, r.answers.len(), r.answers[0].ttl),
                (ResponseCode::NoError, 1, 0),
                "mode {mode}"
            );
        }
        // Without the policy a verified NXDOMAIN is the answer.
        let (chain, up) = switch("cache {\n serve_stale 1h verify\n}");
        ask(&chain).await;
        tokio::time::advance(Duration::from_secs(120)).await;
        up.mode.store(NXDOMAIN, Ordering::SeqCst);
        assert_eq!(
            ask(&chain).await.metadata.response_code,
            ResponseCode::NXDomain
        );
    }

    #[tokio::test(start_paused = true)]
    async fn servfail_does_not_shadow_an_answer_and_newest_wins() {
        // CoreDNS's TestServfailDoesNotShadowPositiveCache.
        let (chain, up) = switch("cache {\n serve_stale 1h\n}");
        ask(&chain).await;
        tokio::time::advance(Duration::from_secs(30)).await;
        up.mode.store(SERVFAIL, Ordering::SeqCst);
        // Force a SERVFAIL into the cache: a different key would not do, so ask past the TTL.
        tokio::time::advance(Duration::from_secs(40)).await;
        let r = ask(&chain).await; // stale answer served, refresh caches the SERVFAIL
        assert_eq!(r.metadata.response_code, ResponseCode::NoError);
        settle().await;
        assert_eq!(
            ask(&chain).await.metadata.response_code,
            ResponseCode::NoError,
            "SERVFAIL shadowed nothing"
        );
        // A later NXDOMAIN (newer than the answer) wins without the policy.
        let (chain, up) = switch("cache {\n serve_stale 1h\n}");
        up.mode.store(NXDOMAIN, Ordering::SeqCst);
        assert_eq!(
            ask(&chain).await.metadata.response_code,
            ResponseCode::NXDomain
        );
    }
}
