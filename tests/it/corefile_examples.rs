//! Documentation cannot rot: every ```corefile block in every plugin README, and
//! Corefile.example, loads, builds, starts and answers a query.

use std::path::PathBuf;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::util::{query, start, stub_upstream, udp};

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
            .replace(":19153", ":0");
        let s = start(&text, vec![]).await;
        let r = udp(s.dns(), &query("example.org.", RecordType::A, None)).await;
        assert_ne!(r.metadata.response_code, ResponseCode::ServFail, "{name}");
        s.running.shutdown().await;
    }
}
