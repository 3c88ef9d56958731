//! The `whoami` handler.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, SRV};
use hickory_proto::rr::{Name, RData, Record};

use super::NAME;
use crate::plugins::{Handler, HandlerError, Next, Proto, Request, Response};

/// Answers with the client's IP (A or AAAA) and port (SRV) in the additional section.
#[derive(Debug, Default)]
pub struct Whoami;

#[async_trait::async_trait]
impl Handler for Whoami {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, _next: Next<'_>) -> Result<Response, HandlerError> {
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        let qname = req.qname().clone();
        let ip = match req.src.ip() {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => RData::A(A(v4)),
                None => RData::AAAA(AAAA(v6)),
            },
        };
        let mut addr = Record::from_rdata(qname.clone(), 0, ip);
        addr.dns_class = req.qclass();
        let label = match req.proto {
            Proto::Udp => "_udp",
            Proto::Tcp => "_tcp",
        };
        let owner = qname
            .prepend_label(label)
            .map_err(|e| HandlerError::Internal(format!("plugin/whoami: {e}")))?;
        let mut srv = Record::from_rdata(
            owner,
            0,
            RData::SRV(SRV::new(0, 0, req.src.port(), Name::root())),
        );
        srv.dns_class = req.qclass();
        msg.add_additional(addr);
        msg.add_additional(srv);
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Chain;
    use hickory_proto::rr::RecordType;
    use std::sync::Arc;

    #[tokio::test]
    async fn answers_with_client_address() {
        let chain = Chain::new(vec![Arc::new(Whoami)]);
        let cases = [
            (
                "example.org.",
                "10.0.0.1:40212",
                Proto::Udp,
                "A",
                "_udp.example.org.",
            ),
            (".", "10.0.0.1:53", Proto::Tcp, "A", "_tcp."),
            (
                "Example.ORG.",
                "[2001:db8::1]:1000",
                Proto::Udp,
                "AAAA",
                "_udp.Example.ORG.",
            ),
        ];
        for (qname, src, proto, t, srv_owner) in cases {
            let req = Request::new(
                Name::from_ascii(qname).unwrap(),
                RecordType::A,
                src.parse().unwrap(),
                proto,
            );
            let resp = chain.run(&req).await.unwrap();
            assert!(resp.msg.metadata.authoritative);
            assert!(resp.msg.answers.is_empty());
            let extra = &resp.msg.additionals;
            assert_eq!(extra[0].record_type().to_string(), t);
            assert_eq!(extra[0].name.to_string(), qname);
            assert_eq!(extra[1].name.to_string(), srv_owner);
            let RData::SRV(srv) = &extra[1].data else {
                panic!("not SRV")
            };
            assert_eq!(srv.port, req.src.port());
        }
    }

    // plugin/whoami/whoami_test.go: TestWhoami (4 cases: case-preserving owners of the
    // additional records, IPv4 and IPv6 clients; test.ResponseWriter's client is 10.240.0.1).
    #[tokio::test]
    async fn test_whoami() {
        assert_eq!(Whoami.name(), "whoami");
        let chain = Chain::new(vec![Arc::new(Whoami)]);
        for (qname, remote, owners, addr) in [
            (
                "example.org",
                "10.240.0.1:40212",
                ["example.org.", "_udp.example.org."],
                "10.240.0.1",
            ),
            (
                "Example.ORG",
                "10.240.0.1:40212",
                ["Example.ORG.", "_udp.Example.ORG."],
                "10.240.0.1",
            ),
            (
                "example.org",
                "[2003::1]:40212",
                ["example.org.", "_udp.example.org."],
                "2003::1",
            ),
            (
                "Example.ORG",
                "[2003::1]:40212",
                ["Example.ORG.", "_udp.Example.ORG."],
                "2003::1",
            ),
        ] {
            let req = Request::new(
                Name::from_ascii(format!("{qname}.")).unwrap(),
                RecordType::A,
                remote.parse().unwrap(),
                Proto::Udp,
            );
            let resp = chain.run(&req).await.unwrap();
            assert_eq!(resp.rcode(), hickory_proto::op::ResponseCode::NoError);
            let extra = &resp.msg.additionals;
            let names: Vec<String> = extra.iter().map(|r| r.name.to_string()).collect();
            assert_eq!(names, owners, "{qname} {remote}");
            assert_eq!(extra[0].data.to_string(), addr);
        }
    }
}
