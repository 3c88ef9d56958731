//! `etcd`: SkyDNS records from etcd (CoreDNS's plugin/etcd and plugin/backend_lookup.go).
//!
//! CoreDNS reads etcd on every query (one or two range requests, plus a lease request per
//! record with a lease). Here a background task lists the key prefix once and then follows it
//! with a watch, keeping an immutable in-memory view that queries read without a lock or a
//! network round trip; the view is replaced atomically after each watch message. When etcd is
//! unreachable the last view keeps answering while the task reconnects and lists again.

mod client;
pub mod msg;
mod setup;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;

pub use client::Endpoint;
pub use setup::{EtcdConfig, parse};

use client::{Client, b64, int, prefix_end, unb64};
use msg::{HostType, Service};

use crate::plugins::{BuildCtx, Handler, HandlerError, Next, Request, Response, is_subdomain};

/// Directive name.
pub const NAME: &str = "etcd";

/// Default TTL of a record without one (CoreDNS's `defaultTTL`).
const DEFAULT_TTL: u32 = 300;
/// Default SRV priority / MX preference.
const DEFAULT_PRIORITY: i64 = 10;
/// The SOA's minimum and the TTL of negative answers (CoreDNS's `MinTTL`).
const MIN_TTL: u32 = 30;
/// Longest CNAME chain followed (CoreDNS's `maxCnameChainLength`).
const MAX_CNAME_CHAIN: usize = 10;
/// How often the TTLs of the leases in the view are read again.
const LEASE_REFRESH: Duration = Duration::from_secs(10);

/// One key of the view.
#[derive(Debug, Clone)]
struct Kv {
    service: Service,
    lease: i64,
}

/// What the plugin knows of etcd: every key under the prefix, the leases' expiry times, and
/// the revision they were read at.
#[derive(Debug, Clone, Default)]
pub struct View {
    kvs: BTreeMap<String, Kv>,
    leases: HashMap<i64, Instant>,
    revision: i64,
    synced: bool,
}

impl View {
    /// Whether the view holds etcd's data (the first list completed).
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The etcd revision the view is at.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.kvs.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.kvs.is_empty()
    }

    /// Adds or replaces a key (a value that is not a SkyDNS message is dropped with a warning,
    /// where CoreDNS fails every query that reads it).
    fn put(&mut self, key: String, value: &[u8], lease: i64) {
        match serde_json::from_slice::<Service>(value) {
            Ok(mut service) => {
                service.key = key.clone();
                self.kvs.insert(key, Kv { service, lease });
            }
            Err(e) => {
                tracing::warn!(target: "plugin/etcd", "{key}: {e}");
                self.kvs.remove(&key);
            }
        }
    }
}

/// The plugin.
pub struct Etcd {
    cfg: EtcdConfig,
    view: Arc<ArcSwap<View>>,
}

/// A name with no key at all (NXDOMAIN), as opposed to one without the asked records.
#[derive(Debug)]
enum Miss {
    NotFound,
    Failed(String),
}

type Lookup<T> = Result<T, Miss>;

