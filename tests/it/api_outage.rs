//! The binary's own output through an API outage, and its start-up without system CA roots.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::kubernetes::{fake_api, post};
use crate::util::{free_port, http_get, query, udp};

const BIN: &str = env!("CARGO_BIN_EXE_clusterdns");

/// The binary with standard output and standard error read line by line, with arrival times.
struct Server {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(corefile: &str, env: &[(&str, &str)]) -> (Self, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Corefile");
        std::fs::write(&path, corefile).unwrap();
        let mut child = Command::new(BIN)
            .arg("-quiet")
            .arg("-conf")
            .arg(&path)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { return };
                    lines.lock().unwrap().push((Instant::now(), line));
                }
            }));
        }
        (
            Self {
                child,
                lines,
                readers,
            },
            dir,
        )
    }

    /// SIGTERM, wait, and every line it printed.
    fn stop(mut self) -> Vec<(Instant, String)> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(port: u16) {
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err()
        || http_get(addr, "/ready").await.0 != 200
    {
        assert!(t.elapsed() < Duration::from_secs(20), "not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything the binary prints while its API answers 500 and then disappears (fakeapi.py
/// killed): CoreDNS's `[LEVEL] plugin/NAME: message` lines, the kubernetes plugin's naming the
/// API, none from kube-client's own request tracing, and the same line no more often than
/// once per back-off step. It keeps answering from the last good objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_outage_lines_are_coredns_shaped_name_the_api_and_back_off() {
    let api = fake_api("tests/conformance/fixtures/watch.yaml");
    let url = api.url.clone();
    let (dns, ready) = (free_port(), free_port());
    let (server, _dir) = Server::start(
        &format!(
            ".:{dns} {{\n bind 127.0.0.1\n errors\n ready 127.0.0.1:{ready}\n kubernetes cluster.local {{\n  endpoint {url}\n }}\n}}\n"
        ),
        &[],
    );
    wait_ready(ready).await;
    let addr = format!("127.0.0.1:{dns}").parse().unwrap();
    let web = query("web.ns1.svc.cluster.local.", RecordType::A, None);
    assert_eq!(
        udp(addr, &web).await.metadata.response_code,
        ResponseCode::NoError
    );

    // The API fails every request, and the running watches are cut: relists get 500.
    post(&api, "/_control/fail?status=500&count=-1", "");
    post(&api, "/_control/drop-watches", "");
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The API goes away: connections are refused.
    drop(api);
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        udp(addr, &web).await.metadata.response_code,
        ResponseCode::NoError,
        "the last good objects keep answering"
    );
    let lines = server.stop();
    let text = lines
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");

    let shape =
        regex::Regex::new(r"^\[(INFO|WARNING|ERROR|DEBUG)\] (plugin/[a-z0-9_]+: )?\S").unwrap();
    for (_, l) in &lines {
        assert!(shape.is_match(l), "not CoreDNS's shape: {l}\n\n{text}");
        assert!(
            !l.contains("failed with error") && !l.contains("failed with status"),
            "kube-client's request trace: {l}"
        );
        let api_side = [
            "watch", "Watch", "API", "kube", "hyper", "rustls", "connect",
        ]
        .iter()
        .any(|w| l.contains(w));
        if api_side && !l.starts_with("[INFO]") {
            assert!(
                l.contains("] plugin/kubernetes: ") && l.contains(&url),
                "an API failure line without the plugin or the API's URL {url}: {l}"
            );
        }
    }
    let failed = |needle: &str| {
        lines.iter().any(|(_, l)| {
            l.starts_with("[ERROR] plugin/kubernetes: Failed to watch") && l.contains(needle)
        })
    };
    assert!(failed("500"), "no line for the API's 500s:\n{text}");
    assert!(
        failed("Connection refused"),
        "no line for the refused connections:\n{text}"
    );

    // Repeats: the same line again only after a back-off step (1 s, doubling).
    let suffix = regex::Regex::new(r" \(\d+ more since the last such line\)$").unwrap();
    let mut last: std::collections::HashMap<String, (Instant, Duration)> = Default::default();
    let mut during_outage = std::collections::HashMap::<String, usize>::new();
    for (at, l) in lines.iter().filter(|(_, l)| !l.starts_with("[INFO]")) {
        let key = suffix.replace(l, "").to_string();
        if *at > outage {
            *during_outage.entry(key.clone()).or_default() += 1;
        }
        if let Some((prev, step)) = last.get(&key) {
            let gap = at.duration_since(*prev);
            assert!(
                gap + Duration::from_millis(100) >= *step,
                "{key}\nrepeated after {gap:?}, back-off step {step:?}\n\n{text}"
            );
            last.insert(key, (*at, (*step * 2).min(Duration::from_secs(30))));
        } else {
            last.insert(key, (*at, Duration::from_secs(1)));
        }
    }
    // 8 s of outage: printed at most at 0, 1, 3 and 7 s of each distinct failure.
    for (key, n) in during_outage {
        assert!(n <= 4, "{n} times in 8 s: {key}\n\n{text}");
    }
}

/// An image has no system CA bundle (SSL_CERT_FILE/SSL_CERT_DIR point at nothing here): a plain
/// HTTP API, or one whose CA is in the kubeconfig, must not need one (it failed with "No CA
/// certificates were loaded from the system").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_system_ca_roots_when_the_api_needs_none() {
    const NO_ROOTS: &[(&str, &str)] = &[
        ("SSL_CERT_FILE", "/nonexistent/ca.crt"),
        ("SSL_CERT_DIR", "/nonexistent"),
    ];
    let api = fake_api("tests/conformance/fixtures/watch.yaml");
    let dir = tempfile::tempdir().unwrap();
    let fixtures = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let ca = std::fs::read(format!("{fixtures}/dot-ca.crt")).unwrap();
    let b64 = {
        use std::io::Write;
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&ca).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let kubeconfig = |server: &str, ca: &str| {
        let path = dir.path().join(format!("kubeconfig-{}", ca.len()));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{server}\"{ca}}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
            ),
        )
        .unwrap();
        path
    };
    // Plain HTTP, no CA anywhere: serves, synced.
    let (dns, ready) = (free_port(), free_port());
    let plain = kubeconfig(&api.url, "");
    let (server, _d) = Server::start(
        &format!(
            ".:{dns} {{\n bind 127.0.0.1\n ready 127.0.0.1:{ready}\n kubernetes cluster.local {{\n  kubeconfig {} x\n }}\n}}\n",
            plain.display()
        ),
        NO_ROOTS,
    );
    wait_ready(ready).await;
    let addr = format!("127.0.0.1:{dns}").parse().unwrap();
    let web = query("web.ns1.svc.cluster.local.", RecordType::A, None);
    assert_eq!(
        udp(addr, &web).await.metadata.response_code,
        ResponseCode::NoError
    );
    let lines = server.stop();
    assert!(!lines.iter().any(|(_, l)| l.contains("CA")), "{lines:?}");

    // HTTPS with the CA in the kubeconfig, and `endpoint` with `tls CERT KEY CA` (nothing
    // listens: the client is built, the watches fail and retry): the server starts and serves
    // after startup_timeout.
    let tls = kubeconfig(
        &format!("https://127.0.0.1:{}", free_port()),
        &format!(", certificate-authority-data: {b64}"),
    );
    for source in [
        format!("kubeconfig {} x", tls.display()),
        format!(
            "endpoint https://127.0.0.1:{}\n  tls {fixtures}/dot.crt {fixtures}/dot.key {fixtures}/dot-ca.crt",
            free_port()
        ),
    ] {
        let (dns, health) = (free_port(), free_port());
        let (server, _d) = Server::start(
            &format!(
                ".:{dns} {{\n bind 127.0.0.1\n health 127.0.0.1:{health}\n kubernetes cluster.local {{\n  {source}\n  startup_timeout 1s\n }}\n}}\n"
            ),
            NO_ROOTS,
        );
        let haddr = format!("127.0.0.1:{health}").parse().unwrap();
        let t = Instant::now();
        while tokio::net::TcpStream::connect(haddr).await.is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "{source}: never served /health"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(http_get(haddr, "/health").await.0, 200);
        let lines = server.stop();
        assert!(
            !lines.iter().any(|(_, l)| l.contains("No CA certificates")),
            "{source}: {lines:?}"
        );
    }
}
