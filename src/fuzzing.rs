//! Fuzz target bodies, kept in the library so `cargo test` replays their seeds and the
//! `fuzz/` crate stays a thin wrapper (linkerd's `fuzz_logic` style).

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::Message;

use crate::plugins::errors::{Errors, ErrorsConfig};
use crate::plugins::log::{COMMON, Classes, Log, LogConfig, Rule};
use crate::plugins::whoami::Whoami;
use crate::plugins::{Chain, Proto, Request};

/// Any bytes as a Corefile: parse and set up; must return, never panic.
pub fn corefile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = crate::config::load("Corefile", &text, 53);
}

/// Any bytes as a zone file for `example.org.`: parse, build the zone, look a few names up;
/// must return, never panic.
pub fn zonefile(data: &[u8]) {
    use hickory_proto::rr::{Name, RecordType};
    let text = String::from_utf8_lossy(data);
    let origin = Name::from_ascii("example.org.").expect("literal name");
    let path = std::path::Path::new("/nonexistent/fuzz.zone");
    let Ok(entries) = crate::zonefile::parse_str(&text, path, &origin) else {
        return;
    };
    let Ok(zone) = crate::plugins::file::Zone::from_entries(path, &origin, entries) else {
        return;
    };
    for name in [
        "example.org.",
        "www.example.org.",
        "a.b.example.org.",
        "*.example.org.",
    ] {
        let name = Name::from_ascii(name).expect("literal name");
        for t in [
            RecordType::A,
            RecordType::CNAME,
            RecordType::NS,
            RecordType::DS,
        ] {
            let _ = zone.lookup(&name, t, true);
        }
    }
}

/// Any bytes as a DNS message: when it decodes with one question, run it through a chain of
/// errors → log → whoami and encode the reply; must never panic.
pub fn message(data: &[u8]) {
    let Ok(msg) = Message::from_vec(data) else {
        return;
    };
    let Some(query) = msg.queries.first().cloned() else {
        return;
    };
    let src: SocketAddr = "192.0.2.1:5353".parse().expect("literal address");
    let mut req = Request::new(query.name().clone(), query.query_type(), src, Proto::Udp);
    req.set_query(query);
    req.id = msg.metadata.id;
    req.edns = msg.edns.clone();
    req.size = data.len();
    let log = LogConfig {
        rules: vec![Rule {
            names: vec![".".into()],
            format: COMMON.into(),
            classes: Classes::ALL,
        }],
    };
    let chain = Chain::new(vec![
        Arc::new(Errors::new(ErrorsConfig::default())),
        Arc::new(Log::new(log)),
        Arc::new(Whoami),
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    if let Ok(resp) = rt.block_on(chain.run(&req)) {
        let _ = resp.msg.to_vec();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_do_not_panic() {
        let corefiles: &[&[u8]] = &[
            b"",
            b"{",
            b"}",
            b".:53 {",
            b"(a) {\n import a\n}\n.:53 {\n import a\n}",
            b".:53 {\n health {\n lameduck\n",
            b"\"unterminated",
            b"a, b, {",
            b"10.0.0.0/999 {}",
            b"\xff\xfe\x00",
            b"import",
            b".:53 {\n log {\n class\n }\n}",
        ];
        for c in corefiles {
            super::corefile(c);
        }
        let mut q = vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        q.extend_from_slice(&[3, b'w', b'w', b'w', 0, 0, 1, 0, 1]);
        super::message(&q);
        for z in [
            &b""[..],
            b"@ IN SOA ns hm 1 2 3 4 5\nx IN TXT \"end",
            b"@ IN SOA ns hm 1 2 3 4 5\n* IN CNAME *\nwww IN DNAME www\n",
            b"$INCLUDE /etc/passwd\n",
            b"@ IN SOA ns hm 1 2 3 4 5\na IN CNAME b\nb IN CNAME a\nsub NS ns.sub\n",
            b"( ( ( \"",
        ] {
            super::zonefile(z);
        }
        super::message(&[0; 12]);
        super::message(&[0xff; 40]);
    }
}