/// The etcd side: list, watch, lease TTLs. Runs until `stop`.
async fn sync_loop(
    client: Arc<Client>,
    prefix: String,
    view: Arc<ArcSwap<View>>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let run = async {
            let mut v = list(&client, &prefix).await?;
            refresh_leases(&client, &mut v).await;
            tracing::info!(target: "plugin/etcd", "synced {} keys under {prefix} at revision {}", v.len(), v.revision);
            view.store(Arc::new(v));
            follow(&client, &prefix, &view).await
        };
        let r = tokio::select! {
            _ = stop.cancelled() => return,
            r = run => r,
        };
        match r {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                tracing::warn!(target: "plugin/etcd", "{e}; keeping the last records, retrying in {backoff:?}");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Reads every key under `prefix` at one revision, in pages.
async fn list(client: &Client, prefix: &str) -> Result<View, client::Error> {
    let end = b64(&prefix_end(prefix.as_bytes()));
    let mut v = View::default();
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    loop {
        let mut req = json!({"key": b64(&from), "range_end": end, "limit": 1000});
        if revision != 0 {
            req["revision"] = json!(revision.to_string());
        }
        let resp = client.call("/v3/kv/range", req).await?;
        if revision == 0 {
            revision = int(&resp["header"]["revision"]);
        }
        let kvs = resp["kvs"].as_array().cloned().unwrap_or_default();
        for kv in &kvs {
            let key = String::from_utf8_lossy(&unb64(&kv["key"])).into_owned();
            v.put(key, &unb64(&kv["value"]), int(&kv["lease"]));
        }
        let more = resp["more"].as_bool().unwrap_or(false);
        match kvs.last() {
            Some(last) if more => {
                from = unb64(&last["key"]);
                from.push(0);
            }
            _ => break,
        }
    }
    v.revision = revision;
    v.synced = true;
    Ok(v)
}

/// Reads the remaining TTL of every lease in the view.
async fn refresh_leases(client: &Client, v: &mut View) {
    let mut ids: Vec<i64> = v
        .kvs
        .values()
        .map(|k| k.lease)
        .filter(|&l| l != 0)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut leases = HashMap::new();
    for id in ids {
        let now = Instant::now();
        if let Ok(r) = client
            .call("/v3/lease/timetolive", json!({"ID": id.to_string()}))
            .await
        {
            let ttl = int(&r["TTL"]);
            if ttl > 0 {
                leases.insert(id, now + Duration::from_secs(ttl as u64));
            }
        }
    }
    v.leases = leases;
}

/// Applies the watch from the view's revision on; returns when the watch ends (an error, or a
/// compaction that calls for a new list).
async fn follow(client: &Client, prefix: &str, view: &ArcSwap<View>) -> Result<(), client::Error> {
    let start = view.load().revision + 1;
    let mut stream = client
        .watch(json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix.as_bytes())),
            "start_revision": start.to_string(),
        }}))
        .await?;
    let mut leases = tokio::time::interval(LEASE_REFRESH);
    leases.tick().await;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m?,
            _ = leases.tick() => {
                let mut v = View::clone(&view.load());
                refresh_leases(client, &mut v).await;
                view.store(Arc::new(v));
                continue;
            }
        };
        let Some(msg) = msg else {
            return Err(client::Error::Connect("watch closed".into()));
        };
        if let Some(e) = msg.get("error") {
            return Err(client::Error::Protocol(format!("watch: {e}")));
        }
        let result = &msg["result"];
        if int(&result["compact_revision"]) > 0 || result["canceled"].as_bool() == Some(true) {
            return Err(client::Error::Protocol(format!(
                "watch canceled (compacted at {}), listing again",
                int(&result["compact_revision"])
            )));
        }
        let events = result["events"].as_array().cloned().unwrap_or_default();
        let revision = int(&result["header"]["revision"]);
        if events.is_empty() {
            continue;
        }
        let mut v = View::clone(&view.load());
        let mut new_lease = false;
        for ev in &events {
            let kv = &ev["kv"];
            let key = String::from_utf8_lossy(&unb64(&kv["key"])).into_owned();
            if ev["type"].as_str() == Some("DELETE") {
                v.kvs.remove(&key);
            } else {
                let lease = int(&kv["lease"]);
                new_lease |= lease != 0 && !v.leases.contains_key(&lease);
                v.put(key, &unb64(&kv["value"]), lease);
            }
        }
        v.revision = v.revision.max(revision);
        if new_lease {
            refresh_leases(client, &mut v).await;
        }
        view.store(Arc::new(v));
    }
}

/// Builds the handler; a starter runs the etcd sync in the background. `/ready` waits for its
/// first list; queries before it get SERVFAIL, as they would from CoreDNS without etcd.
pub fn build(
    cfg: &EtcdConfig,
    ctx: &mut BuildCtx<'_>,
) -> Result<Arc<dyn Handler>, crate::corefile::Error> {
    let err = |msg: String| {
        crate::corefile::Error::plugin(
            NAME,
            ctx.loc.clone(),
            crate::corefile::Error::plain(None, msg),
        )
    };
    let tls = match &cfg.tls {
        None => None,
        Some((cert, key, ca)) => Some(
            crate::tlsconf::client_config(ca.as_deref(), cert.as_deref(), key.as_deref())
                .map_err(err)?,
        ),
    };
    let client = Arc::new(Client::new(
        cfg.endpoints.clone(),
        tls,
        cfg.credentials.clone(),
    ));
    let view = Arc::new(ArcSwap::from_pointee(View::default()));
    let prefix = format!("/{}/", cfg.path);
    let (v, c) = (view.clone(), client);
    ctx.services.starters.0.push(Box::new(move |start| {
        Box::pin(async move {
            let probe = v.clone();
            start
                .readiness
                .register(NAME, Arc::new(move || probe.load().synced));
            tokio::spawn(sync_loop(c, prefix, v, start.stop.clone()));
            Ok(())
        })
    }));
    Ok(Arc::new(Etcd {
        cfg: cfg.clone(),
        view,
    }))
}

