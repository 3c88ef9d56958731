//! template through a whole server (CoreDNS's test/template_upstream_test.go).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

use crate::util::{query, start, udp};

// test/template_upstream_test.go: TestTemplateUpstream.
#[tokio::test]
async fn template_upstream() {
    let srv = start(
        r#".:0 {
    bind 127.0.0.1
    # CNAME
    template IN ANY cname.example.net. {
        match ".*"
        answer "cname.example.net. 60 IN CNAME target.example.net."
        upstream
    }

    # Target
    template IN A target.example.net. {
        match ".*"
        answer "target.example.net. 60 IN A 1.2.3.4"
    }
}
"#,
        vec![],
    )
    .await;
    let r = udp(
        srv.dns(),
        &query("cname.example.net.", RecordType::A, Some(4096)),
    )
    .await;
    assert_ne!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(r.answers.len() >= 2, "{r:?}");
    let RData::CNAME(c) = &r.answers[0].data else {
        panic!("{r:?}")
    };
    assert_eq!(c.0.to_string(), "target.example.net.");
    assert_eq!(r.answers[1].data, RData::A("1.2.3.4".parse().unwrap()));

    let r = udp(
        srv.dns(),
        &query("cname.example.net.", RecordType::CNAME, Some(4096)),
    )
    .await;
    assert_ne!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(r.answers.len(), 1, "{r:?}");
    let RData::CNAME(c) = &r.answers[0].data else {
        panic!("{r:?}")
    };
    assert_eq!(c.0.to_string(), "target.example.net.");
    srv.running.shutdown().await;
}
