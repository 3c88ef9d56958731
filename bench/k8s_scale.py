#!/usr/bin/env python3
"""Scale benchmark of the kubernetes plugin (not a test): N Services with E ready endpoints
each, served from the fake API server (../shared/conformance/fakeapi.py) and from a snapshot
file. Reports resident memory, start-to-ready, the relist peak and the time from an API change
to the new answer (p50/p99 over --changes changes, optionally while dnsperf keeps a steady load
of cluster names on the server: --load-qps).

    cargo build --release
    python3 bench/k8s_scale.py --services 10000 --endpoints 5 --changes 1000 --load-qps 20000
    python3 bench/k8s_scale.py --memory 1000,10000,100000   # RSS from snapshots only

Needs python3 with dnspython and PyYAML (and dnsperf for --load-qps). Everything runs on
127.0.0.1.
"""
import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import dns.message
import dns.query
import dns.rcode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIT = os.path.join(ROOT, "..", "shared", "conformance")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def objects(n_svc, n_ep, n_ns):
    """Namespaces, Services (every 10th headless) and one EndpointSlice per Service."""
    out = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{i}"}} for i in range(n_ns)]
    for i in range(n_svc):
        ns, name = f"ns{i % n_ns}", f"svc{i}"
        headless = i % 10 == 0
        ip = "None" if headless else f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
        out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                    "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        eps = []
        for j in range(n_ep):
            k = i * n_ep + j
            eps.append({"addresses": [f"10.{128 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}"],
                        "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": f"{name}-{j}", "namespace": ns}})
        out.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": f"{name}-abc", "namespace": ns,
                                 "labels": {"kubernetes.io/service-name": name}},
                    "addressType": "IPv4", "endpoints": eps,
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    return out


