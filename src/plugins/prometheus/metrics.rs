//! CoreDNS's DNS metrics, names and labels exactly as in its code (reference §4).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::plugins::log::rcode_name;

/// Every metric of the query path, registered once in the process's registry.
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// `coredns_dns_requests_total{server,zone,view,proto,family,type}`
    pub requests: IntCounterVec,
    /// `coredns_dns_responses_total{server,zone,view,rcode,plugin}`
    pub responses: IntCounterVec,
    /// `coredns_dns_request_duration_seconds{server,zone,view}`
    pub duration: HistogramVec,
    /// `coredns_dns_request_size_bytes{server,zone,view,proto}`
    pub request_size: HistogramVec,
    /// `coredns_dns_response_size_bytes{server,zone,view,proto}`
    pub response_size: HistogramVec,
    /// `coredns_dns_do_requests_total{server,zone,view}`
    pub do_requests: IntCounterVec,
    /// `coredns_dns_https_responses_total{server,status}` (DoH listeners)
    pub https_responses: IntCounterVec,
    /// `coredns_plugin_enabled{server,zone,view,name}`
    pub plugin_enabled: IntGaugeVec,
    /// `coredns_panics_total`
    pub panics: IntCounter,
    /// `clusterdns_dns_connections_open{server}`: TCP connections open now (ours).
    pub connections_open: IntGaugeVec,
    /// `clusterdns_dns_connections_refused_total{server}`: TCP connections closed at once
    /// because the listener's cap was reached (ours).
    pub connections_refused: IntCounterVec,
    /// `coredns_build_info{version,revision,goversion}`
    pub build_info: IntGaugeVec,
    /// `coredns_reload_failed_total`
    pub reload_failed: IntCounter,
    /// `coredns_reload_version_info{hash,value}`
    pub reload_version: IntGaugeVec,
    /// `autopath`'s metric.
    pub autopath: std::sync::Arc<crate::plugins::autopath::AutopathMetrics>,
    /// `hosts`'s metrics.
    pub hosts: std::sync::Arc<crate::plugins::hosts::HostsMetrics>,
    /// `cache`'s metrics.
    pub cache: std::sync::Arc<crate::plugins::cache::CacheMetrics>,
    /// `forward`'s metrics.
    pub forward: std::sync::Arc<crate::plugins::forward::ForwardMetrics>,
    /// The Kubernetes client and index metrics.
    pub kubernetes: std::sync::Arc<crate::kube::KubeMetrics>,
    /// `acl`'s metrics.
    pub acl: std::sync::Arc<crate::plugins::acl::AclMetrics>,
    /// `local`'s metric.
    pub local: std::sync::Arc<crate::plugins::local::LocalMetrics>,
    /// `dns64`'s metric.
    pub dns64: std::sync::Arc<crate::plugins::dns64::Dns64Metrics>,
    /// `template`'s metrics.
    pub template: std::sync::Arc<crate::plugins::template::TemplateMetrics>,
}

/// CoreDNS's `TimeBuckets`: 0.25 ms × 2^i, i = 0..15.
pub fn time_buckets() -> Vec<f64> {
    (0..16).map(|i| 0.000_25 * f64::from(1u32 << i)).collect()
}

const SIZE_BUCKETS: &[f64] = &[
    0.0, 100.0, 200.0, 300.0, 400.0, 511.0, 1023.0, 2047.0, 4095.0, 8291.0, 16000.0, 32000.0,
    48000.0, 64000.0,
];

