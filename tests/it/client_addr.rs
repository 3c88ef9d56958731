//! An IPv4 client of a dual-stack `[::]` listener is an IPv4 client to every plugin (issue 19):
//! CoreDNS's `state.IP()` is the `net.IP.To4()` form, so `whoami` answers an A record, template
//! `.Remote` is `127.0.0.1` and the metrics' family label is 1 — never `::ffff:127.0.0.1`.

use hickory_proto::rr::{RData, RecordType};

use crate::util::{http_get, query, start, tcp, udp};

const COREFILE: &str = r#".:0 {
    bind ::
    prometheus 127.0.0.1:0
    template IN TXT remote.test {
        answer "{{ .Name }} 60 IN TXT \"{{ .Remote }}\""
    }
    whoami
}
"#;

#[tokio::test]
async fn ipv4_client_of_a_dual_stack_socket_is_ipv4() {
    let srv = start(COREFILE, vec![]).await;
    assert!(
        srv.running.dns_addrs[0].ip().is_unspecified() && srv.running.dns_addrs[0].is_ipv6(),
        "listens on [::]: {:?}",
        srv.running.dns_addrs
    );
    let addr = srv.dns(); // 127.0.0.1:PORT, reaching [::] through the v4-mapped path
    for over_tcp in [false, true] {
        let q = query("x.example.", RecordType::A, None);
        let r = if over_tcp {
            tcp(addr, &q).await
        } else {
            udp(addr, &q).await
        };
        let a: Vec<_> = r
            .additionals
            .iter()
            .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
            .collect();
        assert_eq!(a.len(), 1, "{r:?}");
        assert_eq!(a[0].data, RData::A("127.0.0.1".parse().unwrap()), "{r:?}");

        let q = query("remote.test.", RecordType::TXT, None);
        let r = if over_tcp {
            tcp(addr, &q).await
        } else {
            udp(addr, &q).await
        };
        assert_eq!(r.answers.len(), 1, "{r:?}");
        assert_eq!(r.answers[0].data.to_string(), "127.0.0.1", "{r:?}");
    }
    // The requests counter's family label (1 = IPv4, as CoreDNS's state.Family()).
    let (code, text) = http_get(srv.http("127.0.0.1:0"), "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        text.lines()
            .any(|l| l.starts_with("coredns_dns_requests_total{") && l.contains("family=\"1\"")),
        "{text}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("coredns_dns_requests_total{") && l.contains("family=\"2\"")),
        "{text}"
    );
    srv.running.shutdown().await;
}

/// The same on the fast path (`clusterdns::plugins::fast`): a cluster name asked over UDP by an
/// IPv4 client of `[::]` is logged with its IPv4 address and counted with family 1.
#[tokio::test]
async fn ipv4_client_of_a_dual_stack_socket_is_ipv4_on_the_fast_path() {
    let corefile = format!(
        ".:0 {{\n    bind ::\n    prometheus 127.0.0.1:0\n    kubernetes cluster.local {{\n        snapshot {}\n    }}\n}}\n",
        concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/demo/cluster.yaml")
    );
    let srv = start(&corefile, vec![]).await;
    let raw = query("kubernetes.default.svc.cluster.local.", RecordType::A, None)
        .to_vec()
        .unwrap();
    let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:5353".parse().unwrap();
    assert!(
        srv.running.answer_fast(&raw, mapped).is_some(),
        "a cluster A question takes the fast path"
    );
    let r = udp(
        srv.dns(),
        &query("kubernetes.default.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1, "{r:?}");
    let (code, text) = http_get(srv.http("127.0.0.1:0"), "/metrics").await;
    assert_eq!(code, 200);
    let requests = |family: &str| {
        text.lines().any(|l| {
            l.starts_with("coredns_dns_requests_total{")
                && l.contains(&format!("family=\"{family}\""))
        })
    };
    assert!(requests("1") && !requests("2"), "{text}");
    srv.running.shutdown().await;
}
