//! clusterdns: a cluster DNS server for Kubernetes that replaces the CoreDNS container.
//!
//! # Layout
//!
//! * [`corefile`] — Corefile text → tokens → server blocks (pure; knows no plugin).
//! * [`config`] — server blocks → typed [`config::Config`]: normalised keys, one
//!   [`plugins::PluginConfig`] per directive, sorted by [`plugins::ORDER`].
//! * [`plugins`] — the handler trait and chain, each plugin's setup, handler and README.
//! * [`server`] — build (chains, no sockets) → start (HTTP, then DNS listeners on
//!   hickory-server) → shutdown with lameduck.
//! * [`logging`] — CoreDNS-style `[INFO] plugin/NAME: …` lines through `tracing`.
//!
//! The query path: a listener's dispatcher picks the block whose zone is the longest suffix of
//! the query name, runs its chain, and writes the reply (EDNS, truncation, metrics).

#![warn(missing_docs)]

pub mod config;
pub mod corefile;
pub mod fswatch;
pub mod fuzzing;
pub mod kube;
pub mod logging;
pub mod plugins;
pub mod server;
pub mod tls;
pub mod tlsconf;
pub mod zonefile;

/// The version printed by `-version` and exported in `coredns_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