impl Metrics {
    /// Creates and registers the metrics in `registry`.
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: Vec<f64>|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let requests = counter(
            "coredns_dns_requests_total",
            "Counter of DNS requests made per zone, protocol and family.",
            &["server", "zone", "view", "proto", "family", "type"],
        )?;
        let responses = counter(
            "coredns_dns_responses_total",
            "Counter of response status codes.",
            &["server", "zone", "view", "rcode", "plugin"],
        )?;
        let do_requests = counter(
            "coredns_dns_do_requests_total",
            "Counter of DNS requests with DO bit set per zone.",
            &["server", "zone", "view"],
        )?;
        let https_responses = counter(
            "coredns_dns_https_responses_total",
            "Counter of DoH responses per server and http status code.",
            &["server", "status"],
        )?;
        let duration = histogram(
            "coredns_dns_request_duration_seconds",
            "Histogram of the time (in seconds) each request took per zone.",
            &["server", "zone", "view"],
            time_buckets(),
        )?;
        let request_size = histogram(
            "coredns_dns_request_size_bytes",
            "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
            &["server", "zone", "view", "proto"],
            SIZE_BUCKETS.to_vec(),
        )?;
        let response_size = histogram(
            "coredns_dns_response_size_bytes",
            "Size of the returned response in bytes.",
            &["server", "zone", "view", "proto"],
            SIZE_BUCKETS.to_vec(),
        )?;
        let plugin_enabled = IntGaugeVec::new(
            Opts::new(
                "coredns_plugin_enabled",
                "A metric that indicates whether a plugin is enabled on per server and zone basis.",
            ),
            &["server", "zone", "view", "name"],
        )?;
        registry.register(Box::new(plugin_enabled.clone()))?;
        let panics = IntCounter::new(
            "coredns_panics_total",
            "A metrics that counts the number of panics.",
        )?;
        registry.register(Box::new(panics.clone()))?;
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "clusterdns_dns_connections_open",
                "TCP connections open now, per server.",
            ),
            &["server"],
        )?;
        registry.register(Box::new(connections_open.clone()))?;
        let connections_refused = counter(
            "clusterdns_dns_connections_refused_total",
            "TCP connections closed at once because the server's connection cap was reached.",
            &["server"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "coredns_build_info",
                "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
            ),
            &["version", "revision", "goversion"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("CLUSTERDNS_REVISION").unwrap_or("unknown"),
                &format!("rust-{}", rust_version()),
            ])
            .set(1);
        // The process collector (what Go's client exports as `process_*`): CPU, RSS, virtual
        // memory, open and max fds, start time, threads. Dashboards' memory and CPU panels and
        // most OOM/HPA alerts read these.
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let kubernetes =
            std::sync::Arc::new(crate::kube::KubeMetrics::new(&registry, panics.clone())?);
        let forward = std::sync::Arc::new(crate::plugins::forward::ForwardMetrics::new(&registry)?);
        let cache = std::sync::Arc::new(crate::plugins::cache::CacheMetrics::new(&registry)?);
        let reload_failed = IntCounter::new(
            "coredns_reload_failed_total",
            "Counter of the number of failed reload attempts.",
        )?;
        registry.register(Box::new(reload_failed.clone()))?;
        let reload_version = IntGaugeVec::new(
            Opts::new(
                "coredns_reload_version_info",
                "A metric with a constant '1' value labeled by hash, and value which type of hash generated.",
            ),
            &["hash", "value"],
        )?;
        registry.register(Box::new(reload_version.clone()))?;
        let hosts = std::sync::Arc::new(crate::plugins::hosts::HostsMetrics::new(&registry)?);
        let autopath =
            std::sync::Arc::new(crate::plugins::autopath::AutopathMetrics::new(&registry)?);
        let acl = std::sync::Arc::new(crate::plugins::acl::AclMetrics::new(&registry)?);
        let local = std::sync::Arc::new(crate::plugins::local::LocalMetrics::new(&registry)?);
        let dns64 = std::sync::Arc::new(crate::plugins::dns64::Dns64Metrics::new(&registry)?);
        let template =
            std::sync::Arc::new(crate::plugins::template::TemplateMetrics::new(&registry)?);
        Ok(Self {
            dns64,
            template,
            autopath,
            hosts,
            reload_failed,
            reload_version,
            cache,
            forward,
            kubernetes,
            registry,
            requests,
            responses,
            duration,
            request_size,
            response_size,
            do_requests,
            https_responses,
            plugin_enabled,
            panics,
            connections_open,
            connections_refused,
            build_info,
            acl,
            local,
        })
    }
}

fn rust_version() -> &'static str {
    option_env!("CARGO_PKG_RUST_VERSION").unwrap_or("stable")
}

/// The `type` label: the common types by name, everything else `other`.
pub fn type_label(t: RecordType) -> &'static str {
    match t {
        RecordType::A => "A",
        RecordType::AAAA => "AAAA",
        RecordType::CNAME => "CNAME",
        RecordType::DNSKEY => "DNSKEY",
        RecordType::DS => "DS",
        RecordType::MX => "MX",
        RecordType::NSEC3 => "NSEC3",
        RecordType::NSEC => "NSEC",
        RecordType::NS => "NS",
        RecordType::PTR => "PTR",
        RecordType::RRSIG => "RRSIG",
        RecordType::SOA => "SOA",
        RecordType::SRV => "SRV",
        RecordType::TXT => "TXT",
        RecordType::HTTPS => "HTTPS",
        RecordType::SVCB => "SVCB",
        RecordType::IXFR => "IXFR",
        RecordType::AXFR => "AXFR",
        RecordType::ANY => "ANY",
        _ => "other",
    }
}

/// The `rcode` label.
pub fn rcode_label(r: ResponseCode) -> std::borrow::Cow<'static, str> {
    rcode_name(r)
}

/// The `family` label: `1` for IPv4, `2` for IPv6.
pub fn family_label(ip: std::net::IpAddr) -> &'static str {
    match ip {
        std::net::IpAddr::V4(_) => "1",
        std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => "1",
        std::net::IpAddr::V6(_) => "2",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn registers_coredns_names() {
        let m = Metrics::new(Registry::new()).unwrap();
        m.requests
            .with_label_values(&["dns://:53", ".", "", "udp", "1", "A"])
            .inc();
        m.responses
            .with_label_values(&["dns://:53", ".", "", "NOERROR", "whoami"])
            .inc();
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&m.registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#"coredns_dns_requests_total{family="1",proto="udp",server="dns://:53",type="A",view="",zone="."} 1"#), "{text}");
        assert!(text.contains("coredns_build_info{"));
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_start_time_seconds ",
            "process_threads ",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        assert_eq!(time_buckets().last().copied(), Some(8.192));
        assert_eq!(type_label(RecordType::NULL), "other");
        assert_eq!(rcode_label(ResponseCode::Unknown(3841)), "RCODE3841");
    }
}
