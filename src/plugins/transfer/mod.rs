//! `transfer`: outgoing zone transfers (AXFR, and IXFR answered as AXFR or "up to date") of the
//! zones other plugins of the block hold, over TCP, and NOTIFY to the `to` addresses when a
//! zone changes (CoreDNS's plugin/transfer).
//!
//! The zones come from the block's [`ZoneSources`]: every plugin that implements
//! [`ZoneSource`](crate::plugins::zone_source::ZoneSource) adds itself when it is built. A
//! transfer takes one snapshot of the zone and streams it from a blocking thread through a
//! small channel, so memory stays bounded by a few messages whatever the zone's size and a
//! client that goes away stops the producer.

mod notify;
mod setup;

use std::sync::Arc;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

pub use setup::{XfrConfig, parse};

use crate::plugins::zone_source::{SnapshotError, ZoneSnapshot, ZoneSources, serial};
use crate::plugins::{
    BuildCtx, Handler, HandlerError, Next, OnListen, Proto, Request, Response, is_subdomain,
};

/// Directive name.
pub const NAME: &str = "transfer";

/// Records of one message add up to at most this many bytes uncompressed (with the header,
/// question and OPT record it stays under the 64 KiB a TCP message can hold).
const MESSAGE_BYTES: usize = 63_000;
/// Messages a transfer may have encoded ahead of the client.
const AHEAD: usize = 2;

/// The handler.
pub struct Transfer {
    xfrs: Vec<XfrConfig>,
    sources: ZoneSources,
}

/// The `transfer` directive whose zone is the longest match for `name` (ties: the greater zone,
/// as CoreDNS's `longestMatch`).
pub(crate) fn longest_match<'a>(xfrs: &'a [XfrConfig], name: &str) -> Option<&'a XfrConfig> {
    let mut best: Option<(&str, &XfrConfig)> = None;
    for x in xfrs {
        let Some(z) = x
            .zones
            .iter()
            .filter(|z| is_subdomain(z, name))
            .max_by_key(|z| z.len())
        else {
            continue;
        };
        if best.is_none_or(|(b, _)| z.len() > b.len() || (z.len() == b.len() && z.as_str() > b)) {
            best = Some((z, x));
        }
    }
    best.map(|(_, x)| x)
}

/// Whether a secondary at `have` is up to date with `current` (RFC 1982: `have` is the same
/// or newer); an undefined comparison counts as older, so the secondary gets the zone.
fn up_to_date(have: u32, current: u32) -> bool {
    let behind = current.wrapping_sub(have);
    behind == 0 || behind > 1 << 31
}

/// The serial of an IXFR's authority SOA; `None` when it does not carry exactly one SOA.
fn ixfr_serial(req: &Request) -> Option<u32> {
    match req.authorities.as_slice() {
        [soa] if soa.record_type() == RecordType::SOA => Some(serial(soa)),
        _ => None,
    }
}

fn wire_len(r: &Record) -> usize {
    r.to_bytes().map_or(512, |b| b.len())
}

impl Transfer {
    /// Streams `snap` to the client: the first message is returned, the rest follow through
    /// the response's `more` channel.
    async fn stream(
        &self,
        req: &Request,
        snap: Box<dyn ZoneSnapshot>,
    ) -> Result<Response, HandlerError> {
        let soa = snap.soa();
        let mut template = req.reply();
        template.metadata.authoritative = true;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(AHEAD);
        let (zone, client) = (req.qname_lower().to_string(), req.src.ip());
        tokio::task::spawn_blocking(move || {
            let serial = serial(&soa);
            let mut batch = vec![soa.clone()];
            let mut bytes = wire_len(&soa);
            let mut count = 1usize;
            let send = |batch: Vec<Record>| {
                let mut m = template.clone();
                m.add_answers(batch);
                tx.blocking_send(m).is_ok()
            };
            let mut gone = false;
            snap.records(&mut |r: Record| {
                let len = wire_len(&r);
                if bytes + len > MESSAGE_BYTES {
                    if !send(std::mem::take(&mut batch)) {
                        gone = true;
                        return false;
                    }
                    bytes = 0;
                }
                bytes += len;
                count += 1;
                batch.push(r);
                true
            });
            if gone {
                return;
            }
            batch.push(soa);
            if send(batch) {
                tracing::info!(target: "plugin/transfer", "Outgoing transfer of {} records of zone \"{zone}\" to {client} for {serial} SOA serial", count + 1);
            }
        });
        let Some(first) = rx.recv().await else {
            return Err(HandlerError::Internal(
                "plugin/transfer: the zone's records could not be read".into(),
            ));
        };
        let mut resp = Response::new(first, NAME);
        resp.more = Some(crate::plugins::request::More::new(rx));
        Ok(resp)
    }
}

