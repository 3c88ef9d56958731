//! `loop`: detects forwarding loops at start-up (plugin/loop). The module is `loop_detect`
//! because `loop` is a Rust keyword; the directive is `loop`.
//!
//! Once the listeners are open, a task sends `HINFO <random>.<random>.<zone>` to this block's
//! own address. If the query comes back to us three times, something forwards our queries back
//! to us: the process exits, as CoreDNS does, rather than amplify the loop. The first reply (or
//! 30 s) ends the probing and disables the plugin.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, Name, RecordType};

use crate::corefile::{Dispenser, Error};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "loop";

/// Parses `loop` (no arguments).
pub fn parse(d: &mut Dispenser<'_>) -> Result<(), Error> {
    d.next();
    if d.next_arg() {
        return Err(d.arg_err());
    }
    d.expect_no_block()
}

/// The probe state of one block.
pub struct Loop {
    zone: String,
    qname: String,
    seen: AtomicU32,
    disabled: AtomicBool,
}

impl Loop {
    /// A detector for `zone` with a fresh random probe name.
    pub fn new(zone: &str) -> Self {
        let r = || rand::random::<u64>() >> 2;
        let qname = if zone == "." {
            format!("{}.{}.", r(), r())
        } else {
            format!("{}.{}.{zone}", r(), r())
        };
        Self {
            zone: zone.to_string(),
            qname,
            seen: AtomicU32::new(0),
            disabled: AtomicBool::new(false),
        }
    }

    /// The probe name.
    pub fn qname(&self) -> &str {
        &self.qname
    }

    /// Sends the probe to `addr` every second until a reply arrives or 30 s pass.
    pub async fn probe(self: Arc<Self>, addr: SocketAddr) {
        let target = match addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => {
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
            }
            IpAddr::V6(v6) if v6.is_unspecified() => {
                SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
            }
            _ => addr,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !self.disabled.load(Ordering::Relaxed) {
            if self.exchange(target).await {
                // CoreDNS keeps counting for 2 s more after the first reply.
                tokio::time::sleep(Duration::from_secs(2)).await;
                break;
            }
            self.seen.store(0, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.disabled.store(true, Ordering::Relaxed);
    }

    async fn exchange(&self, target: SocketAddr) -> bool {
        let Ok(name) = Name::from_ascii(&self.qname) else {
            return true;
        };
        let mut m = Message::new(rand::random(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        let mut q = Query::query(name, RecordType::HINFO);
        q.set_query_class(DNSClass::IN);
        m.add_query(q);
        let Ok(wire) = m.to_vec() else { return true };
        let bind: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else {
            return false;
        };
        if sock.send_to(&wire, target).await.is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        matches!(
            tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await,
            Ok(Ok(_))
        )
    }
}

#[async_trait::async_trait]
impl Handler for Loop {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        if req.qtype() == RecordType::HINFO && !self.disabled.load(Ordering::Relaxed) {
            let name = req.qname_lower();
            if name == self.qname && self.seen.fetch_add(1, Ordering::Relaxed) + 1 > 2 {
                tracing::error!(
                    target: "plugin/loop",
                    "Loop ({} -> {}) detected for zone \"{}\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
                    req.src, req.local, self.zone, self.qname
                );
                eprintln!(
                    "[FATAL] plugin/loop: Loop ({} -> {}) detected for zone \"{}\", see https://coredns.io/plugins/loop#troubleshooting. Query: \"HINFO {}\"",
                    req.src, req.local, self.zone, self.qname
                );
                std::process::exit(1);
            }
        }
        next.run(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_names_are_random_and_in_the_zone() {
        let a = Loop::new("cluster.local.");
        let b = Loop::new("cluster.local.");
        assert!(a.qname().ends_with(".cluster.local."));
        assert_ne!(a.qname(), b.qname());
        assert_eq!(Loop::new(".").qname().matches('.').count(), 2);
    }
}
