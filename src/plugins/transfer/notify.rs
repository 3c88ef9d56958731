//! NOTIFY (RFC 1996) to the `to` addresses when a zone's serial changes: once the block
//! listens (so the secondary's transfer finds us), then after every change, at most one round
//! per zone every [`MIN_INTERVAL`] (a busy cluster changes many times a second; each NOTIFY
//! makes every secondary transfer the whole zone).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{XfrConfig, longest_match};
use crate::plugins::zone_source::{ZoneSource, ZoneSources, serial};

/// Shortest time between two NOTIFY rounds for one zone.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(5);
/// How long to wait for each answer, and how many tries (CoreDNS: 3, with miekg's 2 s).
const TIMEOUT: Duration = Duration::from_secs(2);
const TRIES: usize = 3;

/// A zone to watch: its source and where its NOTIFYs go.
struct Watched {
    zone: String,
    source: Arc<dyn ZoneSource>,
    to: Vec<SocketAddr>,
    from: Option<IpAddr>,
    /// The serial last announced, and when.
    sent: Option<(u32, tokio::time::Instant)>,
}

/// Sends NOTIFY for every zone of `sources` that a `transfer` directive with addresses covers,
/// whenever its serial changes, until `stop`.
pub(crate) async fn run(
    xfrs: Vec<XfrConfig>,
    sources: ZoneSources,
    mut open: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    // The secondaries would come back for the zone at once: wait until we answer.
    tokio::select! {
        _ = stop.cancelled() => return,
        r = open.wait_for(|o| *o) => if r.is_err() { return },
    }
    let mut watched = Vec::new();
    let mut changes = Vec::new();
    for source in sources.all() {
        changes.push(source.changes());
        for zone in source.zones() {
            let Some(x) = longest_match(&xfrs, &zone) else {
                continue;
            };
            let to = x.notify_targets();
            if !to.is_empty() {
                watched.push(Watched {
                    zone,
                    source: source.clone(),
                    to,
                    from: x.source,
                    sent: None,
                });
            }
        }
    }
    if watched.is_empty() {
        return;
    }
    loop {
        let mut wake: Option<tokio::time::Instant> = None;
        for w in &mut watched {
            let Ok(snap) = w.source.snapshot(&w.zone) else {
                continue; // not ready yet: a change will come when it is
            };
            let soa = snap.soa();
            let s = serial(&soa);
            let now = tokio::time::Instant::now();
            match w.sent {
                Some((last, _)) if last == s => continue,
                Some((_, at)) if now < at + MIN_INTERVAL => {
                    let due = at + MIN_INTERVAL;
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                    continue;
                }
                _ => {}
            }
            w.sent = Some((s, now));
            for &to in &w.to {
                tokio::spawn(send(w.zone.clone(), soa.clone(), to, w.from));
            }
        }
        let changed =
            futures_util::future::select_all(changes.iter_mut().map(|c| Box::pin(c.changed())));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async { tokio::time::sleep_until(wake.unwrap_or_else(far)).await }, if wake.is_some() => {}
            (r, _, _) = changed => if r.is_err() { return },
        }
    }
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400)
}

/// The NOTIFY for `zone`: opcode NOTIFY, AA, the zone's SOA as question and (RFC 1996 §3.7)
/// its current SOA as answer.
pub(crate) fn message(id: u16, zone: &str, soa: Record) -> Message {
    let mut m = Message::new(id, MessageType::Query, OpCode::Notify);
    m.metadata.authoritative = true;
    let mut q = Query::query(
        Name::from_ascii(zone).unwrap_or_else(|_| Name::root()),
        RecordType::SOA,
    );
    q.set_query_class(DNSClass::IN);
    m.add_query(q);
    m.add_answer(soa);
    m
}

/// One NOTIFY to `to`, tried up to three times; the outcome is logged.
async fn send(zone: String, soa: Record, to: SocketAddr, from: Option<IpAddr>) {
    let s = serial(&soa);
    match notify(&zone, soa, to, from).await {
        Ok(()) => {
            tracing::debug!(target: "plugin/transfer", "Sent notify for zone \"{zone}\" serial {s} to {to}")
        }
        Err(e) => {
            tracing::warn!(target: "plugin/transfer", "notify for zone \"{zone}\" was not accepted by \"{to}\": {e}")
        }
    }
}

async fn notify(
    zone: &str,
    soa: Record,
    to: SocketAddr,
    from: Option<IpAddr>,
) -> Result<(), String> {
    let local = from.unwrap_or(match to {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    });
    let sock = UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(|e| e.to_string())?;
    let id: u16 = rand::random();
    let bytes = message(id, zone, soa).to_vec().map_err(|e| e.to_string())?;
    let mut last = String::from("no reply");
    let mut buf = vec![0u8; 4096];
    for _ in 0..TRIES {
        sock.send_to(&bytes, to).await.map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let got = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await;
            let Ok(Ok((n, peer))) = got else {
                break; // timed out (or a socket error): try again
            };
            if peer != to {
                continue;
            }
            let Ok(reply) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            if reply.metadata.id != id || reply.metadata.message_type != MessageType::Response {
                continue;
            }
            if reply.metadata.response_code == ResponseCode::NoError {
                return Ok(());
            }
            last = format!("rcode was {}", reply.metadata.response_code);
            break;
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::SOA;

    use super::*;

    fn soa(serial: u32) -> Record {
        let n = |s: &str| Name::from_ascii(s).unwrap();
        Record::from_rdata(
            n("cluster.local."),
            5,
            RData::SOA(SOA::new(
                n("ns.dns.cluster.local."),
                n("hostmaster.cluster.local."),
                serial,
                7200,
                1800,
                86400,
                5,
            )),
        )
    }

    /// A secondary on a local socket: checks each NOTIFY and answers with `rcode`.
    async fn secondary(rcode: ResponseCode) -> (SocketAddr, tokio::task::JoinHandle<Message>) {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Notify);
            r.metadata.response_code = rcode;
            r.add_query(q.queries[0].clone());
            sock.send_to(&r.to_vec().unwrap(), from).await.unwrap();
            q
        });
        (addr, task)
    }

    #[tokio::test]
    async fn notify_is_accepted_or_reported() {
        let (addr, seen) = secondary(ResponseCode::NoError).await;
        notify("cluster.local.", soa(7), addr, None).await.unwrap();
        let q = seen.await.unwrap();
        assert_eq!(q.metadata.op_code, OpCode::Notify);
        assert!(q.metadata.authoritative);
        assert_eq!(q.queries[0].query_type(), RecordType::SOA);
        assert_eq!(q.queries[0].name().to_ascii(), "cluster.local.");
        assert_eq!(serial(&q.answers[0]), 7);

        let (addr, _) = secondary(ResponseCode::NotAuth).await;
        let err = notify(
            "cluster.local.",
            soa(7),
            addr,
            Some("127.0.0.1".parse().unwrap()),
        )
        .await
        .unwrap_err();
        assert!(err.contains("rcode"), "{err}");
    }
}
