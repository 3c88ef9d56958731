//! The `forward` handler: pick upstreams by policy, skip the ones marked down, exchange, fail
//! over on transport errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_proto::rr::Name;
use rand::seq::SliceRandom;

use super::NAME;
use super::metrics::ForwardMetrics;
use super::proxy::{HealthCheck, Proxy, Transport, upstream_query};
use super::setup::{ForwardConfig, Policy};
use crate::plugins::dnstap::{self, Taps};
use crate::plugins::log::rcode_name;
use crate::plugins::{Handler, HandlerError, Next, Proto, Request, Response, is_subdomain};

/// CoreDNS's overall deadline for one forwarded query.
const DEADLINE: Duration = Duration::from_secs(5);

/// One `forward` line.
pub struct Instance {
    /// Its configuration.
    pub cfg: ForwardConfig,
    /// Its upstreams (replaced when a resolv.conf-style file changes).
    pub proxies: ArcSwap<Vec<Arc<Proxy>>>,
    rr: AtomicUsize,
    inflight: AtomicU32,
    metrics: Arc<ForwardMetrics>,
}

struct Inflight<'a>(&'a AtomicU32);
impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Instance {
    /// An instance over `proxies`.
    pub fn new(cfg: ForwardConfig, proxies: Vec<Arc<Proxy>>, metrics: Arc<ForwardMetrics>) -> Self {
        Self {
            cfg,
            proxies: ArcSwap::from_pointee(proxies),
            rr: AtomicUsize::new(0),
            inflight: AtomicU32::new(0),
            metrics,
        }
    }

    fn matches(&self, qname: &str) -> bool {
        is_subdomain(&self.cfg.from, qname)
            && (qname == self.cfg.from || !self.cfg.except.iter().any(|e| is_subdomain(e, qname)))
    }

    fn order(&self, all: &[Arc<Proxy>]) -> Vec<Arc<Proxy>> {
        let mut list = all.to_vec();
        match self.cfg.policy {
            Policy::Random => list.shuffle(&mut rand::rng()),
            Policy::RoundRobin => {
                if !list.is_empty() {
                    let n = self.rr.fetch_add(1, Ordering::Relaxed) % list.len();
                    list.rotate_left(n);
                }
            }
            Policy::Sequential => {}
        }
        list
    }

    fn health_check(&self) -> HealthCheck {
        HealthCheck {
            interval: self.cfg.health_check,
            max_fails: self.cfg.max_fails,
            recursion: !self.cfg.health_check_no_rec,
            domain: Name::from_ascii(&self.cfg.health_check_domain)
                .unwrap_or_else(|_| Name::root()),
            transport: if self.cfg.force_tcp {
                Transport::Tcp
            } else {
                Transport::Udp
            },
        }
    }

    async fn serve(&self, req: &Request, taps: Option<&Taps>) -> Result<Response, HandlerError> {
        let max = self.cfg.max_concurrent;
        let n = self.inflight.fetch_add(1, Ordering::Relaxed) + 1;
        let _guard = Inflight(&self.inflight);
        if max > 0 && n > max {
            self.metrics.max_concurrent_rejects.inc();
            return Err(HandlerError::Refused(format!(
                "plugin/forward: concurrent queries exceeded maximum {max}"
            )));
        }
        let all = self.proxies.load();
        let mut list = self.order(&all);
        let max_fails = self.cfg.max_fails;
        if !list.is_empty() && list.iter().all(|p| p.down(max_fails)) {
            self.metrics.hc_broken.inc();
            if self.cfg.failfast {
                return Err(HandlerError::Internal(
                    "plugin/forward: no healthy proxies".into(),
                ));
            }
            list.truncate(1);
        } else {
            list.retain(|p| !p.down(max_fails));
        }
        let mut transport = if self.cfg.force_tcp {
            Transport::Tcp
        } else if self.cfg.prefer_udp || req.proto == Proto::Udp {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let msg = upstream_query(
            req.query(),
            req.recursion_desired,
            req.checking_disabled,
            req.edns.as_ref(),
        );
        let start = Instant::now();
        let mut last_err = String::from("no upstreams");
        let mut i = 0;
        let mut failover_attempts = 0;
        while i < list.len() {
            let p = &list[i];
            let left = DEADLINE.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            self.metrics.requests.with_label_values(&[&p.label]).inc();
            let t0 = Instant::now();
            let sent = std::time::SystemTime::now();
            let mut local = None;
            let result = p
                .exchange_from(&msg, transport, self.cfg.read_timeout.min(left), &mut local)
                .await;
            if let Some(taps) = taps {
                let tcp = transport == Transport::Tcp || p.is_tls();
                let reply = result.as_ref().ok();
                dnstap::forwarded(taps, req, &msg, reply, local, p.addr, tcp, sent);
            }
            match result {
                Ok(mut reply) => {
                    if reply.metadata.truncation
                        && transport == Transport::Udp
                        && self.cfg.prefer_udp
                    {
                        transport = Transport::Tcp;
                        continue;
                    }
                    p.ok();
                    let rcode = rcode_name(reply.metadata.response_code);
                    let secs = t0.elapsed().as_secs_f64();
                    self.metrics
                        .responses
                        .with_label_values(&[&p.label, &rcode])
                        .inc();
                    self.metrics
                        .duration
                        .with_label_values(&[&p.label, &rcode])
                        .observe(secs);
                    self.metrics
                        .proxy_duration
                        .with_label_values(&[NAME, &p.label, &rcode])
                        .observe(secs);
                    // `failover RCODE...`: try the next upstream, while there is one.
                    if self.cfg.failover.contains(&reply.metadata.response_code) {
                        failover_attempts += 1;
                        if failover_attempts < list.len() {
                            i += 1;
                            continue;
                        }
                    }
                    reply.metadata.id = req.id;
                    return Ok(Response::new(reply, NAME));
                }
                Err(e) => {
                    last_err = format!("{}: {e}", p.label);
                    let (m, label) = (self.metrics.clone(), p.label.clone());
                    p.failed(self.health_check(), move || {
                        m.hc_failures.with_label_values(&[&label]).inc();
                        m.proxy_hc_failures.with_label_values(&[NAME, &label]).inc();
                    });
                    i += 1;
                }
            }
        }
        Err(HandlerError::Internal(format!(
            "plugin/forward: {last_err}"
        )))
    }
}

/// Every `forward` line of a block, tried in order.
pub struct Forward {
    /// The lines.
    pub instances: Vec<Arc<Instance>>,
    /// The block's `dnstap` sinks (FORWARDER_QUERY/RESPONSE).
    pub taps: Option<Taps>,
}

#[async_trait::async_trait]
impl Handler for Forward {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let lower = req.qname_lower();
        let last = self.instances.len().saturating_sub(1);
        for (i, inst) in self.instances.iter().enumerate() {
            if !inst.matches(lower) {
                continue;
            }
            let resp = inst.serve(req, self.taps.as_ref()).await?;
            let nodata = resp.rcode() == hickory_proto::op::ResponseCode::NoError
                && resp.msg.answers.is_empty();
            if i < last
                && (inst.cfg.next.contains(&resp.rcode()) || (inst.cfg.next_on_nodata && nodata))
            {
                continue;
            }
            return Ok(resp);
        }
        next.run(req).await
    }
}
