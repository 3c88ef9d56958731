//! The `cache` handler: two moka caches (success, denial) in front of the rest of the chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use hickory_proto::op::{Message, ResponseCode, emit_message_parts};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use moka::notification::RemovalCause;
use moka::sync::Cache as Moka;
use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::NAME;
use super::setup::CacheConfig;
use crate::dnswire;
use crate::plugins::fast::{FastQuery, FastStep};
use crate::plugins::request::Reply;
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

/// What an entry answers: the lower-case name, type, class and the DO and CD bits of the
/// question (CoreDNS's `hash(qname, qtype, do, cd)`, plus the class it checks on a hit).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    name: Box<str>,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

/// The caches are keyed by a hash of the [`Key`] (keyed per process), so a lookup builds no key;
/// the entry keeps the whole key and a hit checks it, so two questions with the same hash only
/// take each other's place.
type Hash = u64;

fn key_hash(hasher: &foldhash::fast::RandomState, name: &str, req: &Request) -> Hash {
    key_hash_of(
        hasher,
        name,
        u16::from(req.qtype()),
        u16::from(req.qclass()),
        req.do_bit(),
        req.checking_disabled,
    )
}

fn key_hash_of(
    hasher: &foldhash::fast::RandomState,
    name: &str,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
) -> Hash {
    use std::hash::{BuildHasher, Hasher};
    let mut h = hasher.build_hasher();
    h.write(name.as_bytes());
    h.write_u16(qtype);
    h.write_u16(qclass);
    h.write_u8(u8::from(dnssec_ok) | (u8::from(checking_disabled) << 1));
    h.finish()
}

/// The key of `req`'s question (`name`: its lower-case name).
fn key_of(name: &str, req: &Request) -> Key {
    Key {
        name: name.into(),
        qtype: u16::from(req.qtype()),
        qclass: u16::from(req.qclass()),
        dnssec_ok: req.do_bit(),
        checking_disabled: req.checking_disabled,
    }
}

/// The entry stored under `hash` if it is for `req`'s question (`name`: its lower-case name).
fn lookup(cache: &Store, hash: Hash, name: &str, req: &Request) -> Option<Arc<Item>> {
    cache.get(&hash).filter(|item| {
        let k = &item.key;
        *k.name == *name
            && k.qtype == u16::from(req.qtype())
            && k.qclass == u16::from(req.qclass())
            && k.dnssec_ok == req.do_bit()
            && k.checking_disabled == req.checking_disabled
    })
}

/// A stored reply: the message as encoded for the first client that asked (header with AA, RA,
/// AD and the rcode; the question; every record with the TTL it is cached for; no OPT record),
/// and where its TTLs are. A hit copies the bytes and patches the id, the flags the request
/// decides and the TTLs; nothing is decoded or encoded.
#[derive(Debug)]
struct Item {
    key: Key,
    authentic_data: bool,
    wire: Box<[u8]>,
    /// Offsets of the TTL fields in `wire`.
    ttl_at: Box<[u16]>,
    stored: Instant,
    /// The cache duration; every record's TTL when stored (CoreDNS's `origTTL`).
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
    /// The stored reply's rcode.
    fn rcode(&self) -> ResponseCode {
        ResponseCode::from(0, dnswire::Flags::of(&self.wire).rcode)
    }

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

impl moka::Expiry<Hash, Arc<Item>> for ItemExpiry {
    fn expire_after_create(
        &self,
        _: &Hash,
        v: &Arc<Item>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(v.keep)
    }
}

/// [`typify`] from what the header and the records' types tell (the fast path's replies).
fn typify_parts(rcode: ResponseCode, answers: bool, soa: bool, ns: bool) -> Kind {
    if answers && rcode == ResponseCode::NoError {
        return Kind::NoError;
    }
    match rcode {
        ResponseCode::NoError if soa => Kind::NoData,
        ResponseCode::NXDomain if soa => Kind::NameError,
        ResponseCode::ServFail | ResponseCode::NotImp => Kind::ServerError,
        ResponseCode::NoError if ns => Kind::Delegation,
        ResponseCode::NoError => Kind::NoError,
        _ => Kind::Other,
    }
}

/// The smallest of `ttls`, 5 s when there is none ([`minimal_ttl_with_maximum`] before the
/// bucket's maximum, which [`Inner::duration`] applies).
fn min_ttl(ttls: impl Iterator<Item = u32>) -> Duration {
    ttls.min().map_or(Duration::from_secs(5), |t| {
        Duration::from_secs(u64::from(t))
    })
}

/// Whether every answer record of the reply `out` is of `qtype` and class IN and owned by the
/// question's name written as a pointer to it: then it answers its question as
/// [`answers_question`] asks, with no CNAME chain to follow.
fn plainly_answers(out: &[u8], rrs: &[dnswire::Rr], qtype: u16) -> bool {
    let mut answers = rrs
        .iter()
        .filter(|r| r.section == dnswire::Section::Answer)
        .peekable();
    answers.peek().is_some()
        && answers.all(|r| {
            r.rtype == qtype
                && out.get(r.start..r.name_end) == Some(&[0xc0, 0x0c][..])
                && dnswire::u16_at(out, r.name_end + 2) == Some(1)
        })
}

/// The `cache` plugin.
pub struct Cache {
    inner: Arc<Inner>,
}

type Store = Moka<Hash, Arc<Item>, foldhash::fast::RandomState>;

struct Inner {
    cfg: CacheConfig,
    success: Store,
    denial: Store,
    metrics: Arc<CacheMetrics>,
    zones_label: String,
    hasher: foldhash::fast::RandomState,
    /// The counters of the first server label seen (a block usually has one): no label lookup
    /// per query.
    counters: std::sync::OnceLock<(Arc<str>, Counters)>,
}

/// One server's `requests`, `hits` and `misses` counters.
#[derive(Clone)]
struct Counters {
    requests: IntCounter,
    hits_success: IntCounter,
    hits_denial: IntCounter,
    misses: IntCounter,
}

impl Cache {
    /// A cache for `cfg`, counting into `metrics`.
    pub fn new(cfg: CacheConfig, metrics: Arc<CacheMetrics>) -> Self {
        let zones_label = cfg.zones.join(",");
        let build = |cap: u64, kind: &'static str| {
            let (m, z) = (metrics.clone(), zones_label.clone());
            Moka::<Hash, Arc<Item>, _>::builder()
                .max_capacity(cap)
                .expire_after(ItemExpiry)
                .eviction_listener(move |_k, _v, cause| {
                    if cause == RemovalCause::Size {
                        // The server label is not known here; CoreDNS's is per block too.
                        m.evictions.with_label_values(&["", kind, &z, ""]).inc();
                    }
                })
                .build_with_hasher(foldhash::fast::RandomState::default())
        };
        Self {
            inner: Arc::new(Inner {
                success: build(cfg.success.capacity, "success"),
                denial: build(cfg.denial.capacity, "denial"),
                cfg,
                metrics,
                zones_label,
                hasher: foldhash::fast::RandomState::default(),
                counters: std::sync::OnceLock::new(),
            }),
        }
    }
}

