//! Metrics of the API side: CoreDNS's `coredns_kubernetes_*` and our own `clusterdns_kubernetes_*`.

use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// Registered once per process (in [`crate::plugins::prometheus::Metrics`]).
pub struct KubeMetrics {
    /// `coredns_kubernetes_dns_programming_duration_seconds{service_kind}`
    pub programming: HistogramVec,
    /// `coredns_kubernetes_rest_client_requests_total{code,method,host}`
    pub requests: IntCounterVec,
    /// `coredns_kubernetes_rest_client_request_duration_seconds{verb,host}`
    pub request_duration: HistogramVec,
    /// `clusterdns_kubernetes_objects{kind}`: objects held, by kind.
    pub objects: IntGaugeVec,
    /// `clusterdns_kubernetes_sync_seconds`: start to first complete sync.
    pub sync_seconds: Gauge,
    /// `coredns_panics_total` (registered by the server's metrics): panics in the watch task.
    pub panics: IntCounter,
}

impl KubeMetrics {
    /// Creates and registers the metrics; `panics` is the process's `coredns_panics_total`.
    pub fn new(registry: &Registry, panics: IntCounter) -> Result<Self, prometheus::Error> {
        let programming = HistogramVec::new(
            HistogramOpts::new(
                "coredns_kubernetes_dns_programming_duration_seconds",
                "Histogram of the time (in seconds) it took to program a dns instance.",
            )
            .buckets((0..20).map(|i| 0.001 * f64::from(1u32 << i)).collect()),
            &["service_kind"],
        )?;
        let requests = IntCounterVec::new(
            Opts::new(
                "coredns_kubernetes_rest_client_requests_total",
                "Number of HTTP requests, partitioned by status code, method, and host.",
            ),
            &["code", "method", "host"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "coredns_kubernetes_rest_client_request_duration_seconds",
                "Request latency in seconds. Broken down by verb and host.",
            ),
            &["verb", "host"],
        )?;
        let objects = IntGaugeVec::new(
            Opts::new(
                "clusterdns_kubernetes_objects",
                "Kubernetes objects held in the DNS index, by kind.",
            ),
            &["kind"],
        )?;
        let sync_seconds = Gauge::new(
            "clusterdns_kubernetes_sync_seconds",
            "Seconds from start to the first complete sync of every watched kind.",
        )?;
        registry.register(Box::new(programming.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(objects.clone()))?;
        registry.register(Box::new(sync_seconds.clone()))?;
        Ok(Self {
            programming,
            requests,
            request_duration,
            objects,
            sync_seconds,
            panics,
        })
    }
}
