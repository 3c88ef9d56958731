//! CoreDNS's plugin/log/log_test.go tables, through the binary: each case is a Corefile whose
//! `log` rule matches the Go test's Rule, queries over UDP, and the `[INFO]` lines the process
//! prints. The Go tests' client is 10.240.0.1:40212; here it is this test's socket.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::util::{free_port, query};

const BIN: &str = env!("CARGO_BIN_EXE_clusterdns");

struct Proc {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Proc {
    fn start(corefile: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Corefile");
        std::fs::write(&path, corefile).unwrap();
        let mut child = Command::new(BIN)
            .arg("-quiet")
            .arg("-conf")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let l = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                l.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
            _dir: dir,
        }
    }

    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn ask(sock: &UdpSocket, port: u16, name: &str, t: RecordType) -> Option<Message> {
    // Labels as bytes: `%` is a valid label byte, which from_ascii refuses.
    let mut q = query("x.", t, None);
    let labels: Vec<&[u8]> = name
        .trim_end_matches('.')
        .split('.')
        .map(str::as_bytes)
        .collect();
    let mut n = hickory_proto::rr::Name::from_labels(labels).unwrap();
    n.set_fqdn(true);
    q.queries[0].set_name(n);
    sock.send_to(&q.to_vec().unwrap(), ("127.0.0.1", port))
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await {
        Ok(Ok(n)) => Some(Message::from_vec(&buf[..n]).unwrap()),
        _ => None,
    }
}

/// Starts `block` (a server block body) on a free port, waits until it answers (a TXT probe for
/// `probe.invalid.`), asks `name` A once, and returns the rcode, the client's address and the
/// printed query lines.
async fn run(block: &str, name: &str) -> (ResponseCode, String, Vec<String>) {
    let port = free_port();
    let p = Proc::start(&format!(".:{port} {{\n bind 127.0.0.1\n{block}\n}}\n"));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = sock.local_addr().unwrap().to_string();
    let mut up = false;
    for _ in 0..100 {
        if ask(&sock, port, "probe.invalid.", RecordType::TXT)
            .await
            .is_some()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server for {block} did not answer");
    let r = ask(&sock, port, name, RecordType::A)
        .await
        .expect("a reply");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let lines = p
        .stop()
        .into_iter()
        .filter(|l| {
            l.starts_with("[INFO] ")
                && !l.contains("probe.invalid")
                && !l.contains("TXT IN")
                && !l.starts_with("[INFO] plugin/")
                && !l.starts_with("[INFO] SIGTERM")
        })
        .collect();
    (r.metadata.response_code, client, lines)
}

fn logged(lines: &[String], s: &str) -> bool {
    lines.iter().any(|l| l.contains(s))
}

// plugin/log/log_test.go: TestLoggedStatus, TestLoggedClassDenial, TestLoggedClassError,
// TestLoggedSynthesizesDeferredServerFailure (the next plugin fails: SERVFAIL), and
// TestLoggedSynthesizesDeferredRefused (the next plugin refuses: acl).
#[tokio::test]
async fn logged_status_and_classes() {
    let (rcode, _, lines) = run(" log", "example.org.").await;
    assert_eq!(rcode, ResponseCode::ServFail);
    assert!(
        logged(&lines, "A IN example.org. udp 29 false 512"),
        "{lines:?}"
    );
    assert!(
        logged(&lines, "SERVFAIL") && !logged(&lines, "\"OTHERERROR "),
        "{lines:?}"
    );
    // {duration}: seconds as a decimal with an `s` (Go's FormatFloat(…, 'f', -1, 64) + "s").
    let dur = lines[0].rsplit(' ').next().unwrap();
    assert!(
        dur.ends_with('s') && dur[..dur.len() - 1].parse::<f64>().is_ok_and(|d| d >= 0.0),
        "{lines:?}"
    );

    let (_, _, lines) = run(" log . {\n  class denial\n }", "example.org.").await;
    assert!(lines.is_empty(), "{lines:?}");

    let (_, _, lines) = run(" log . {\n  class error\n }", "example.org.").await;
    assert!(logged(&lines, "SERVFAIL"), "{lines:?}");

    let (rcode, _, lines) = run(" log\n acl {\n  block type A\n }", "example.org.").await;
    assert_eq!(rcode, ResponseCode::Refused);
    assert!(logged(&lines, "REFUSED"), "{lines:?}");
}

// plugin/log/log_test.go: TestLoggedClassNameErrorWithoutSOA (2 cases): an NXDOMAIN without
// SOA is a denial, not an error.
#[tokio::test]
async fn logged_class_name_error_without_soa() {
    let nx = "\n template ANY ANY {\n  rcode NXDOMAIN\n }";
    let (rcode, _, lines) = run(
        &format!(" log . {{\n  class error\n }}{nx}"),
        "1.1.168.192.in-addr.arpa.",
    )
    .await;
    assert_eq!(rcode, ResponseCode::NXDomain);
    assert!(lines.is_empty(), "{lines:?}");
    let (_, _, lines) = run(
        &format!(" log . {{\n  class denial\n }}{nx}"),
        "1.1.168.192.in-addr.arpa.",
    )
    .await;
    assert!(logged(&lines, "NXDOMAIN"), "{lines:?}");
}

// plugin/log/log_test.go: TestLogged (7 cases: name scopes, formats).
#[tokio::test]
async fn test_logged() {
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        (
            " log example.org.",
            "example.org.",
            Some("A IN example.org."),
            None,
        ),
        (" log example.org.", "example.net.", None, None),
        (
            " log example.org.\n log example.net.",
            "example.net.",
            Some("A IN example.net."),
            None,
        ),
        (
            " log . \"{type} {class}\"",
            "example.org.",
            Some("A IN"),
            Some("example.org"),
        ),
        (
            " log . {remote}:{port}",
            "example.org.",
            Some("{client}"),
            Some("A IN example.org"),
        ),
        (" log . {combined}", "example.org.", Some("\"0\""), None),
        // CoreDNS prints `foo.%s.example.org.`; names are printed in hickory's presentation form,
        // which escapes `%` (listed in the log README's Compatibility section).
        (
            " log . {combined}",
            "foo.%s.example.org.",
            Some("foo.\\%s.example.org."),
            Some("%!s(MISSING)"),
        ),
    ];
    for (block, name, should, should_not) in cases {
        let (_, client, lines) = run(block, name).await;
        match should {
            None => assert!(lines.is_empty(), "{block} {name}: {lines:?}"),
            Some(s) => {
                let s = s.replace("{client}", &client);
                assert!(logged(&lines, &s), "{block} {name}: want {s} in {lines:?}");
            }
        }
        if let Some(n) = should_not {
            assert!(!logged(&lines, n), "{block} {name}: {lines:?}");
        }
    }
}

/// Starts `block`, waits until it answers, asks each name A `times` times, waits `settle`, and
/// returns every `[…]` line the process printed (startup and shutdown lines left out).
async fn run_many(block: &str, asks: &[(&str, usize)], settle: Duration) -> Vec<String> {
    let port = free_port();
    let p = Proc::start(&format!(".:{port} {{\n bind 127.0.0.1\n{block}\n}}\n"));
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut up = false;
    for _ in 0..100 {
        if ask(&sock, port, "probe.invalid.", RecordType::TXT)
            .await
            .is_some()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server for {block} did not answer");
    for (name, times) in asks {
        for _ in 0..*times {
            ask(&sock, port, name, RecordType::A)
                .await
                .expect("a reply");
        }
    }
    tokio::time::sleep(settle).await;
    p.stop()
        .into_iter()
        .filter(|l| {
            !l.contains("probe.invalid")
                && !l.starts_with("[INFO] plugin/reload")
                && !l.starts_with("[INFO] SIGTERM")
        })
        .collect()
}

// plugin/errors/errors_test.go: TestErrors (a success is not logged; an error is
// `RCODE NAME TYPE: ERROR` at ERROR), TestLogPattern (the summary line at the pattern's level:
// warning, info, error; debug needs the *debug* plugin), TestShowFirst (the first error is
// shown at the pattern's level; a summary only for more than one).
#[tokio::test]
async fn errors_lines_and_consolidation() {
    let block = r#" errors {
  consolidate 2s "no match" warning
  consolidate 2s "rcode SERVFAIL" info show_first
  consolidate 2s "index out of range" error show_first
 }
 template IN A a.test {
  match ^x[.]a[.]test[.]$
 }
 template IN A b.test {
  rcode SERVFAIL
 }
 template IN A c.test {
  answer "{{ .Name }} 60 IN A 192.0.2.{{ index .Match 5 }}"
 }"#;
    let lines = run_many(
        block,
        &[
            ("x.a.test.", 1),
            ("y.a.test.", 4),
            ("x.b.test.", 3),
            ("x.c.test.", 1),
            ("d.test.", 1),
        ],
        Duration::from_millis(2600),
    )
    .await;
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    assert!(!has("x.a.test."), "a success is not logged: {lines:?}");
    assert!(
        has("[WARNING] plugin/errors: 4 errors like 'no match' occurred in last 2s"),
        "{lines:?}"
    );
    assert!(
        !has("y.a.test."),
        "consolidated without show_first: {lines:?}"
    );
    assert!(
        has("[INFO] plugin/errors: 2 x.b.test. A: plugin/template: rcode SERVFAIL"),
        "{lines:?}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.contains("x.b.test.")).count(),
        1,
        "only the first is shown: {lines:?}"
    );
    assert!(
        has("[INFO] plugin/errors: 3 errors like 'rcode SERVFAIL' occurred in last 2s"),
        "{lines:?}"
    );
    assert!(has("[ERROR] plugin/errors: 2 x.c.test. A: "), "{lines:?}");
    assert!(
        !has("errors like 'index out of range'"),
        "one error, no summary: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("[ERROR] plugin/errors: 2 d.test. A: ")
                && l.contains("no next plugin found")),
        "{lines:?}"
    );
}