impl Inner {
    /// How long a reply of `kind` whose smallest TTL is `msg_ttl` (uncapped) is cached (and
    /// the TTL every record of it gets): CoreDNS's `MinimalTTLWithMaximum` with the bucket's
    /// maximum, then clamped to the bucket.
    fn duration(&self, kind: Kind, msg_ttl: Duration) -> Duration {
        let clamp = |b: &super::setup::Bucket| {
            msg_ttl
                .min(b.max_ttl)
                .clamp(b.min_ttl, b.max_ttl.max(b.min_ttl))
        };
        match kind {
            Kind::NameError | Kind::NoData => clamp(&self.cfg.denial),
            Kind::ServerError => self.cfg.servfail,
            _ => clamp(&self.cfg.success),
        }
    }

    /// Whether `name` is under the cache's zones (and the type is one it looks up).
    fn covers(&self, name: &str, qtype: RecordType) -> bool {
        self.cfg.zones.iter().any(|z| is_subdomain(z, name))
            && !matches!(qtype, RecordType::AXFR | RecordType::IXFR)
    }

    /// The counters for `server`.
    fn counters(&self, server: &Arc<str>) -> std::borrow::Cow<'_, Counters> {
        let make = || {
            let (m, z) = (&self.metrics, self.zones_label.as_str());
            Counters {
                requests: m.requests.with_label_values(&[server, z, ""]),
                hits_success: m.hits.with_label_values(&[server, "success", z, ""]),
                hits_denial: m.hits.with_label_values(&[server, "denial", z, ""]),
                misses: m.misses.with_label_values(&[server, z, ""]),
            }
        };
        let (first, c) = self.counters.get_or_init(|| (server.clone(), make()));
        if Arc::ptr_eq(first, server) || **first == **server {
            std::borrow::Cow::Borrowed(c)
        } else {
            std::borrow::Cow::Owned(make())
        }
    }

    /// The reply to `req` from `item`, with `ttl` on every record (`None`: as stored).
    fn reply_from(&self, req: &Request, item: &Item, ttl: Option<u32>) -> Response {
        let ad = item.authentic_data && (req.do_bit() || req.authentic_data);
        let mut wire = item.wire.to_vec();
        if !same_name(&wire, req.qname()) {
            // Asked in another letter case: the records' names may point into the stored
            // question, so the reply is rebuilt from the decoded entry with this question
            // (what CoreDNS writes: the question as asked, the records as stored).
            let mut msg = Reply::from_wire(wire).into_message();
            msg.queries = vec![req.query().clone()];
            msg.metadata.id = req.id;
            msg.metadata.op_code = req.op_code;
            msg.metadata.recursion_desired = req.recursion_desired;
            msg.metadata.checking_disabled = req.checking_disabled;
            msg.metadata.authentic_data = ad;
            if let Some(t) = ttl {
                for r in msg
                    .answers
                    .iter_mut()
                    .chain(msg.authorities.iter_mut())
                    .chain(msg.additionals.iter_mut())
                {
                    r.ttl = t;
                }
            }
            return Response::new(msg, NAME);
        }
        dnswire::set_reply_header(
            &mut wire,
            req.id,
            u8::from(req.op_code),
            req.recursion_desired,
            req.checking_disabled,
        );
        let mut flags = dnswire::Flags::of(&wire);
        flags.authentic_data = ad;
        flags.write_answer_bits(&mut wire);
        if let Some(t) = ttl {
            dnswire::set_ttls(&mut wire, &item.ttl_at, t);
        }
        Response::from_wire(wire, NAME)
    }

    /// Classifies `resp`, rewrites its TTLs to the cache duration, and stores it if it may be.
    fn store(
        &self,
        req: &Request,
        name: &str,
        (hash, key): (Hash, Key),
        msg: &mut Message,
        now: Instant,
    ) {
        let server = &*req.server;
        let z = self.zones_label.as_str();
        let (kind, answers_nothing) = cache_kind(msg);
        let duration = self.duration(kind, minimal_ttl_with_maximum(msg, kind, Duration::MAX));
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
        let Some((wire, ttl_at)) = encode_item(req, msg) else {
            self.metrics.drops.with_label_values(&[server, z, ""]).inc();
            return;
        };
        let answering = usable(msg, req);
        let mut keep = duration + stale;
        let mut last_known_good = None;
        // Keep at most one entry per name where the other can never be served again: a new
        // answer outdates a denial, a new denial (not a SERVFAIL, which never hides an answer)
        // outdates an answer — except that prefer_positive keeps answers. So a fresh success
        // entry is served without looking at the denial cache.
        if label == "success" && (answering || !self.cfg.prefer_positive) {
            self.denial.invalidate(&hash);
        } else if label == "denial"
            && !self.cfg.prefer_positive
            && msg.metadata.response_code != ResponseCode::ServFail
        {
            self.success.invalidate(&hash);
        }
        if self.cfg.prefer_positive && label == "success" && !answering {
            if let Some(prev) =
                lookup(&self.success, hash, name, req).and_then(|p| p.answering_item())
            {
                // A non-answer must not destroy the last known good answer: keep it behind
                // this entry for as long as it could be served.
                let left = (prev.stored + prev.keep).saturating_duration_since(now);
                keep = keep.max(left);
                last_known_good = Some(prev);
            }
        }
        cache.insert(
            hash,
            Arc::new(Item {
                key,
                authentic_data: msg.metadata.authentic_data,
                wire,
                ttl_at,
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
        hash: Hash,
        item: &Arc<Item>,
        age: Duration,
        hits: &IntCounter,
        next: &Next<'_>,
    ) -> Response {
        hits.inc();
        if let Some(p) = self.cfg.prefetch {
            let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
            let window = item.window_start_ms.load(Ordering::Relaxed);
            if age_ms.saturating_sub(window) > p.duration.as_millis() as u64 {
                // A gap longer than the window: popularity starts over.
                item.window_start_ms.store(age_ms, Ordering::Relaxed);
                item.hits.store(0, Ordering::Relaxed);
            }
            let hits = item.hits.fetch_add(1, Ordering::Relaxed) + 1;
            let left = item.ttl.saturating_sub(age);
            let threshold = item.ttl.mul_f64(f64::from(p.percentage) / 100.0);
            if hits >= p.amount && left <= threshold.max(Duration::from_secs(1)) {
                let (server, z) = (&*req.server, self.zones_label.as_str());
                self.metrics
                    .prefetch
                    .with_label_values(&[server, z, ""])
                    .inc();
                self.refresh(req, name, hash, item, next);
            }
        }
        let left = remaining(item, age);
        let ttl = (!self.cfg.keepttl).then(|| u32::try_from(left).unwrap_or(u32::MAX));
        self.reply_from(req, item, ttl)
    }

    /// Refreshes `key` in the background through the rest of the chain (prefetch, and
    /// serve_stale's `immediate` mode). A failed refresh keeps the entry.
    fn refresh(
        self: &Arc<Self>,
        req: &Request,
        name: &str,
        hash: Hash,
        item: &Arc<Item>,
        next: &Next<'_>,
    ) {
        if item.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (me, req, name, next) = (self.clone(), req.clone(), name.to_string(), next.detach());
        let key = item.key.clone();
        let item = item.clone();
        tokio::spawn(async move {
            if let Ok(mut resp) = next.run(&req).await {
                if !matches!(
                    typify(&resp.msg),
                    Kind::ServerError | Kind::Other | Kind::Meta
                ) {
                    me.store(&req, &name, (hash, key), &mut resp.msg, Instant::now());
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

/// The TTL an entry answers with after `age`: its TTL less the whole seconds it has been
/// stored (CoreDNS's `item.ttl`: a fresh entry answers with its whole TTL); 0 or less is
/// expired.
fn remaining(item: &Item, age: Duration) -> i64 {
    i64::from(secs(item.ttl)) - i64::try_from(age.as_secs()).unwrap_or(i64::MAX)
}

/// A stored reply and the offsets of its TTLs.
type Encoded = (Box<[u8]>, Box<[u16]>);

/// Encodes `msg` as the cache keeps it (see [`Item`]): the question of `req`, AA set, no OPT.
fn encode_item(req: &Request, msg: &Message) -> Option<Encoded> {
    let mut md = msg.metadata;
    md.authoritative = true;
    md.truncation = false;
    if md.response_code.high() != 0 {
        return None;
    }
    let mut buf = Vec::with_capacity(512);
    emit_message_parts(
        &md,
        &mut std::iter::once(req.query()),
        &mut msg.answers.iter(),
        &mut msg.authorities.iter(),
        &mut msg.additionals.iter(),
        None,
        None,
        &mut BinEncoder::new(&mut buf),
    )
    .ok()?;
    let mut ttl_at = Vec::new();
    for rr in dnswire::records(&buf)? {
        let rr = rr?;
        if rr.rtype != dnswire::TYPE_OPT {
            ttl_at.push(u16::try_from(rr.ttl_at()).ok()?);
        }
    }
    Some((buf.into_boxed_slice(), ttl_at.into_boxed_slice()))
}

/// Whether the question of `wire` is `name` in the same letter case.
fn same_name(wire: &[u8], name: &Name) -> bool {
    let mut at = dnswire::HEADER;
    for label in name.iter() {
        let end = at + 1 + label.len();
        if wire.get(at) != Some(&(label.len() as u8)) || wire.get(at + 1..end) != Some(label) {
            return false;
        }
        at = end;
    }
    wire.get(at) == Some(&0)
}

#[async_trait::async_trait]
impl Handler for Cache {
    fn name(&self) -> &'static str {
        NAME
    }

    /// A fresh entry asked in its stored letter case answers; a name neither bucket may store
    /// (both `disable`d for it) passes on; anything else (a miss to store, stale entries,
    /// prefetch, a `prefer_positive` non-answer that may hide an older answer) takes the
    /// general path. Without `prefer_positive` a fresh success entry has no newer denial
    /// behind it (`store` drops the other), so looking at success first is `serve`'s order.
    fn fast(&self, q: &FastQuery<'_>, out: &mut Vec<u8>) -> FastStep {
        let c = &self.inner;
        let name = q.lower;
        if !c.covers(name, q.qtype()) {
            return FastStep::Pass;
        }
        // A name neither bucket may store (kubeadm's `disable success|denial cluster.local`)
        // is never in either cache: no lookup.
        let disabled = |b: &super::setup::Bucket| b.disabled.iter().any(|d| is_subdomain(d, name));
        if disabled(&c.cfg.success) && disabled(&c.cfg.denial) {
            return FastStep::Pass;
        }
        let hash = key_hash_of(
            &c.hasher,
            name,
            q.q.qtype,
            1,
            q.do_bit(),
            q.q.checking_disabled,
        );
        let now = Instant::now();
        for (cache, success) in [(&c.success, true), (&c.denial, false)] {
            let Some(item) = cache.get(&hash) else {
                continue;
            };
            let k = &item.key;
            if k.dnssec_ok != q.do_bit() || k.checking_disabled != q.q.checking_disabled {
                continue;
            }
            // The stored reply's question, byte for byte the query's (name in the same letter
            // case, type, class IN), is the key's name, type and class: the stored bytes are
            // read next anyway, the key's name would be one more place in memory.
            let question = q.q.question();
            let stored_question = item
                .wire
                .get(dnswire::HEADER..dnswire::HEADER + question.len());
            if stored_question != Some(question) {
                if *k.name != *name || k.qtype != q.q.qtype || k.qclass != 1 {
                    // Another name with the same hash.
                    continue;
                }
                // Asked in another letter case.
                return FastStep::No;
            }
            let left = remaining(&item, now.duration_since(item.stored));
            // With prefer_positive a non-answer may stand in front of the answer it replaced.
            let shadowing = success && c.cfg.prefer_positive && !item.answering;
            if left <= 0 || shadowing || c.cfg.prefetch.is_some() {
                return FastStep::No;
            }
            out.clear();
            out.extend_from_slice(&item.wire);
            dnswire::set_reply_header(out, q.q.id, 0, q.q.recursion_desired, q.q.checking_disabled);
            let mut flags = dnswire::Flags::of(out);
            flags.authentic_data = item.authentic_data && (q.do_bit() || q.q.authentic_data);
            flags.write_answer_bits(out);
            if !c.cfg.keepttl {
                dnswire::set_ttls(out, &item.ttl_at, u32::try_from(left).unwrap_or(u32::MAX));
            }
            let opt = if q.q.edns.is_some() { 11 } else { 0 };
            if out.len() + opt > usize::from(q.max_size()) {
                return FastStep::No;
            }
            q.push_opt(out);
            let counters = c.counters(q.server);
            counters.requests.inc();
            if success {
                counters.hits_success.inc();
            } else {
                counters.hits_denial.inc();
            }
            return FastStep::Answered;
        }
        FastStep::No
    }

    /// A miss that was not stored: counted, and every record's TTL set to the cache duration,
    /// as `serve` and `store` do.
    fn fast_after(&self, q: &FastQuery<'_>, out: &mut Vec<u8>) {
        let c = &self.inner;
        if !c.covers(q.lower, q.qtype()) {
            return;
        }
        let counters = c.counters(q.server);
        counters.requests.inc();
        counters.misses.inc();
        let Some(records) = dnswire::records(out) else {
            return;
        };
        let Some(rrs) = records
            .filter(|r| r.as_ref().is_none_or(|r| r.rtype != dnswire::TYPE_OPT))
            .collect::<Option<Vec<dnswire::Rr>>>()
        else {
            return;
        };
        let flags = dnswire::Flags::of(out);
        let in_authority = |t: u16| {
            rrs.iter()
                .any(|r| r.section == dnswire::Section::Authority && r.rtype == t)
        };
        let answers = rrs.iter().any(|r| r.section == dnswire::Section::Answer);
        let mut kind = typify_parts(
            ResponseCode::from(0, flags.rcode),
            answers,
            in_authority(dnswire::TYPE_SOA),
            in_authority(dnswire::TYPE_NS),
        );
        if kind == Kind::NoError && answers && !plainly_answers(out, &rrs, q.q.qtype) {
            // An answer that may not reach the question (a CNAME chain, records off it): the
            // rule `store` applies ([`cache_kind`]), on the decoded reply. Rare on this path.
            let Ok(msg) = Message::from_vec(out) else {
                return;
            };
            kind = cache_kind(&msg).0;
        }
        let msg_ttl = if matches!(kind, Kind::NoError | Kind::NameError | Kind::NoData) {
            min_ttl(rrs.iter().filter_map(|r| {
                let at = r.ttl_at();
                Some(u32::from_be_bytes(out.get(at..at + 4)?.try_into().ok()?))
            }))
        } else {
            Duration::from_secs(5)
        };
        let ttl = secs(c.duration(kind, msg_ttl));
        let at: Vec<u16> = rrs
            .iter()
            .filter_map(|r| u16::try_from(r.ttl_at()).ok())
            .collect();
        dnswire::set_ttls(out, &at, ttl);
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let c = &self.inner;
        let name = req.qname_lower();
        if !c.covers(name, req.qtype()) {
            return next.run(req).await;
        }
        let server = &*req.server;
        let z = c.zones_label.as_str();
        let counters = c.counters(&req.server);
        counters.requests.inc();
        let hash = key_hash(&c.hasher, name, req);
        let now = Instant::now();
        let window = c.cfg.serve_stale.map_or(Duration::ZERO, |s| s.duration);
        let mut stale: Option<Arc<Item>> = None;
        let fresh = |i: &Item| remaining(i, now.duration_since(i.stored)) > 0;
        if c.cfg.prefer_positive {
            // An answer (or the last known good one behind a later non-answer) that is fresh or
            // within the stale window wins over whatever the denial cache holds.
            if let Some(item) = lookup(&c.success, hash, name, req).and_then(|i| i.answering_item())
            {
                let age = now.duration_since(item.stored);
                if fresh(&item) {
                    let hits = &counters.hits_success;
                    return Ok(c.hit(req, name, hash, &item, age, hits, &next));
                }
                if age < item.ttl + window {
                    stale = Some(item);
                }
            }
        }
        let mut looked_up = None;
        if stale.is_none() && !c.cfg.prefer_positive {
            // The hot path: a fresh answer (no newer denial can exist, see `store`).
            let found = lookup(&c.success, hash, name, req);
            if let Some(item) = &found {
                if fresh(item) {
                    let age = now.duration_since(item.stored);
                    let hits = &counters.hits_success;
                    return Ok(c.hit(req, name, hash, item, age, hits, &next));
                }
            }
            looked_up = Some(found);
        }
        if stale.is_none() {
            // Entries that are fresh, or within the stale window.
            let usable =
                |i: Option<Arc<Item>>| i.filter(|i| now.duration_since(i.stored) < i.ttl + window);
            let success = usable(looked_up.unwrap_or_else(|| lookup(&c.success, hash, name, req)));
            let mut denial = usable(lookup(&c.denial, hash, name, req));
            // A cached SERVFAIL does not shadow an answer (CoreDNS does the same).
            if success.is_some()
                && denial
                    .as_ref()
                    .is_some_and(|d| d.rcode() == ResponseCode::ServFail)
            {
                denial = None;
            }
            // A fresh entry before a stale one; then the newer one (the name changed since the
            // other was stored); a tie goes to the denial (CoreDNS looks at it first).
            let rank = |i: &Arc<Item>, denial: bool| (fresh(i), i.stored, denial);
            let pick = match (success, denial) {
                (Some(s), Some(d)) if rank(&s, false) > rank(&d, true) => {
                    Some((s, &counters.hits_success))
                }
                (_, Some(d)) => Some((d, &counters.hits_denial)),
                (Some(s), None) => Some((s, &counters.hits_success)),
                (None, None) => None,
            };
            if let Some((item, hits)) = pick {
                if fresh(&item) {
                    let age = now.duration_since(item.stored);
                    return Ok(c.hit(req, name, hash, &item, age, hits, &next));
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
                c.refresh(req, name, hash, item, &next);
                return Ok(c.reply_from(req, item, Some(0)));
            }
        }
        counters.misses.inc();
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
                    c.store(req, name, (hash, key_of(name, req)), &mut r.msg, now);
                }
                c.metrics
                    .served_stale
                    .with_label_values(&[server, z, ""])
                    .inc();
                return Ok(c.reply_from(req, item, Some(0)));
            }
        }
        let mut resp = result?;
        c.store(req, name, (hash, key_of(name, req)), &mut resp.msg, now);
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record};

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
        chain.run(&req).await.unwrap().msg.into_message()
    }

    /// An upstream that answers every query with a copy of `reply` (question and id from the
    /// query) and counts the queries.
    struct Canned {
        reply: Message,
        seen: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Handler for Canned {
        fn name(&self) -> &'static str {
            "canned"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            self.seen.fetch_add(1, Ordering::SeqCst);
            let mut m = self.reply.clone();
            m.metadata.id = req.id;
            m.queries = vec![req.query().clone()];
            Ok(Response::new(m, "canned"))
        }
    }

    fn rr(text: &str) -> Record {
        // "NAME TTL TYPE DATA…" for the types the table uses.
        let f: Vec<&str> = text.split_whitespace().collect();
        let name = Name::from_ascii(f[0]).unwrap();
        let ttl: u32 = f[1].parse().unwrap();
        let n = |s: &str| Name::from_ascii(s).unwrap();
        let data = match f[2] {
            "A" => RData::A(A(f[3].parse().unwrap())),
            "MX" => RData::MX(hickory_proto::rr::rdata::MX::new(
                f[3].parse().unwrap(),
                n(f[4]),
            )),
            "SOA" => RData::SOA(hickory_proto::rr::rdata::SOA::new(
                n(f[3]),
                n(f[4]),
                f[5].parse().unwrap(),
                f[6].parse().unwrap(),
                f[7].parse().unwrap(),
                f[8].parse().unwrap(),
                f[9].parse().unwrap(),
            )),
            other => panic!("type {other}"),
        };
        Record::from_rdata(name, ttl, data)
    }

    fn request(name: &str, qtype: RecordType, dnssec_ok: bool, cd: bool, ad: bool) -> Request {
        let mut req = Request::new(
            Name::from_ascii(name).unwrap(),
            qtype,
            "127.0.0.1:5000".parse().unwrap(),
            Proto::Udp,
        );
        req.checking_disabled = cd;
        req.authentic_data = ad;
        if dnssec_ok {
            let mut e = hickory_proto::op::Edns::new();
            e.set_dnssec_ok(true);
            req.edns = Some(e);
        }
        req
    }

    /// CoreDNS's TestCacheInsertion (plugin/cache/cache_test.go) through the handler: what is
    /// stored, and what a hit answers (header bits, rcode, sections, TTLs). The TTLs are the
    /// ones ServeDNS gives (the smallest TTL capped at the cache's 3600 s); the table in
    /// CoreDNS sets every entry's duration to 3600 directly. Left out: the RRSIG expiry and
    /// CNAME-chain cases of newer CoreDNS, which this cache does not implement.
    #[tokio::test(start_paused = true)]
    async fn coredns_insertion_table() {
        struct Case {
            name: &'static str,
            qname: &'static str,
            qtype: RecordType,
            dnssec_ok: bool,
            cd: bool,
            rcode: ResponseCode,
            ra: bool,
            ad: bool,
            tc: bool,
            answer: &'static [&'static str],
            ns: &'static [&'static str],
            cached: bool,
            out_ttls: &'static [u32],
        }
        const SOA: &str = "example.org. 3600 SOA sns.dns.icann.org. noc.dns.icann.org. 2016082540 7200 3600 1209600 3600";
        let mx = &[
            "miek.nl. 3601 MX 1 aspmx.l.google.com.",
            "miek.nl. 3601 MX 10 aspmx2.googlemail.com.",
        ][..];
        let base = Case {
            name: "",
            qname: "miek.nl.",
            qtype: RecordType::MX,
            dnssec_ok: false,
            cd: false,
            rcode: ResponseCode::NoError,
            ra: true,
            ad: false,
            tc: false,
            answer: &[],
            ns: &[],
            cached: true,
            out_ttls: &[],
        };
        let cases = [
            Case {
                name: "ad bit cache",
                ad: true,
                answer: mx,
                out_ttls: &[3600, 3600],
                ..base
            },
            Case {
                name: "case sensitivity cache",
                qname: "mIEK.nL.",
                ad: true,
                answer: mx,
                out_ttls: &[3600, 3600],
                ..base
            },
            Case {
                name: "truncated responses shouldn't cache",
                tc: true,
                answer: &["miek.nl. 1800 MX 1 aspmx.l.google.com."],
                cached: false,
                ..base
            },
            Case {
                name: "NXDOMAIN cache",
                qname: "example.org.",
                qtype: RecordType::A,
                rcode: ResponseCode::NXDomain,
                ns: &[SOA],
                out_ttls: &[3600],
                ..base
            },
            Case {
                name: "NXDOMAIN without SOA does not cache",
                qname: "1.1.168.192.in-addr.arpa.",
                qtype: RecordType::PTR,
                rcode: ResponseCode::NXDomain,
                cached: false,
                ..base
            },
            Case {
                name: "SERVFAIL cache",
                qname: "example.org.",
                qtype: RecordType::A,
                rcode: ResponseCode::ServFail,
                ..base
            },
            Case {
                name: "NOTIMP cache",
                qname: "example.org.",
                qtype: RecordType::A,
                rcode: ResponseCode::NotImp,
                ..base
            },
            Case {
                name: "DO bit cache",
                qname: "example.org.",
                dnssec_ok: true,
                ra: true,
                answer: &[
                    "example.org. 3600 MX 1 aspmx.l.google.com.",
                    "example.org. 1800 MX 10 aspmx2.googlemail.com.",
                ],
                out_ttls: &[1800, 1800],
                ..base
            },
            Case {
                name: "CD bit cache",
                qname: "dnssec-failed.org.",
                qtype: RecordType::A,
                cd: true,
                ra: false,
                answer: &["dnssec-failed.org. 3600 A 127.0.0.1"],
                out_ttls: &[3600],
                ..base
            },
            Case {
                name: "negative zone exception shouldn't cache",
                qname: "neg-disabled.example.org.",
                qtype: RecordType::A,
                rcode: ResponseCode::NXDomain,
                ra: false,
                ns: &[SOA],
                cached: false,
                ..base
            },
            Case {
                name: "positive zone exception shouldn't cache",
                qname: "pos-disabled.example.org.",
                qtype: RecordType::A,
                ra: false,
                answer: &["pos-disabled.example.org. 3600 A 127.0.0.1"],
                cached: false,
                ..base
            },
            Case {
                name: "positive zone exception with negative answer cache",
                qname: "pos-disabled.example.org.",
                qtype: RecordType::A,
                rcode: ResponseCode::NXDomain,
                ra: false,
                ns: &[SOA],
                out_ttls: &[3600],
                ..base
            },
            Case {
                name: "negative zone exception with positive answer cache",
                qname: "neg-disabled.example.org.",
                qtype: RecordType::A,
                ra: false,
                answer: &["neg-disabled.example.org. 3600 A 127.0.0.1"],
                out_ttls: &[3600],
                ..base
            },
        ];
        for c in cases {
            let toks = lex(
                &Arc::from("Corefile"),
                "cache 3600 {\n disable denial neg-disabled.example.org\n disable success pos-disabled.example.org\n}",
            );
            let cfg = super::super::parse(&mut Dispenser::new(&toks), &[".".to_string()]).unwrap();
            let metrics = Arc::new(CacheMetrics::new(&prometheus::Registry::new()).unwrap());
            let mut reply = Message::new(
                0,
                hickory_proto::op::MessageType::Response,
                hickory_proto::op::OpCode::Query,
            );
            reply.metadata.response_code = c.rcode;
            reply.metadata.recursion_available = c.ra;
            reply.metadata.authentic_data = c.ad;
            reply.metadata.truncation = c.tc;
            reply.metadata.checking_disabled = c.cd;
            reply.add_answers(c.answer.iter().map(|t| rr(t)));
            reply.add_authorities(c.ns.iter().map(|t| rr(t)));
            let up = Arc::new(Canned {
                reply,
                seen: AtomicUsize::new(0),
            });
            let chain = Chain::new(vec![Arc::new(Cache::new(cfg, metrics)), up.clone()]);
            // The request has AD set as in the table's `toMsg(m, …, m.AuthenticatedData)`.
            let req = request(c.qname, c.qtype, c.dnssec_ok, c.cd, c.ad);
            chain.run(&req).await.unwrap();
            tokio::time::advance(Duration::from_millis(300)).await;
            let hit = chain.run(&req).await.unwrap();
            let cached = up.seen.load(Ordering::SeqCst) == 1;
            assert_eq!(cached, c.cached, "{}", c.name);
            if !cached {
                continue;
            }
            assert_eq!(hit.plugin, NAME, "{}", c.name);
            let m = hit.msg.into_message();
            let md = &m.metadata;
            assert!(
                md.authoritative,
                "{}: cache entries are authoritative",
                c.name
            );
            assert_eq!(md.authentic_data, c.ad, "{}: AD", c.name);
            assert_eq!(md.recursion_available, c.ra, "{}: RA", c.name);
            assert_eq!(md.checking_disabled, c.cd, "{}: CD", c.name);
            assert_eq!(md.response_code, c.rcode, "{}", c.name);
            assert_eq!(
                m.queries[0].name().to_ascii(),
                c.qname,
                "{}: question as asked",
                c.name
            );
            let ttls: Vec<u32> = m
                .answers
                .iter()
                .chain(&m.authorities)
                .map(|r| r.ttl)
                .collect();
            assert_eq!(ttls, c.out_ttls, "{}: TTLs", c.name);
            let want: Vec<Record> = c.answer.iter().chain(c.ns).map(|t| rr(t)).collect();
            let got: Vec<(Name, RData)> = m
                .answers
                .iter()
                .chain(&m.authorities)
                .map(|r| (r.name.clone(), r.data.clone()))
                .collect();
            let want: Vec<(Name, RData)> = want.into_iter().map(|r| (r.name, r.data)).collect();
            assert_eq!(got, want, "{}: records", c.name);
        }
    }

    /// CoreDNS's TTL rules: an entry answers with its TTL less the whole seconds it has been
    /// stored (so a fresh one with its whole TTL) and is a miss once that reaches 0.
    #[tokio::test(start_paused = true)]
    async fn ttl_is_the_whole_ttl_less_whole_seconds_stored() {
        let (chain, up, _) = setup("cache");
        assert_eq!(ask(&chain).await.answers[0].ttl, 60);
        let mut at = 0;
        for (after_ms, want) in [(500, 60), (999, 60), (1_000, 59), (10_900, 50), (59_999, 1)] {
            tokio::time::advance(Duration::from_millis(after_ms - at)).await;
            at = after_ms;
            assert_eq!(
                ask(&chain).await.answers[0].ttl,
                want,
                "after {after_ms} ms"
            );
        }
        assert_eq!(up.seen.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(1)).await;
        ask(&chain).await;
        assert_eq!(up.seen.load(Ordering::SeqCst), 2, "expired at 60 s");
    }

    /// The cache duration is the smallest TTL clamped to the bucket's minimum and maximum
    /// (CoreDNS's TestCacheHonorsConfiguredPositiveMaxTTLAboveDefault and minttl).
    #[tokio::test(start_paused = true)]
    async fn ttl_is_clamped_to_the_bucket() {
        for (corefile, want) in [
            ("cache 30", 30),
            ("cache {\n success 100 3600 120\n}", 120),
            ("cache 7200", 60),
        ] {
            let (chain, _, _) = setup(corefile);
            assert_eq!(ask(&chain).await.answers[0].ttl, want, "{corefile}");
            assert_eq!(ask(&chain).await.answers[0].ttl, want, "{corefile}: hit");
        }
    }

    /// Entries are per DO and CD bit, as CoreDNS's key; letter case does not matter, and a hit
    /// answers with the question as asked and the records as stored.
    #[tokio::test(start_paused = true)]
    async fn keys_are_do_and_cd_aware_and_case_blind() {
        let (chain, up, _) = setup("cache");
        let seen = || up.seen.load(Ordering::SeqCst);
        let plain = request("www.Example.org.", RecordType::A, false, false, false);
        chain.run(&plain).await.unwrap();
        for (req, want) in [
            (
                request("www.example.org.", RecordType::A, true, false, false),
                2,
            ),
            (
                request("www.example.org.", RecordType::A, false, true, false),
                3,
            ),
            (
                request("www.example.org.", RecordType::A, true, true, false),
                4,
            ),
            (
                request("WWW.EXAMPLE.ORG.", RecordType::A, false, false, false),
                4,
            ),
            (
                request("www.example.org.", RecordType::A, true, false, false),
                4,
            ),
            (
                request("www.example.org.", RecordType::AAAA, false, false, false),
                5,
            ),
        ] {
            let r = chain.run(&req).await.unwrap();
            assert_eq!(seen(), want, "{:?}", req.query());
            let m = r.msg.into_message();
            assert_eq!(m.queries[0].name(), req.qname(), "question as asked");
            assert!(m.queries[0].name().eq_case(req.qname()));
            assert_eq!(m.metadata.checking_disabled, req.checking_disabled);
        }
        // Asked in another case: the record keeps the case it was stored with.
        let r = chain
            .run(&request(
                "WWW.EXAMPLE.ORG.",
                RecordType::A,
                false,
                false,
                false,
            ))
            .await
            .unwrap()
            .msg
            .into_message();
        assert!(
            r.answers[0]
                .name
                .eq_case(&Name::from_ascii("www.Example.org.").unwrap())
        );
        // Asked in the stored case: the stored bytes, unchanged but for id, flags and TTLs.
        let r = chain.run(&plain).await.unwrap();
        assert!(
            r.msg.wire().is_some(),
            "a hit in the stored case is not re-encoded"
        );
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