#[async_trait::async_trait]
impl Handler for Transfer {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let qtype = req.qtype();
        if qtype != RecordType::AXFR && qtype != RecordType::IXFR {
            return next.run(req).await;
        }
        if req.proto != Proto::Tcp {
            return Err(HandlerError::Refused(
                "plugin/transfer: zone transfers are served over TCP only".into(),
            ));
        }
        let zone = req.qname_lower();
        let Some(x) = longest_match(&self.xfrs, zone) else {
            return next.run(req).await;
        };
        if !x.allowed(req.src.ip()) {
            return Ok(Response::new(req.error_reply(ResponseCode::Refused), NAME));
        }
        let have = if qtype == RecordType::IXFR {
            Some(ixfr_serial(req).ok_or_else(|| {
                HandlerError::Internal("plugin/transfer: IXFR without one SOA record".into())
            })?)
        } else {
            None
        };
        for source in self.sources.all() {
            let snap = match source.snapshot(zone) {
                Ok(s) => s,
                Err(SnapshotError::NotAuthoritative) => continue,
                Err(e) => return Err(HandlerError::Internal(format!("plugin/transfer: {e}"))),
            };
            let soa = snap.soa();
            if have.is_some_and(|h| up_to_date(h, serial(&soa))) {
                tracing::info!(target: "plugin/transfer", "Outgoing noop, incremental transfer for up to date zone \"{zone}\" to {} for {} SOA serial", req.src.ip(), serial(&soa));
                let mut m = req.reply();
                m.metadata.authoritative = true;
                m.add_answer(soa);
                return Ok(Response::new(m, NAME));
            }
            return self.stream(req, snap).await;
        }
        next.run(req).await
    }
}