def rss_kib(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def ask(port, name, timeout=0.5):
    q = dns.message.make_query(name, "A")
    return dns.query.udp(q, "127.0.0.1", port=port, timeout=timeout)


def wait_ready(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.01)
    return False


def start_server(binary, corefile, dns_port, workdir):
    path = os.path.join(workdir, "Corefile")
    with open(path, "w") as f:
        f.write(corefile)
    log = open(os.path.join(workdir, "server.log"), "w")
    t0 = time.monotonic()
    p = subprocess.Popen([binary, "-conf", path, "-dns.port", str(dns_port)], stdout=log, stderr=log)
    return p, t0


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()


def write_snapshot(work, n_svc, n_ep, n_ns):
    fixture = os.path.join(work, f"cluster-{n_svc}.json")
    with open(fixture, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": objects(n_svc, n_ep, n_ns)}, f)
    return fixture


def snapshot_rss(binary, fixture, work):
    """Start on a snapshot: (seconds to /ready, RSS MiB one second after, peak RSS MiB)."""
    dns_port, ready_port = free_port(), free_port()
    p, t0 = start_server(binary, f".:{dns_port} {{\n bind 127.0.0.1\n ready 127.0.0.1:{ready_port}\n"
                         f" kubernetes cluster.local {{\n  snapshot {fixture}\n }}\n}}\n", dns_port, work)
    try:
        assert wait_ready(ready_port, time.monotonic() + 120), "snapshot server never became ready"
        ready = time.monotonic() - t0
        time.sleep(1)
        return ready, rss_kib(p.pid) / 1024, rss_kib(p.pid, "VmHWM") / 1024
    finally:
        stop(p)


def start_load(port, n_svc, n_ns, qps, work):
    """dnsperf on CPU 1 asking for existing Service names at `qps` until stopped."""
    qfile = os.path.join(work, "load-queries.txt")
    with open(qfile, "w") as f:
        for i in range(0, n_svc, max(1, n_svc // 10000)):
            f.write(f"svc{i}.ns{i % n_ns}.svc.cluster.local A\n")
    out = open(os.path.join(work, "dnsperf.log"), "w")
    return subprocess.Popen(["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port),
                             "-d", qfile, "-l", "600", "-Q", str(qps), "-c", "4", "-q", "200"],
                            stdout=out, stderr=subprocess.STDOUT), out.name


def list_floor(api_url):
    """Seconds the fake API server takes to hand out every Service and EndpointSlice in pages of
    500, as the watchers list them, read without parsing: the part of start-to-ready that is the
    (Python) API server's, not ours."""
    t = time.monotonic()
    for path in ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"):
        cont = ""
        while True:
            url = f"{api_url}{path}?limit=500" + (f"&continue={urllib.parse.quote(cont)}" if cont else "")
            with urllib.request.urlopen(url) as r:
                body = r.read()
            m = re.search(rb'"continue":\s*"([^"]*)"', body)
            cont = m.group(1).decode() if m else ""
            if not cont:
                break
    return time.monotonic() - t


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", default=os.path.join(ROOT, "target/release/clusterdns"))
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=5, help="ready endpoints per Service")
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--changes", type=int, default=200, help="API changes timed for propagation")
    ap.add_argument("--load-qps", type=int, default=0,
                    help="dnsperf load (queries/s of cluster names) during the changes; 0: none")
    ap.add_argument("--memory", default="",
                    help="comma list of Service counts: only RSS from snapshots, then exit")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="clusterdns-scale-")
    if args.memory:
        print(f"{'services':>9} {'endpoints':>10} {'ready_s':>8} {'rss_mib':>8} {'peak_mib':>9} "
              f"{'target_mib':>11}  (target: (endpoints+services)/4000 + 15 MB)")
        for n in map(int, args.memory.split(",")):
            fixture = write_snapshot(work, n, args.endpoints, args.namespaces)
            ready, rss, hwm = snapshot_rss(args.server, fixture, work)
            os.unlink(fixture)
            target = ((n * args.endpoints + n) / 4000 + 15) * 1e6 / 2**20
            print(f"{n:>9} {n * args.endpoints:>10} {ready:>8.2f} {rss:>8.1f} {hwm:>9.1f} {target:>11.1f}",
                  flush=True)
        return

    fixture = write_snapshot(work, args.services, args.endpoints, args.namespaces)
    n_eps = args.services * args.endpoints
    print(f"objects: {args.services} Services, {n_eps} endpoints, {args.namespaces} namespaces "
          f"({os.path.getsize(fixture) >> 20} MiB as JSON)")
    results = {}

    # 1. Snapshot source.
    (results["snapshot_ready_s"], results["snapshot_rss_mib"],
     results["snapshot_hwm_mib"]) = snapshot_rss(args.server, fixture, work)

    # 2. The fake API server.
    api_log = open(os.path.join(work, "fakeapi.log"), "w")
    api = subprocess.Popen([sys.executable, os.path.join(KIT, "fakeapi.py"), "--fixture", fixture,
                            "--bookmark-interval", "5"], stdout=subprocess.PIPE, stderr=api_log, text=True)
    line = api.stdout.readline()
    api_url = "http://" + line.strip().split()[-1]
    results["api_list_floor_s"] = list_floor(api_url)
    dns_port, ready_port = free_port(), free_port()
    p, t0 = start_server(args.server, f".:{dns_port} {{\n bind 127.0.0.1\n ready 127.0.0.1:{ready_port}\n"
                         f" kubernetes cluster.local {{\n  endpoint {api_url}\n  startup_timeout 120s\n }}\n}}\n",
                         dns_port, work)
    try:
        ok = wait_ready(ready_port, time.monotonic() + 180)
        assert ok, "API server never became ready"
        results["api_ready_s"] = time.monotonic() - t0
        time.sleep(2)
        results["api_rss_mib"] = rss_kib(p.pid) / 1024
        r = ask(dns_port, f"svc1.ns1.svc.cluster.local.")
        assert r.answer, r

        # Propagation: create a Service, poll its name until it answers.
        load = None
        if args.load_qps:
            load, load_log = start_load(dns_port, args.services, args.namespaces, args.load_qps, work)
            time.sleep(1)
        delays = []
        for i in range(args.changes):
            name = f"probe{i}"
            body = json.dumps({"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": name, "namespace": "ns0"},
                               "spec": {"clusterIP": f"10.200.{i >> 8}.{i & 255}", "ports": [{"port": 80}]}})
            req = urllib.request.Request(api_url + "/_control/apply", data=body.encode(), method="POST")
            t = time.monotonic()
            urllib.request.urlopen(req).read()
            while True:
                r = ask(dns_port, f"{name}.ns0.svc.cluster.local.")
                if r.answer:
                    break
                if time.monotonic() - t > 10:
                    raise SystemExit(f"{name} never answered")
            delays.append((time.monotonic() - t) * 1000)
        results["propagation_p50_ms"] = statistics.median(delays)
        results["propagation_p99_ms"] = pct(delays, 99)
        results["propagation_max_ms"] = max(delays)
        if load:
            load.send_signal(signal.SIGINT)
            load.wait(10)
            with open(load_log) as f:
                for line in f:
                    if "Queries per second" in line or "Queries lost" in line:
                        print("load during changes:", line.strip())

        # Relist: drop the history and the watches; the next watch gets 410 Gone and relists.
        before = rss_kib(p.pid)
        for path in ("/_control/compact", "/_control/drop-watches"):
            urllib.request.urlopen(urllib.request.Request(api_url + path, data=b"", method="POST")).read()
        peak, end = before, time.monotonic() + 15
        while time.monotonic() < end:
            peak = max(peak, rss_kib(p.pid))
            time.sleep(0.005)
        results["relist_peak_mib"] = peak / 1024
        results["relist_peak_ratio"] = peak / max(before, 1)
        results["after_relist_rss_mib"] = rss_kib(p.pid) / 1024
    finally:
        stop(p)
        stop(api)
        for k, v in results.items():
            print(f"{k:24} {v:10.2f}")


if __name__ == "__main__":
    main()
