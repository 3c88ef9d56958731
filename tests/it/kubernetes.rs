//! The kubernetes plugin's sources, end to end: the snapshot file re-read on change, and the
//! API source's metrics against the conformance kit's fake API server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::util::{http_get, query, start, udp};

const ONE: &str = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Namespace, metadata: {name: ns1}}\n- {apiVersion: v1, kind: Service, metadata: {name: a, namespace: ns1}, spec: {clusterIP: 10.0.0.1, ports: [{port: 80}]}}\n";

async fn rcode(addr: std::net::SocketAddr, name: &str) -> ResponseCode {
    udp(addr, &query(name, RecordType::A, None))
        .await
        .metadata
        .response_code
}

#[tokio::test]
async fn snapshot_is_reread_and_a_broken_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, ONE).unwrap();
    let s = start(
        &format!(
            "cluster.local:0 {{\n bind 127.0.0.1\n kubernetes {{\n  snapshot {}\n }}\n}}\n",
            file.display()
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    assert_eq!(
        rcode(dns, "a.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    assert_eq!(
        rcode(dns, "b.ns1.svc.cluster.local.").await,
        ResponseCode::NXDomain
    );
    // mtime granularity: make sure the rewrite is seen as a change.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let two = format!(
        "{ONE}- {{apiVersion: v1, kind: Service, metadata: {{name: b, namespace: ns1}}, spec: {{clusterIP: 10.0.0.2, ports: [{{port: 80}}]}}}}\n"
    );
    std::fs::write(&file, two).unwrap();
    let t = Instant::now();
    while rcode(dns, "b.ns1.svc.cluster.local.").await != ResponseCode::NoError {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "snapshot change not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&file, "items: [ {kind: Service, metadata: {name: [").unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        rcode(dns, "b.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    s.running.shutdown().await;
}

pub(crate) struct FakeApi {
    child: Child,
    pub(crate) url: String,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn fake_api(fixture: &str) -> FakeApi {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = crate::util::python3()
        .arg(format!("{root}/../shared/conformance/fakeapi.py"))
        .args(["--fixture", &format!("{root}/{fixture}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 for the fake API server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    FakeApi {
        child,
        url: format!("http://{addr}"),
    }
}

pub(crate) fn post(api: &FakeApi, path: &str, body: &str) {
    let url = format!("{}{path}", api.url);
    let out = Command::new("curl")
        .args(["-sf", "-X", "POST", "--data-binary", body, &url])
        .output()
        .expect("curl");
    assert!(out.status.success(), "POST {path}");
}

#[tokio::test]
async fn api_source_metrics() {
    let api = fake_api("tests/conformance/fixtures/watch.yaml");
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n prometheus 127.0.0.1:0\n kubernetes cluster.local {{\n  endpoint {}\n }}\n}}\n",
            api.url
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    assert_eq!(
        rcode(dns, "web.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    // An EndpointSlice change carrying the trigger-time annotation is programming latency.
    let now = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let now = String::from_utf8_lossy(&now.stdout).trim().to_string();
    post(
        &api,
        "/_control/apply",
        &format!(
            "{{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":{{\"name\":\"db-1\",\"namespace\":\"ns1\",\"labels\":{{\"kubernetes.io/service-name\":\"db\"}},\"annotations\":{{\"endpoints.kubernetes.io/last-change-trigger-time\":\"{now}\"}}}},\"addressType\":\"IPv4\",\"endpoints\":[{{\"addresses\":[\"10.244.0.12\"],\"hostname\":\"db-5\"}}]}}"
        ),
    );
    let t = Instant::now();
    while rcode(dns, "db-5.db.ns1.svc.cluster.local.").await != ResponseCode::NoError {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "slice change not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, text) = http_get(s.http("127.0.0.1:0"), "/metrics").await;
    for want in [
        "coredns_kubernetes_dns_programming_duration_seconds_count{service_kind=\"headless_with_selector\"} 1",
        "clusterdns_kubernetes_objects{kind=\"service\"} 3",
        "clusterdns_kubernetes_objects{kind=\"endpointslice\"} 1",
        "clusterdns_kubernetes_sync_seconds ",
        "coredns_kubernetes_rest_client_requests_total{code=\"200\",host=",
    ] {
        assert!(text.contains(want), "missing {want}\n{text}");
    }
    s.running.shutdown().await;
}

fn api_requests(api: &FakeApi) -> u64 {
    let out = Command::new("curl")
        .args(["-sf", &format!("{}/_control/state", api.url)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let i = text.find("\"requests\":").expect("requests in state") + 11;
    text[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A reload whose kubernetes block watches the same objects keeps the running watches: no new
/// list or watch request, and the new configuration answers cluster names at once.
#[tokio::test]
async fn reload_reuses_the_running_watches() {
    let api = fake_api("tests/conformance/fixtures/watch.yaml");
    let port = crate::util::free_port();
    let corefile = |extra: &str| {
        format!(
            "cluster.local:{port} {{\n bind 127.0.0.1\n kubernetes {{\n  endpoint {}\n }}\n}}\n{extra}",
            api.url
        )
    };
    let mut s = start(&corefile(""), vec![]).await;
    let dns = s.dns();
    assert_eq!(
        rcode(dns, "web.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = api_requests(&api);
    // Same port for the cluster block, plus a new block.
    let text = corefile("example.org:0 {\n bind 127.0.0.1\n whoami\n}\n");
    let cfg = clusterdns::config::load("Corefile", &text, 53).unwrap();
    let built = clusterdns::server::build(&cfg, &s.metrics).unwrap();
    let t = Instant::now();
    s.running.reload(built).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "reload waited for a new sync"
    );
    assert_eq!(
        rcode(dns, "web.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api_requests(&api), before, "the reload made API requests");
    // And the shared watches still deliver changes.
    post(
        &api,
        "/_control/apply",
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"late\",\"namespace\":\"ns1\"},\"spec\":{\"clusterIP\":\"10.96.1.77\",\"ports\":[{\"port\":80}]}}",
    );
    let t = Instant::now();
    while rcode(dns, "late.ns1.svc.cluster.local.").await != ResponseCode::NoError {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "change after reload not served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.running.shutdown().await;
}

/// autopath @kubernetes: a pod in ns1 asking `foo.com.ns1.svc.cluster.local` (its first
/// ndots:5 search expansion) gets `CNAME foo.com.` plus the upstream's answer in one round trip.
#[tokio::test]
async fn autopath_walks_the_pods_search_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(
        &file,
        format!("{ONE}- {{apiVersion: v1, kind: Pod, metadata: {{name: client, namespace: ns1}}, status: {{phase: Running, podIP: 127.0.0.1}}}}\n"),
    )
    .unwrap();
    let stub = crate::util::stub_upstream(&[("foo.com.", "192.0.2.1".parse().unwrap())]).await;
    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n autopath @kubernetes\n kubernetes cluster.local {{\n  snapshot {}\n  pods verified\n }}\n forward . {}\n}}\n",
            file.display(),
            stub.addr
        ),
        vec![],
    )
    .await;
    let r = udp(
        s.dns(),
        &query("foo.com.ns1.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    let got: Vec<String> = r
        .answers
        .iter()
        .map(|a| format!("{} {}", a.name, a.data))
        .collect();
    assert_eq!(
        got,
        [
            "foo.com.ns1.svc.cluster.local. foo.com.",
            "foo.com. 192.0.2.1"
        ]
    );
    // A cluster name on the search path is found on the first step, no CNAME needed.
    let r = udp(
        s.dns(),
        &query("a.ns1.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.answers.len(), 1);
    assert_eq!(r.answers[0].name.to_string(), "a.ns1.svc.cluster.local.");
    // A name that exists nowhere: the first reply (NXDOMAIN), so the client walks on.
    let r = udp(
        s.dns(),
        &query("nothing.ns1.svc.cluster.local.", RecordType::A, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    s.running.shutdown().await;
}

/// The fake API on a given 127.0.0.1 port (to restart it at the same address), with extra flags.
fn fake_api_on(port: u16, args: &[&str]) -> FakeApi {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = crate::util::python3()
        .arg(format!("{root}/../shared/conformance/fakeapi.py"))
        .args(["--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 for the fake API server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "fake API: {line:?}");
    FakeApi {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn get_json(api: &FakeApi, path: &str) -> serde_json::Value {
    let out = Command::new("curl")
        .args(["-sf", &format!("{}{path}", api.url)])
        .output()
        .expect("curl");
    assert!(out.status.success(), "GET {path}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The API server down for 10 s, then back with its objects and resource versions (as etcd keeps
/// them) plus a Service created meanwhile: the last good answers are kept throughout, and the new
/// Service is answered within 5 s of the API's return. kube-runtime's default back-off (800 ms
/// doubling to 30 s per watcher, one more step for the 410 that greets the resumed watch) takes
/// at least 6.4 s after a 10 s outage, so this catches a back-off that is no longer bounded.
#[tokio::test]
async fn after_an_api_outage_changes_are_answered_within_5s() {
    let port = crate::util::free_port();
    let root = env!("CARGO_MANIFEST_DIR");
    let fixture = format!("{root}/tests/conformance/fixtures/watch.yaml");
    let api = fake_api_on(port, &["--fixture", &fixture]);
    let s = start(
        &format!(
            "cluster.local:0 {{\n bind 127.0.0.1\n kubernetes {{\n  endpoint {}\n }}\n}}\n",
            api.url
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    assert_eq!(
        rcode(dns, "web.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    // What etcd keeps: every object and the resource version.
    let mut objects = get_json(&api, "/_control/objects");
    let rv: u64 = get_json(&api, "/_control/state")["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    drop(api); // SIGKILL
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(10) {
        assert_eq!(
            rcode(dns, "web.ns1.svc.cluster.local.").await,
            ResponseCode::NoError,
            "the last good answer is kept while the API is down"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    objects["items"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "late", "namespace": "ns1"},
            "spec": {"clusterIP": "10.96.1.77", "ports": [{"port": 80}]}
        }));
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("etcd.json");
    std::fs::write(&dump, objects.to_string()).unwrap();
    let rv = (rv + 5).to_string();
    let _api = fake_api_on(
        port,
        &["--fixture", dump.to_str().unwrap(), "--initial-rv", &rv],
    );
    let back = Instant::now();
    while rcode(dns, "late.ns1.svc.cluster.local.").await != ResponseCode::NoError {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "a Service created during the outage is not answered 5 s after the API is back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rcode(dns, "web.ns1.svc.cluster.local.").await,
        ResponseCode::NoError
    );
    s.running.shutdown().await;
}

fn api_watches(api: &FakeApi) -> String {
    let out = Command::new("curl")
        .args(["-sf", &format!("{}/_control/state", api.url)])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let i = text.find("\"watches\"").expect("watches in state");
    text[i..].split(']').next().unwrap_or_default().to_string()
}

async fn addrs(addr: std::net::SocketAddr, name: &str) -> Vec<String> {
    let mut v: Vec<String> = udp(addr, &query(name, RecordType::A, None))
        .await
        .answers
        .iter()
        .map(|r| r.data.to_string())
        .collect();
    v.sort();
    v
}

async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !check().await {
        assert!(t.elapsed() < Duration::from_secs(5), "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `multicluster`: ServiceImports and multicluster EndpointSlices are watched through the API
/// (and only then), answered under clusterset.local, and their changes are served.
#[tokio::test]
async fn multicluster_watches_service_imports_only_when_asked() {
    let api = fake_api("deploy/demo/cluster.yaml");
    let plain = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n kubernetes cluster.local clusterset.local {{\n  endpoint {}\n }}\n}}\n",
            api.url
        ),
        vec![],
    )
    .await;
    assert_eq!(
        rcode(plain.dns(), "api.shop.svc.clusterset.local.").await,
        ResponseCode::NXDomain
    );
    let watches = api_watches(&api);
    assert!(
        watches.contains("endpointslices") && !watches.contains("serviceimports"),
        "{watches}"
    );
    assert!(!watches.contains("multicluster"), "{watches}");
    plain.running.shutdown().await;

    let s = start(
        &format!(
            ".:0 {{\n bind 127.0.0.1\n kubernetes cluster.local clusterset.local {{\n  endpoint {}\n  multicluster clusterset.local\n }}\n}}\n",
            api.url
        ),
        vec![],
    )
    .await;
    let dns = s.dns();
    until("ServiceImport watch", async || {
        api_watches(&api).contains("serviceimports")
    })
    .await;
    assert_eq!(
        addrs(dns, "api.shop.svc.clusterset.local.").await,
        ["10.96.200.20"]
    );
    assert_eq!(
        addrs(dns, "db-0.west.db.shop.svc.clusterset.local.").await,
        ["10.245.1.10"]
    );
    assert_eq!(
        rcode(dns, "db-0.db.shop.svc.clusterset.local.").await,
        ResponseCode::NXDomain,
        "a multicluster endpoint name needs its cluster"
    );
    // cluster.local is still answered from Services.
    assert_eq!(
        addrs(dns, "web.shop.svc.cluster.local.").await,
        ["10.96.100.10"]
    );
    post(
        &api,
        "/_control/apply",
        "{\"apiVersion\":\"multicluster.x-k8s.io/v1alpha1\",\"kind\":\"ServiceImport\",\"metadata\":{\"name\":\"cart\",\"namespace\":\"shop\"},\"spec\":{\"type\":\"ClusterSetIP\",\"ips\":[\"10.96.200.30\"],\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80}]}}",
    );
    until("new ServiceImport served", async || {
        addrs(dns, "cart.shop.svc.clusterset.local.").await == ["10.96.200.30"]
    })
    .await;
    post(
        &api,
        "/_control/delete",
        "{\"kind\":\"EndpointSlice\",\"namespace\":\"shop\",\"name\":\"db-west\"}",
    );
    until("deleted multicluster slice gone", async || {
        rcode(dns, "db-0.west.db.shop.svc.clusterset.local.").await == ResponseCode::NXDomain
    })
    .await;
    assert_eq!(
        addrs(dns, "db.shop.svc.clusterset.local.").await,
        ["10.244.1.10"]
    );
    s.running.shutdown().await;
}

/// deploy/multicluster grants what `multicluster` adds to the watches and nothing more (list and
/// watch of ServiceImports, to the coredns ServiceAccount), apart from deploy/kubernetes's role,
/// which stays kubeadm's; it validates against the Kubernetes 1.33 schemas.
#[test]
fn multicluster_rbac_grants_only_service_imports() {
    let root = env!("CARGO_MANIFEST_DIR");
    let file = format!("{root}/deploy/multicluster/rbac.yaml");
    let validate = Command::new(crate::daemons::require(
        "kubernetes-validate",
        "pip: kubernetes-validate",
    ))
    .args(["--strict", "--quiet", "-k", "1.33.0", &file])
    .status()
    .unwrap();
    assert!(validate.success(), "{file} does not validate");
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(
        role["rules"],
        serde_json::json!([{
            "apiGroups": ["multicluster.x-k8s.io"],
            "resources": ["serviceimports"],
            "verbs": ["list", "watch"]
        }])
    );
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}])
    );
    let main = std::fs::read_to_string(format!("{root}/deploy/kubernetes/rbac.yaml")).unwrap();
    assert!(
        !main.contains("serviceimports"),
        "the main role stays kubeadm's"
    );
}
