//! `forward`'s metrics: CoreDNS's current names and the pre-1.11 names dashboards still use.

use crate::plugins::prometheus::time_buckets;
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

/// Registered once per process.
pub struct ForwardMetrics {
    /// `coredns_forward_requests_total{to}`
    pub requests: IntCounterVec,
    /// `coredns_forward_responses_total{to,rcode}`
    pub responses: IntCounterVec,
    /// `coredns_forward_request_duration_seconds{to,rcode}`
    pub duration: HistogramVec,
    /// `coredns_proxy_request_duration_seconds{proxy_name,to,rcode}`
    pub proxy_duration: HistogramVec,
    /// `coredns_forward_healthcheck_failures_total{to}`
    pub hc_failures: IntCounterVec,
    /// `coredns_proxy_healthcheck_failures_total{proxy_name,to}`
    pub proxy_hc_failures: IntCounterVec,
    /// `coredns_forward_healthcheck_broken_total`
    pub hc_broken: IntCounter,
    /// `coredns_forward_max_concurrent_rejects_total`
    pub max_concurrent_rejects: IntCounter,
}

impl ForwardMetrics {
    /// Creates and registers the metrics.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let cv = |n: &str, h: &str, l: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(Opts::new(n, h), l)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let hv = |n: &str, h: &str, l: &[&str]| -> Result<HistogramVec, prometheus::Error> {
            let c = HistogramVec::new(HistogramOpts::new(n, h).buckets(time_buckets()), l)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let c = |n: &str, h: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(n, h)?;
            r.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(Self {
            requests: cv(
                "coredns_forward_requests_total",
                "Counter of requests made per upstream.",
                &["to"],
            )?,
            responses: cv(
                "coredns_forward_responses_total",
                "Counter of responses received per upstream.",
                &["to", "rcode"],
            )?,
            duration: hv(
                "coredns_forward_request_duration_seconds",
                "Histogram of the time each request took.",
                &["to", "rcode"],
            )?,
            proxy_duration: hv(
                "coredns_proxy_request_duration_seconds",
                "Histogram of the time each request took.",
                &["proxy_name", "to", "rcode"],
            )?,
            hc_failures: cv(
                "coredns_forward_healthcheck_failures_total",
                "Counter of the number of failed healthchecks.",
                &["to"],
            )?,
            proxy_hc_failures: cv(
                "coredns_proxy_healthcheck_failures_total",
                "Count of failed health checks per upstream.",
                &["proxy_name", "to"],
            )?,
            hc_broken: c(
                "coredns_forward_healthcheck_broken_total",
                "Counter of the number of complete failures of the healthchecks.",
            )?,
            max_concurrent_rejects: c(
                "coredns_forward_max_concurrent_rejects_total",
                "Counter of the number of queries rejected because the concurrent queries were at maximum.",
            )?,
        })
    }
}