/// Builds the handler; with NOTIFY targets, also the task that sends NOTIFY (it starts with
/// the configuration and sends once the block's listener is open).
pub fn build(xfrs: &[XfrConfig], ctx: &mut BuildCtx<'_>) -> Arc<dyn Handler> {
    let sources = ctx.zone_sources.clone();
    if xfrs.iter().any(|x| !x.notify_targets().is_empty()) {
        let (open_tx, open_rx) = tokio::sync::watch::channel(false);
        ctx.services.on_listen.push(OnListen {
            listener: ctx.listener,
            hook: Box::new(move |_| {
                let _ = open_tx.send(true);
            }),
        });
        let (xfrs, sources) = (xfrs.to_vec(), sources.clone());
        ctx.services.starters.0.push(Box::new(move |start| {
            Box::pin(async move {
                tokio::spawn(notify::run(xfrs, sources, open_rx, start.stop));
                Ok(())
            })
        }));
    }
    Arc::new(Transfer {
        xfrs: xfrs.to_vec(),
        sources,
    })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::{A, NS, SOA};
    use hickory_proto::rr::{DNSClass, Name, RData};

    use super::*;
    use crate::plugins::Chain;
    use crate::plugins::zone_source::ZoneSource;

    /// transfer_test.go's `transfererPlugin`: one zone, serial 12345, SOA + NS + A + SOA.
    struct Fixed {
        zone: &'static str,
        serial: u32,
        changed: tokio::sync::watch::Sender<()>,
    }

    struct FixedSnap(&'static str, u32);

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }

    impl ZoneSnapshot for FixedSnap {
        fn soa(&self) -> Record {
            let z = self.0;
            Record::from_rdata(
                n(z),
                100,
                RData::SOA(SOA::new(
                    n(&format!("ns.dns.{z}")),
                    n(&format!("hostmaster.{z}")),
                    self.1,
                    7200,
                    1800,
                    86400,
                    100,
                )),
            )
        }
        fn records(&self, emit: &mut dyn FnMut(Record) -> bool) {
            let z = self.0;
            let _ = emit(Record::from_rdata(
                n(z),
                100,
                RData::NS(NS(n(&format!("ns.dns.{z}")))),
            )) && emit(Record::from_rdata(
                n(&format!("ns.dns.{z}")),
                100,
                RData::A(A::new(1, 2, 3, 4)),
            ));
        }
    }

    impl ZoneSource for Fixed {
        fn zones(&self) -> Vec<String> {
            vec![self.zone.to_string()]
        }
        fn snapshot(&self, zone: &str) -> Result<Box<dyn ZoneSnapshot>, SnapshotError> {
            if zone != self.zone {
                return Err(SnapshotError::NotAuthoritative);
            }
            Ok(Box::new(FixedSnap(self.zone, self.serial)))
        }
        fn changes(&self) -> tokio::sync::watch::Receiver<()> {
            self.changed.subscribe()
        }
    }

    /// The last plugin of transfer_test.go: NXDOMAIN for everything.
    struct Nx;

    #[async_trait::async_trait]
    impl Handler for Nx {
        fn name(&self) -> &'static str {
            "nx"
        }
        async fn serve(&self, req: &Request, _: Next<'_>) -> Result<Response, HandlerError> {
            Ok(Response::new(req.error_reply(ResponseCode::NXDomain), "nx"))
        }
    }

    fn chain(to: &str) -> Chain {
        let sources = ZoneSources::default();
        for zone in ["example.com.", "example.org."] {
            sources.add(Arc::new(Fixed {
                zone,
                serial: 12345,
                changed: tokio::sync::watch::Sender::new(()),
            }));
        }
        let xfr = |z: &str| XfrConfig {
            zones: vec![z.into()],
            to: vec![to.into()],
            source: None,
        };
        Chain::new(vec![
            Arc::new(Transfer {
                xfrs: vec![xfr("example.org."), xfr("example.com.")],
                sources,
            }),
            Arc::new(Nx),
        ])
    }

    fn req(name: &str, qtype: RecordType, proto: Proto, ixfr: Option<u32>) -> Request {
        let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        let mut q = Query::query(n(name), qtype);
        q.set_query_class(DNSClass::IN);
        let mut r = Request::with_query(q, src, proto);
        if let Some(serial) = ixfr {
            r.authorities.push(FixedSnap("example.org.", serial).soa());
        }
        r
    }

    /// Every message of a transfer: the first and the ones after it.
    async fn transfer(c: &Chain, r: &Request) -> (ResponseCode, Vec<Vec<Record>>) {
        let resp = c.run(r).await.unwrap();
        let code = resp.rcode();
        let mut msgs = vec![resp.msg.answers.clone()];
        if let Some(mut rx) = resp.more.and_then(|m| m.take()) {
            while let Some(m) = rx.recv().await {
                assert!(m.metadata.authoritative);
                msgs.push(m.answers);
            }
        }
        (code, msgs)
    }

    fn validate_axfr(msgs: &[Vec<Record>]) {
        let all: Vec<&Record> = msgs.iter().flatten().collect();
        assert_eq!(all.len(), 4, "{all:?}");
        assert_eq!(all[0].record_type(), RecordType::SOA);
        assert_eq!(all[3].record_type(), RecordType::SOA);
    }

    /// transfer_test.go TestTransferAXFRExampleOrg / ExampleCom, and the mixed-case zone.
    #[tokio::test]
    async fn axfr_of_each_zone() {
        let c = chain("*");
        for zone in ["example.org.", "example.com.", "ExAmPlE.OrG."] {
            let (code, msgs) = transfer(&c, &req(zone, RecordType::AXFR, Proto::Tcp, None)).await;
            assert_eq!(code, ResponseCode::NoError, "{zone}");
            validate_axfr(&msgs);
        }
    }

    /// TestTransferIXFRCurrent (and a newer serial), TestTransferIXFRFallback.
    #[tokio::test]
    async fn ixfr_current_and_fallback() {
        let c = chain("*");
        for serial in [12345, 12346] {
            let r = req("example.org.", RecordType::IXFR, Proto::Tcp, Some(serial));
            let (_, msgs) = transfer(&c, &r).await;
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].len(), 1);
            assert_eq!(msgs[0][0].record_type(), RecordType::SOA);
        }
        let r = req("example.org.", RecordType::IXFR, Proto::Tcp, Some(12344));
        validate_axfr(&transfer(&c, &r).await.1);
    }

    /// TestTransferNonZone, TestTransferNotAXFRorIXFR: on to the next plugin.
    #[tokio::test]
    async fn other_names_and_types_go_on() {
        let c = chain("*");
        for (name, qtype) in [
            ("sub.example.org.", RecordType::AXFR),
            ("example.test.", RecordType::AXFR),
            ("test.domain.", RecordType::A),
        ] {
            let resp = c.run(&req(name, qtype, Proto::Tcp, None)).await.unwrap();
            assert_eq!(resp.rcode(), ResponseCode::NXDomain, "{name}");
        }
    }

    /// TestTransferNotAllowed; UDP; an IXFR without its SOA.
    #[tokio::test]
    async fn refusals() {
        let resp = chain("1.2.3.4:53")
            .run(&req("example.org.", RecordType::AXFR, Proto::Tcp, None))
            .await
            .unwrap();
        assert_eq!(resp.rcode(), ResponseCode::Refused);
        let c = chain("*");
        let udp = c
            .run(&req("example.org.", RecordType::AXFR, Proto::Udp, None))
            .await;
        assert!(matches!(udp, Err(HandlerError::Refused(_))));
        let bare = c
            .run(&req("example.org.", RecordType::IXFR, Proto::Tcp, None))
            .await;
        assert!(matches!(bare, Err(HandlerError::Internal(_))));
    }

    /// TestTransferDrainsProducerOnClientError: a client that goes away stops the producer.
    #[tokio::test]
    async fn a_dropped_client_stops_the_producer() {
        struct Big(Arc<std::sync::atomic::AtomicUsize>);
        impl ZoneSnapshot for Big {
            fn soa(&self) -> Record {
                FixedSnap("example.org.", 1).soa()
            }
            fn records(&self, emit: &mut dyn FnMut(Record) -> bool) {
                for i in 0..1_000_000u32 {
                    let r = Record::from_rdata(
                        n(&format!("h{i}.example.org.")),
                        100,
                        RData::A(A::from(std::net::Ipv4Addr::from(i))),
                    );
                    self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if !emit(r) {
                        return;
                    }
                }
            }
        }
        struct BigSource(Arc<std::sync::atomic::AtomicUsize>);
        impl ZoneSource for BigSource {
            fn zones(&self) -> Vec<String> {
                vec!["example.org.".into()]
            }
            fn snapshot(&self, _: &str) -> Result<Box<dyn ZoneSnapshot>, SnapshotError> {
                Ok(Box::new(Big(self.0.clone())))
            }
            fn changes(&self) -> tokio::sync::watch::Receiver<()> {
                tokio::sync::watch::Sender::new(()).subscribe()
            }
        }
        let emitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let sources = ZoneSources::default();
        sources.add(Arc::new(BigSource(emitted.clone())));
        let t = Transfer {
            xfrs: vec![x(&["example.org."])],
            sources,
        };
        let c = Chain::new(vec![Arc::new(t)]);
        let resp = c
            .run(&req("example.org.", RecordType::AXFR, Proto::Tcp, None))
            .await
            .unwrap();
        drop(resp); // the client is gone after the first message
        // The producer stops within the messages it may have made ahead.
        let mut last = usize::MAX;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let now = emitted.load(std::sync::atomic::Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
        }
        assert!(last < 100_000, "the producer kept going: {last} records");
    }

    fn x(zones: &[&str]) -> XfrConfig {
        XfrConfig {
            zones: zones.iter().map(|z| z.to_string()).collect(),
            to: vec!["*".into()],
            source: None,
        }
    }

    /// select_test.go: the longest zone wins; a name outside every zone matches nothing.
    #[test]
    fn longest_zone_match() {
        let xfrs = [
            x(&["example.org."]),
            x(&["sub.example.org.", "example.com."]),
        ];
        let pick = |n: &str| longest_match(&xfrs, n).map(|x| x.zones[0].clone());
        assert_eq!(pick("example.org.").as_deref(), Some("example.org."));
        assert_eq!(
            pick("a.sub.example.org.").as_deref(),
            Some("sub.example.org.")
        );
        assert_eq!(pick("example.com.").as_deref(), Some("sub.example.org."));
        assert_eq!(pick("example.net."), None);
        let root = [x(&["."])];
        assert!(longest_match(&root, "cluster.local.").is_some());
    }

    #[test]
    fn serial_arithmetic() {
        assert!(up_to_date(5, 5));
        assert!(up_to_date(6, 5), "newer than ours");
        assert!(!up_to_date(4, 5));
        assert!(!up_to_date(u32::MAX, 2), "2 is after a wrap");
        assert!(up_to_date(2, u32::MAX));
        assert!(!up_to_date(0, 1 << 31), "undefined: transfer");
    }
}
