//! `cache`: keeps answers for their TTL (plugin/cache), on moka.

#[cfg(test)]
mod coredns_tests;
mod handler;
mod setup;

pub use handler::{Cache, CacheMetrics};
pub use setup::{Bucket, CacheConfig, Prefetch, ServeStale, parse};

/// Directive name.
pub const NAME: &str = "cache";