/// `name` (text) as a hickory name.
fn name_of(s: &str) -> Result<Name, Miss> {
    Name::from_ascii(s).map_err(|e| Miss::Failed(format!("bad name {s}: {e}")))
}

fn join(a: &str, zone: &str) -> String {
    if zone == "." {
        format!("{a}.")
    } else {
        format!("{a}.{zone}")
    }
}

impl Etcd {
    /// The view, for tests and transfers.
    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// The TTL of a record: the smaller of its own and its lease's remaining time (that one
    /// bounded by `min-lease-ttl` and `max-lease-ttl`), 300 when neither is set.
    fn ttl(&self, v: &View, kv: &Kv) -> u32 {
        let lease_ttl = (kv.lease != 0)
            .then(|| v.leases.get(&kv.lease))
            .flatten()
            .map(|exp| exp.saturating_duration_since(Instant::now()).as_secs() as u32)
            .filter(|&t| t > 0)
            .map(|t| {
                t.clamp(
                    self.cfg.min_lease_ttl,
                    self.cfg.max_lease_ttl.max(self.cfg.min_lease_ttl),
                )
            })
            .unwrap_or(0);
        match (lease_ttl, kv.service.ttl) {
            (0, 0) => DEFAULT_TTL,
            (0, t) | (t, 0) => t,
            (a, b) => a.min(b),
        }
    }

