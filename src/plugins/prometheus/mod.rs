//! `prometheus`: CoreDNS's metrics on `/metrics` (plugin/metrics).
//!
//! The server records the per-query metrics after the reply is encoded, for blocks whose chain
//! holds this plugin; the registry is created once per process and passed in.

mod metrics;
mod setup;
pub mod webconfig;

pub use metrics::{Metrics, family_label, rcode_label, time_buckets, type_label};
pub use setup::{PrometheusConfig, parse};

use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "prometheus";

/// Chain position of `prometheus`: passes every query on (the server does the recording).
#[derive(Debug, Default)]
pub struct Marker;

#[async_trait::async_trait]
impl Handler for Marker {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        next.run(req).await
    }
}
