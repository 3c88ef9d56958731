//! Documentation cannot rot: every ```corefile block in every plugin README, and
//! Corefile.example, loads, builds, starts and answers a query.

use std::path::PathBuf;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use clusterdns::corefile::Transport;

use crate::util::{doh_post, dot, fixture, query, start, stub_upstream, udp};

fn examples() -> Vec<(String, String)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![(
        "Corefile.example".to_string(),
        std::fs::read_to_string(root.join("Corefile.example")).unwrap(),
    )];
    let mut readmes: Vec<PathBuf> = std::fs::read_dir(root.join("src/plugins"))
        .unwrap()
        .map(|e| e.unwrap().path().join("README.md"))
        .filter(|p| p.exists())
        .collect();
    readmes.sort();
    for r in readmes {
        let text = std::fs::read_to_string(&r).unwrap();
        let mut rest = text.as_str();
        let mut n = 0;
        while let Some(i) = rest.find("```corefile\n") {
            let body = &rest[i + 12..];
            let end = body.find("```").expect("unterminated example");
            n += 1;
            out.push((
                format!("{} example {n}", r.display()),
                body[..end].to_string(),
            ));
            rest = &body[end + 3..];
        }
        assert!(n > 0, "{} has no ```corefile example", r.display());
    }
    out
}

#[tokio::test]
async fn every_example_boots_and_answers() {
    // Examples forward to 127.0.0.1:5398/5399: point them at a stub (never at a real resolver).
    let stub = stub_upstream(&[("example.org.", "192.0.2.1".parse().unwrap())]).await;
    let upstream = stub.addr.to_string();
    for (name, text) in examples() {
        // Examples use fixed ports; serve them on ephemeral ones so tests can run in parallel.
        let text = text
            .replace("127.0.0.1:5398", &upstream)
            .replace("127.0.0.1:5399", &upstream)
            .replace("/etc/resolv.conf", &upstream)
            .replace(":1053", ":0")
            .replace(":18080", ":0")
            .replace(":18181", ":0")
            .replace(":19153", ":0")
            .replace(":1443", ":0")
            // TLS examples name cert.pem, key.pem and ca.pem: the test fixtures.
            .replace("cert.pem", &fixture("dot.crt"))
            .replace("key.pem", &fixture("dot.key"))
            .replace("ca.pem", &fixture("client-ca.crt"));
        let s = start(&text, vec![]).await;
        // The example's first listener, over its own transport.
        let q = query("example.org.", RecordType::A, None);
        let r = match s.running.addrs.first() {
            Some((Transport::Tls, a)) => dot(*a, &q, None).await.unwrap(),
            Some((Transport::Https, a)) => doh_post(*a, &q).await.unwrap(),
            _ => udp(s.dns(), &q).await,
        };
        assert_ne!(r.metadata.response_code, ResponseCode::ServFail, "{name}");
        s.running.shutdown().await;
    }
}