    /// CoreDNS's `Records`: the services at `name` (lower-case FQDN) and below it (or, with
    /// `exact`, at it only); `*` and `any` labels match any label.
    fn records(
        &self,
        v: &View,
        name: &str,
        exact: bool,
        qtype: RecordType,
    ) -> Lookup<Vec<Service>> {
        let (path, star) = msg::path_with_wildcard(name, &self.cfg.path);
        let mut hits: Vec<&Kv> = Vec::new();
        if !exact {
            let below = format!("{path}/");
            hits.extend(
                v.kvs
                    .range(below.clone()..)
                    .take_while(|(k, _)| k.starts_with(&below))
                    .map(|(_, kv)| kv),
            );
        }
        if hits.is_empty() {
            hits.extend(v.kvs.get(&path));
        }
        if hits.is_empty() {
            return Err(Miss::NotFound);
        }
        let full = msg::path(name, &self.cfg.path);
        let segments: Vec<&str> = full.split('/').collect();
        let mut out = Vec::new();
        'nodes: for kv in hits {
            if star {
                let parts: Vec<&str> = kv.service.key.split('/').collect();
                for (i, n) in segments.iter().enumerate() {
                    let Some(p) = parts.get(i) else {
                        continue 'nodes;
                    };
                    if *n != "*" && *n != "any" && p != n {
                        continue 'nodes;
                    }
                }
            }
            let mut s = kv.service.clone();
            s.ttl = self.ttl(v, kv);
            if s.priority == 0 {
                s.priority = DEFAULT_PRIORITY;
            }
            if (qtype == RecordType::TXT && !s.text.is_empty()) || !s.host.is_empty() {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// CoreDNS's `Services`: [`Etcd::records`] with groups applied.
    fn services(
        &self,
        v: &View,
        name: &str,
        exact: bool,
        qtype: RecordType,
    ) -> Lookup<Vec<Service>> {
        self.records(v, name, exact, qtype).map(msg::group)
    }

    /// Address records at the zone's own name live under `apex.dns.ZONE`; older layouts put
    /// them at the zone's root.
    fn services_or_apex(
        &self,
        v: &View,
        zone: &str,
        name: &str,
        qtype: RecordType,
    ) -> Lookup<Vec<Service>> {
        if name != zone {
            return self.services(v, name, false, qtype);
        }
        match self.services(v, &join("apex.dns", zone), false, qtype) {
            Err(Miss::NotFound) => self.services(v, name, false, qtype),
            r => r,
        }
    }

    /// A, AAAA or TXT records for `name`, following CNAMEs inside the zone and asking the
    /// server for targets outside it (CoreDNS's `A`, `AAAA` and `TXT`).
    fn answers<'a>(
        &'a self,
        (req, v, zone): (&'a Request, &'a View, &'a str),
        owner: Name,
        name: String,
        qtype: RecordType,
        previous: Vec<Record>,
    ) -> BoxFuture<'a, Lookup<Vec<Record>>> {
        async move {
            let services = if qtype == RecordType::TXT {
                self.services(v, &name, false, qtype)?
            } else {
                self.services_or_apex(v, zone, &name, qtype)?
            };
            let mut out: Vec<Record> = Vec::new();
            let mut seen: Vec<String> = Vec::new();
            for s in services {
                match (s.host_type(), qtype) {
                    (HostType::Cname, _) => {
                        let target = msg::fqdn(&s.host.to_ascii_lowercase());
                        if target == name || previous.len() > MAX_CNAME_CHAIN {
                            continue;
                        }
                        let Ok(target_name) = Name::from_ascii(&target) else {
                            continue;
                        };
                        let cname = Record::from_rdata(
                            owner.clone(),
                            s.ttl,
                            RData::CNAME(CNAME(target_name.clone())),
                        );
                        if previous
                            .iter()
                            .any(|p| p.data == cname.data && p.name == cname.name)
                        {
                            continue;
                        }
                        if is_subdomain(zone, &target) {
                            let mut chain = previous.clone();
                            chain.push(cname.clone());
                            if let Ok(next) = self
                                .answers((req, v, zone), target_name, target, qtype, chain)
                                .await
                            {
                                if !next.is_empty() {
                                    out.push(cname);
                                    out.extend(next);
                                }
                            }
                            continue;
                        }
                        if let Ok(m) = req.lookup(target_name, qtype).await {
                            out.push(cname);
                            out.extend(m.answers);
                        }
                    }
                    (HostType::A(ip), RecordType::A) if !seen.contains(&s.host) => {
                        seen.push(s.host.clone());
                        out.push(Record::from_rdata(
                            owner.clone(),
                            s.ttl,
                            RData::A(ip.into()),
                        ));
                    }
                    (HostType::Aaaa(ip), RecordType::AAAA) if !seen.contains(&s.host) => {
                        seen.push(s.host.clone());
                        out.push(Record::from_rdata(
                            owner.clone(),
                            s.ttl,
                            RData::AAAA(ip.into()),
                        ));
                    }
                    (HostType::Txt, RecordType::TXT) if !seen.contains(&s.text) => {
                        seen.push(s.text.clone());
                        out.push(Record::from_rdata(
                            owner.clone(),
                            s.ttl,
                            RData::TXT(TXT::from_bytes(
                                msg::split255(&s.text).iter().map(Vec::as_slice).collect(),
                            )),
                        ));
                    }
                    _ => {}
                }
            }
            Ok(out)
        }
        .boxed()
    }

    /// Addresses for an SRV/MX target: asked of the server outside the zone, looked up here
    /// inside it (A only, as CoreDNS).
    async fn target_addresses(
        &self,
        req: &Request,
        v: &View,
        zone: &str,
        target: &str,
    ) -> Vec<Record> {
        let mut extra = Vec::new();
        let Ok(t) = Name::from_ascii(target) else {
            return extra;
        };
        if !is_subdomain(zone, &target.to_ascii_lowercase()) {
            if let Ok(m) = req.lookup(t.clone(), RecordType::A).await {
                extra.extend(m.answers);
            }
            if let Ok(m) = req.lookup(t, RecordType::AAAA).await {
                extra.extend(
                    m.answers
                        .into_iter()
                        .filter(|r| r.record_type() != RecordType::CNAME),
                );
            }
            return extra;
        }
        if let Ok(a) = self
            .answers(
                (req, v, zone),
                t,
                target.to_ascii_lowercase(),
                RecordType::A,
                Vec::new(),
            )
            .await
        {
            extra.extend(a);
        }
        extra
    }

    /// SRV (or, with `mx`, MX) records and the addresses of their targets.
    async fn srv_or_mx(
        &self,
        req: &Request,
        v: &View,
        zone: &str,
        name: &str,
        mx: bool,
    ) -> Lookup<(Vec<Record>, Vec<Record>)> {
        let qtype = if mx { RecordType::MX } else { RecordType::SRV };
        let services = self.services(v, name, false, qtype)?;
        let owner = req.qname().clone();
        // Weights are shares of 100 among the records of one priority.
        let mut totals: HashMap<i64, i64> = HashMap::new();
        for s in &services {
            *totals.entry(s.priority).or_default() += if s.weight == 0 { 100 } else { s.weight };
        }
        let (mut records, mut extra) = (Vec::new(), Vec::new());
        let mut dup: Vec<(String, String, u16)> = Vec::new();
        let mut looked: Vec<String> = Vec::new();
        for s in services {
            if mx && !s.mail {
                continue;
            }
            if !mx && s.port == -1 {
                continue;
            }
            let share = 100.0 / totals[&s.priority] as f64;
            let weight = (share
                * if s.weight == 0 {
                    100.0
                } else {
                    s.weight as f64
                })
            .floor() as u16;
            let weight = weight.max(1);
            let make = |target: &str| -> Option<Record> {
                let t = Name::from_ascii(target).ok()?;
                let data = if mx {
                    RData::MX(MX::new(s.priority as u16, t))
                } else {
                    RData::SRV(SRV::new(s.priority as u16, weight, s.port as u16, t))
                };
                Some(Record::from_rdata(owner.clone(), s.ttl, data))
            };
            match s.host_type() {
                HostType::Cname | HostType::Txt => {
                    let target = s.target();
                    records.extend(make(&target));
                    if looked.contains(&target) {
                        continue;
                    }
                    looked.push(target.clone());
                    extra.extend(self.target_addresses(req, v, zone, &target).await);
                }
                host @ (HostType::A(_) | HostType::Aaaa(_)) => {
                    let named = Service {
                        host: msg::domain(&s.key),
                        ..s.clone()
                    };
                    let target = named.target();
                    let key = if mx { s.priority as u16 } else { s.port as u16 };
                    if !dup.contains(&(target.clone(), String::new(), key)) {
                        dup.push((target.clone(), String::new(), key));
                        records.extend(make(&target));
                    }
                    if !dup.contains(&(target.clone(), s.host.clone(), 0)) {
                        dup.push((target.clone(), s.host.clone(), 0));
                        if let Ok(t) = Name::from_ascii(&target) {
                            extra.push(address(t, s.ttl, host));
                        }
                    }
                }
            }
        }
        Ok((records, extra))
    }

    /// The zone's NS records, from the addresses under `ns.dns.ZONE`.
    fn ns(&self, req: &Request, v: &View, zone: &str) -> Lookup<(Vec<Record>, Vec<Record>)> {
        let services = self.services(v, &join("ns.dns", zone), false, RecordType::NS)?;
        let (mut records, mut extra, mut seen) = (Vec::new(), Vec::new(), Vec::new());
        for s in services {
            let host = s.host_type();
            if matches!(host, HostType::Cname | HostType::Txt) {
                return Err(Miss::Failed(format!(
                    "NS record must be an IP address: {}",
                    s.host
                )));
            }
            let ns = Service {
                host: msg::domain(&s.key),
                ..s.clone()
            }
            .target();
            let ns_name = name_of(&ns)?;
            extra.push(address(ns_name.clone(), s.ttl, host));
            if seen.contains(&ns) {
                continue;
            }
            seen.push(ns);
            records.push(Record::from_rdata(
                req.qname().clone(),
                s.ttl,
                RData::NS(NS(ns_name)),
            ));
        }
        Ok((records, extra))
    }

    /// The synthesized SOA of `zone`; its serial is the etcd revision of the view, so it
    /// changes exactly when the data does.
    fn soa(&self, v: &View, zone: &str) -> Record {
        let zone_name = Name::from_ascii(zone).unwrap_or_else(|_| Name::root());
        let soa = SOA::new(
            Name::from_ascii(join("ns.dns", zone)).unwrap_or_else(|_| Name::root()),
            Name::from_ascii(join("hostmaster", zone)).unwrap_or_else(|_| Name::root()),
            v.revision as u32,
            7200,
            1800,
            86400,
            MIN_TTL,
        );
        Record::from_rdata(zone_name, MIN_TTL.min(300), RData::SOA(soa))
    }
}

fn address(name: Name, ttl: u32, host: HostType) -> Record {
    let data = match host {
        HostType::A(ip) => RData::A(ip.into()),
        HostType::Aaaa(ip) => RData::AAAA(ip.into()),
        _ => unreachable!("addresses only"),
    };
    Record::from_rdata(name, ttl, data)
}

#[async_trait::async_trait]
impl Handler for Etcd {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        let Some(zone) = self
            .cfg
            .zones
            .iter()
            .filter(|z| is_subdomain(z, name))
            .max_by_key(|z| z.len())
        else {
            return next.run(req).await;
        };
        let v = self.view.load_full();
        if !v.synced {
            return Err(HandlerError::Internal(
                "plugin/etcd: no data from etcd yet".into(),
            ));
        }
        let qtype = req.qtype();
        let owner = req.qname().clone();
        let answer: Lookup<(Vec<Record>, Vec<Record>)> = match qtype {
            RecordType::A | RecordType::AAAA | RecordType::TXT => self
                .answers((req, &v, zone), owner, name.to_string(), qtype, Vec::new())
                .await
                .map(|r| (r, Vec::new())),
            RecordType::CNAME => self.services(&v, name, true, qtype).map(|sx| {
                let r = sx
                    .first()
                    .filter(|s| s.host.parse::<IpAddr>().is_err())
                    .and_then(|s| {
                        Name::from_ascii(msg::fqdn(&s.host))
                            .ok()
                            .map(|t| (s.ttl, t))
                    })
                    .map(|(ttl, t)| Record::from_rdata(owner.clone(), ttl, RData::CNAME(CNAME(t))));
                (r.into_iter().collect(), Vec::new())
            }),
            RecordType::PTR => self.services(&v, name, true, qtype).map(|sx| {
                let mut seen = Vec::new();
                let mut out = Vec::new();
                for s in sx {
                    if s.host.parse::<IpAddr>().is_ok() || seen.contains(&s.host) {
                        continue;
                    }
                    seen.push(s.host.clone());
                    if let Ok(t) = Name::from_ascii(msg::fqdn(&s.host)) {
                        out.push(Record::from_rdata(owner.clone(), s.ttl, RData::PTR(PTR(t))));
                    }
                }
                (out, Vec::new())
            }),
            RecordType::MX => self.srv_or_mx(req, &v, zone, name, true).await,
            RecordType::SRV => self.srv_or_mx(req, &v, zone, name, false).await,
            RecordType::SOA => Ok((vec![self.soa(&v, zone)], Vec::new())),
            RecordType::NS if name == zone.as_str() => self.ns(req, &v, zone),
            // Anything else: an A lookup tells NODATA from NXDOMAIN.
            _ => self
                .answers(
                    (req, &v, zone),
                    owner,
                    name.to_string(),
                    RecordType::A,
                    Vec::new(),
                )
                .await
                .map(|_| (Vec::new(), Vec::new())),
        };
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        match answer {
            Err(Miss::NotFound) => {
                if self.cfg.fall.through(name) {
                    return next.run(req).await;
                }
                msg.metadata.response_code = ResponseCode::NXDomain;
                msg.add_authority(self.soa(&v, zone));
            }
            Err(Miss::Failed(e)) => {
                tracing::error!(target: "plugin/etcd", "{e}");
                msg.metadata.response_code = ResponseCode::ServFail;
                msg.add_authority(self.soa(&v, zone));
            }
            Ok((records, _)) if records.is_empty() => {
                msg.add_authority(self.soa(&v, zone));
            }
            Ok((records, extra)) => {
                msg.answers = records;
                msg.additionals = extra;
            }
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_dropped_and_leases_bound_ttls() {
        let mut v = View::default();
        v.put(
            "/skydns/test/a".into(),
            br#"{"host":"192.0.2.1","ttl":60}"#,
            0,
        );
        v.put("/skydns/test/b".into(), b"not json", 0);
        v.put("/skydns/test/c".into(), br#"{"host":"192.0.2.3"}"#, 7);
        v.put(
            "/skydns/test/d".into(),
            br#"{"host":"192.0.2.4","ttl":20}"#,
            7,
        );
        assert_eq!(v.len(), 3);
        v.leases
            .insert(7, Instant::now() + Duration::from_secs(100));
        let cfg = EtcdConfig {
            zones: vec!["test.".into()],
            fall: crate::plugins::Fall::none(),
            path: "skydns".into(),
            endpoints: Vec::new(),
            credentials: None,
            tls: None,
            min_lease_ttl: 30,
            max_lease_ttl: 90,
        };
        let e = Etcd {
            cfg,
            view: Arc::new(ArcSwap::from_pointee(View::default())),
        };
        assert_eq!(e.ttl(&v, &v.kvs["/skydns/test/a"]), 60);
        assert_eq!(
            e.ttl(&v, &v.kvs["/skydns/test/c"]),
            90,
            "lease TTL capped at max-lease-ttl"
        );
        assert_eq!(
            e.ttl(&v, &v.kvs["/skydns/test/d"]),
            20,
            "the smaller of the two"
        );
    }
}
