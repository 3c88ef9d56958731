//! The encrypted server transports over real sockets: `tls://` (DNS over TLS) with Debian's
//! `kdig +tls` and a rustls client (client authentication), `https://` (DNS over HTTPS) with
//! `kdig +https`, `curl` (GET and POST, HTTP/1.1 and HTTP/2) and raw requests; the metric labels
//! CoreDNS gives them.

use std::net::SocketAddr;
use std::process::Command;

use base64::Engine;
use clusterdns::corefile::Transport;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::{TestServer, fixture, http_get, query, start};

/// The bound address of the server's listener of `transport`.
fn addr(s: &TestServer, transport: Transport) -> SocketAddr {
    s.running
        .addrs
        .iter()
        .find(|(t, _)| *t == transport)
        .map(|(_, a)| *a)
        .unwrap_or_else(|| panic!("no {transport} listener in {:?}", s.running.addrs))
}

/// Runs a command off the runtime (the server under test runs on it) and returns its stdout.
async fn run(cmd: &str, args: Vec<String>) -> (bool, String, String) {
    let cmd = cmd.to_string();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(&cmd)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{cmd} (installed by .ci/run): {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn corefile(scheme: &str, tls: &str) -> String {
    format!(
        "{scheme}://.:0 {{\n bind 127.0.0.1\n {tls}\n prometheus 127.0.0.1:0\n hosts {{\n  192.0.2.10 dot.example.\n  fallthrough\n }}\n}}\n"
    )
}

fn tls_line(extra: &str) -> String {
    format!("tls {} {} {extra}", fixture("dot.crt"), fixture("dot.key"))
}

async fn metrics(s: &TestServer) -> String {
    http_get(s.http("127.0.0.1:0"), "/metrics").await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_answers_kdig_and_counts_as_tcp_under_the_tls_server_label() {
    let s = start(&corefile("tls", &tls_line("")), vec![]).await;
    let a = addr(&s, Transport::Tls);
    let (ok, out, err) = run(
        "kdig",
        vec![
            "@127.0.0.1".into(),
            "-p".into(),
            a.port().to_string(),
            format!("+tls-ca={}", fixture("dot-ca.crt")),
            "+tls-hostname=dns.test".into(),
            "dot.example".into(),
            "A".into(),
        ],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("192.0.2.10"), "{out}");
    assert!(out.contains("TLS"), "kdig did not use TLS: {out}");
    // CoreDNS: server="tls://HOST:PORT" as configured, proto="tcp".
    let text = metrics(&s).await;
    assert!(
        text.contains(r#"coredns_dns_requests_total{family="1",proto="tcp",server="tls://127.0.0.1:0",type="A",view="",zone="."} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"coredns_dns_responses_total{plugin="hosts",rcode="NOERROR",server="tls://127.0.0.1:0",view="",zone="."} 1"#),
        "{text}"
    );
    // A client that does not trust the server's CA gets no answer.
    let (ok, out, _) = run(
        "kdig",
        vec![
            "@127.0.0.1".into(),
            "-p".into(),
            a.port().to_string(),
            format!("+tls-ca={}", fixture("client-ca.crt")),
            "+tls-hostname=dns.test".into(),
            "+retry=0".into(),
            "dot.example".into(),
        ],
    )
    .await;
    assert!(!ok || !out.contains("192.0.2.10"), "{out}");
    s.running.shutdown().await;
}

async fn dot_exchange(addr: SocketAddr, client: Option<(&str, &str)>) -> Result<Message, String> {
    crate::util::dot(addr, &query("dot.example.", RecordType::A, None), client).await
}

fn answered(r: &Result<Message, String>) -> bool {
    r.as_ref().is_ok_and(|m| {
        m.answers.iter().any(
            |a| matches!(a.data, RData::A(ip) if ip.0 == std::net::Ipv4Addr::new(192, 0, 2, 10)),
        )
    })
}

/// CoreDNS's `client_auth` modes are Go's `tls.ClientAuthType`s: which clients get through.
#[tokio::test]
async fn client_auth_modes() {
    let ca = fixture("client-ca.crt");
    // (mode, no certificate, a certificate the CA signed, a self-signed certificate)
    let table: &[(&str, bool, bool, bool)] = &[
        ("nocert", true, true, true),
        ("request", true, true, true),
        ("require", false, true, true),
        ("verify_if_given", true, true, false),
        ("require_and_verify", false, true, false),
    ];
    for &(mode, none, signed, rogue) in table {
        let tls = tls_line(&format!("{ca} {{\n  client_auth {mode}\n }}"));
        let s = start(&corefile("tls", &tls), vec![]).await;
        let a = addr(&s, Transport::Tls);
        let got = (
            answered(&dot_exchange(a, None).await),
            answered(&dot_exchange(a, Some(("client.crt", "client.key"))).await),
            answered(&dot_exchange(a, Some(("rogue.crt", "rogue.key"))).await),
        );
        assert_eq!(got, (none, signed, rogue), "client_auth {mode}");
        s.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_client_certificate_with_kdig() {
    let tls = tls_line(&format!(
        "{} {{\n  client_auth require_and_verify\n }}",
        fixture("client-ca.crt")
    ));
    let s = start(&corefile("tls", &tls), vec![]).await;
    let port = addr(&s, Transport::Tls).port().to_string();
    let base = vec![
        "@127.0.0.1".to_string(),
        "-p".into(),
        port,
        format!("+tls-ca={}", fixture("dot-ca.crt")),
        "+tls-hostname=dns.test".into(),
        "+retry=0".into(),
    ];
    let mut with_cert = base.clone();
    with_cert.extend([
        format!("+tls-certfile={}", fixture("client.crt")),
        format!("+tls-keyfile={}", fixture("client.key")),
        "dot.example".into(),
    ]);
    let (ok, out, err) = run("kdig", with_cert).await;
    assert!(ok && out.contains("192.0.2.10"), "{out}{err}");
    let mut without = base;
    without.push("dot.example".into());
    let (_, out, _) = run("kdig", without).await;
    assert!(!out.contains("192.0.2.10"), "{out}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn tls_scheme_without_tls_directive_serves_plain_tcp() {
    // CoreDNS: no *tls* plugin, no encryption.
    let s = start(&corefile("tls", ""), vec![]).await;
    let r = crate::util::tcp(
        addr(&s, Transport::Tls),
        &query("dot.example.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_answers_kdig_post_and_get() {
    let s = start(&corefile("https", &tls_line("")), vec![]).await;
    let port = addr(&s, Transport::Https).port().to_string();
    for (method, session) in [("+https", "HTTP/2-POST"), ("+https-get", "HTTP/2-GET")] {
        let (ok, out, err) = run(
            "kdig",
            vec![
                "@127.0.0.1".into(),
                "-p".into(),
                port.clone(),
                format!("+tls-ca={}", fixture("dot-ca.crt")),
                "+tls-hostname=dns.test".into(),
                method.into(),
                "dot.example".into(),
                "A".into(),
            ],
        )
        .await;
        assert!(ok, "{method}: {out}{err}");
        assert!(out.contains("status: NOERROR"), "{method}: {out}");
        assert!(out.contains("192.0.2.10"), "{method}: {out}");
        assert!(
            out.contains(&format!("HTTP session ({session})")),
            "{method}: kdig did not use DoH: {out}"
        );
    }
    let text = metrics(&s).await;
    assert!(
        text.contains(
            r#"coredns_dns_https_responses_total{server="https://127.0.0.1:0",status="200"} 2"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"coredns_dns_requests_total{family="1",proto="tcp",server="https://127.0.0.1:0",type="A",view="",zone="."} 2"#),
        "{text}"
    );
    s.running.shutdown().await;
}

/// curl's DoH requests: the reply, its media type and `Cache-Control: max-age` (the smallest TTL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_answers_curl_get_and_post_over_http1_and_http2() {
    let s = start(&corefile("https", &tls_line("")), vec![]).await;
    let port = addr(&s, Transport::Https).port();
    let url = format!("https://127.0.0.1:{port}/dns-query");
    let wire = query("dot.example.", RecordType::A, None).to_vec().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&wire);
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("query.bin");
    std::fs::write(&body, &wire).unwrap();
    for http in ["--http1.1", "--http2"] {
        for post in [false, true] {
            let out = dir.path().join("reply.bin");
            let mut args = vec![
                "-sS".to_string(),
                http.into(),
                "--cacert".into(),
                fixture("dot-ca.crt"),
                "-D".into(),
                "-".into(),
                "-o".into(),
                out.display().to_string(),
                "-H".into(),
                "accept: application/dns-message".into(),
            ];
            if post {
                args.extend([
                    "-H".into(),
                    "content-type: application/dns-message".into(),
                    "--data-binary".into(),
                    format!("@{}", body.display()),
                    url.clone(),
                ]);
            } else {
                args.push(format!("{url}?dns={b64}"));
            }
            let (ok, headers, err) = run("curl", args).await;
            let what = format!("{http} post={post}");
            assert!(ok, "{what}: {err}");
            let h = headers.to_ascii_lowercase();
            let want_version = if http == "--http2" {
                "http/2 200"
            } else {
                "http/1.1 200"
            };
            assert!(h.starts_with(want_version), "{what}: {headers}");
            assert!(
                h.contains("content-type: application/dns-message"),
                "{what}: {headers}"
            );
            // hosts answers with TTL 3600; max-age is the smallest TTL, capped at 3600.
            assert!(
                h.contains("cache-control: max-age=3600"),
                "{what}: {headers}"
            );
            let reply = Message::from_vec(&std::fs::read(&out).unwrap()).unwrap();
            assert_eq!(reply.metadata.id, 4242, "{what}");
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::NoError,
                "{what}"
            );
            assert_eq!(reply.answers.len(), 1, "{what}");
        }
    }
    // Off the path: 404; no DNS message: 400 (CoreDNS's codes), both counted.
    for (path, want) in [
        ("/other".to_string(), "404"),
        ("/dns-query".to_string(), "400"),
        ("/dns-query?dns=!!".to_string(), "400"),
        (format!("/dns-query?dns={b64}&dns={b64}"), "400"),
    ] {
        let (ok, out, err) = run(
            "curl",
            vec![
                "-s".into(),
                "--cacert".into(),
                fixture("dot-ca.crt"),
                "-o".into(),
                "/dev/null".into(),
                "-w".into(),
                "%{http_code}".into(),
                format!("https://127.0.0.1:{port}{path}"),
            ],
        )
        .await;
        assert!(ok, "{path}: {err}");
        assert_eq!(out, want, "{path}");
    }
    let text = metrics(&s).await;
    for line in [
        r#"coredns_dns_https_responses_total{server="https://127.0.0.1:0",status="200"} 4"#,
        r#"coredns_dns_https_responses_total{server="https://127.0.0.1:0",status="404"} 1"#,
        r#"coredns_dns_https_responses_total{server="https://127.0.0.1:0",status="400"} 3"#,
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
    s.running.shutdown().await;
}

/// A POST body over 64 KiB is refused (400) without being read whole.
#[tokio::test]
async fn doh_plain_http_without_tls_and_oversized_post() {
    let s = start(&corefile("https", ""), vec![]).await;
    let a = addr(&s, Transport::Https);
    let wire = query("dot.example.", RecordType::A, None).to_vec().unwrap();
    let mut c = TcpStream::connect(a).await.unwrap();
    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Type: application/dns-message\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        wire.len()
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c.write_all(&wire).await.unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &out[out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..];
    assert_eq!(Message::from_vec(body).unwrap().answers.len(), 1);

    let mut c = TcpStream::connect(a).await.unwrap();
    let head =
        "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Length: 70000\r\nConnection: close\r\n\r\n";
    c.write_all(head.as_bytes()).await.unwrap();
    let _ = c.write_all(&vec![0u8; 70_000]).await;
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    s.running.shutdown().await;
}

#[tokio::test]
async fn a_block_serves_dns_tls_and_https_side_by_side() {
    let text = format!(
        ".:0 tls://.:0 https://.:0 {{\n bind 127.0.0.1\n {}\n hosts {{\n  192.0.2.10 dot.example.\n }}\n}}\n",
        tls_line("")
    );
    let s = start(&text, vec![]).await;
    let kinds: Vec<Transport> = s.running.addrs.iter().map(|(t, _)| *t).collect();
    assert_eq!(kinds, [Transport::Dns, Transport::Tls, Transport::Https]);
    let r = crate::util::udp(s.dns(), &query("dot.example.", RecordType::A, None)).await;
    assert_eq!(r.answers.len(), 1);
    assert!(answered(
        &dot_exchange(addr(&s, Transport::Tls), None).await
    ));
    s.running.shutdown().await;
}

/// `prometheus { tls web.yml }`: /metrics over HTTPS with the exporter-toolkit file's
/// certificate and client authentication, checked with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_tls_serves_metrics_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {}\n",
            fixture("dot.crt"),
            fixture("dot.key"),
            fixture("client-ca.crt")
        ),
    )
    .unwrap();
    let corefile = format!(
        ".:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:0 {{\n  tls {}\n }}\n whoami\n}}\n",
        web.display()
    );
    let s = start(&corefile, vec![]).await;
    crate::util::udp(s.dns(), &query("a.example.", RecordType::A, None)).await;
    let url = format!("https://127.0.0.1:{}/metrics", s.http("127.0.0.1:0").port());
    let curl = |extra: Vec<String>| {
        let mut args = vec!["-sS".to_string(), "--cacert".into(), fixture("dot-ca.crt")];
        args.extend(extra);
        args.push(url.clone());
        run("curl", args)
    };
    let (ok, out, err) = curl(vec![
        "--cert".into(),
        fixture("client.crt"),
        "--key".into(),
        fixture("client.key"),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("coredns_dns_requests_total{"), "{out}");
    // Without a client certificate the handshake fails; plain HTTP gets nothing either.
    let (ok, out, _) = curl(vec![]).await;
    assert!(!ok && !out.contains("coredns_"), "{out}");
    let (_, out, _) = run(
        "curl",
        vec!["-s".into(), url.replace("https://", "http://")],
    )
    .await;
    assert!(!out.contains("coredns_"), "{out}");
    s.running.shutdown().await;
}

/// `https { max_connections 1 }`: a second connection is served only once the first is gone
/// (accepting waits, as Go's `LimitListener`).
#[tokio::test]
async fn https_max_connections_holds_further_connections() {
    let s = start(
        "https://.:0 {\n bind 127.0.0.1\n https {\n  max_connections 1\n }\n hosts {\n  192.0.2.10 dot.example.\n }\n}\n",
        vec![],
    )
    .await;
    let a = addr(&s, Transport::Https);
    let wire = query("dot.example.", RecordType::A, None).to_vec().unwrap();
    let request = format!(
        "POST /dns-query HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        wire.len()
    );
    let first = TcpStream::connect(a).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut second = TcpStream::connect(a).await.unwrap();
    second.write_all(request.as_bytes()).await.unwrap();
    second.write_all(&wire).await.unwrap();
    let mut buf = [0u8; 12];
    let waited =
        tokio::time::timeout(std::time::Duration::from_millis(500), second.read(&mut buf)).await;
    assert!(waited.is_err(), "served past max_connections");
    drop(first);
    let mut out = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        second.read_to_end(&mut out),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    s.running.shutdown().await;
}
