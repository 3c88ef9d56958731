#!/usr/bin/env python3
"""Benchmark (not a test): a pod's ndots:5 lookup of an external name, with and without
`autopath @kubernetes`. The client below resolves like glibc/musl with the pod resolv.conf
`search ns1.svc.cluster.local svc.cluster.local cluster.local` + `ndots:5`: it sends each
expansion in turn until an answer is not NXDOMAIN. Reports client-visible queries per lookup
and lookups per second (one client, sequential). The upstream is a second clusterdns on
127.0.0.1 (two templates: www.example.com, else NXDOMAIN); everything stays on loopback.

    cargo build --release && python3 bench/autopath.py [--lookups 3000]
"""
import argparse
import os
import signal
import socket
import subprocess
import tempfile
import time

import dns.message
import dns.query
import dns.rcode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEARCH = ["ns1.svc.cluster.local.", "svc.cluster.local.", "cluster.local."]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lookup(port, name):
    """Returns the number of queries sent until an answer that is not NXDOMAIN."""
    candidates = [f"{name}.{s}" for s in SEARCH] + [f"{name}."]
    for i, c in enumerate(candidates, 1):
        r = dns.query.udp(dns.message.make_query(c, "A"), "127.0.0.1", port=port, timeout=2)
        if r.rcode() != dns.rcode.NXDOMAIN:
            assert r.answer, (c, r)
            return i
    raise SystemExit(f"{name}: every expansion was NXDOMAIN")


def serve(binary, corefile, work, tag):
    path = os.path.join(work, f"{tag}.Corefile")
    with open(path, "w") as f:
        f.write(corefile)
    return subprocess.Popen([binary, "-conf", path], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, f"{tag}.log"), "w"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.path.join(ROOT, "target/release/clusterdns"))
    ap.add_argument("--lookups", type=int, default=3000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="clusterdns-autopath-")
    cluster = os.path.join(work, "cluster.yaml")
    with open(cluster, "w") as f:
        f.write("apiVersion: v1\nkind: List\nitems:\n"
                "- {apiVersion: v1, kind: Namespace, metadata: {name: ns1}}\n"
                "- {apiVersion: v1, kind: Pod, metadata: {name: client, namespace: ns1}, "
                "status: {phase: Running, podIP: 127.0.0.1}}\n")
    up = free_port()
    upstream = (f".:{up} {{\n bind 127.0.0.1\n template IN A example.com {{\n"
                '  match "^www\\.example\\.com\\.$"\n'
                '  answer "{{ .Name }} 60 IN A 192.0.2.1"\n  fallthrough\n }\n'
                " template ANY ANY {\n  rcode NXDOMAIN\n }\n}\n")
    procs = [serve(args.server, upstream, work, "upstream")]
    results = []
    try:
        for tag, extra in (("without autopath", ""), ("with autopath", " autopath @kubernetes\n")):
            port = free_port()
            p = serve(args.server, f".:{port} {{\n bind 127.0.0.1\n{extra} kubernetes cluster.local {{\n"
                      f"  snapshot {cluster}\n  pods verified\n }}\n forward . 127.0.0.1:{up}\n}}\n", work, tag[:4])
            procs.append(p)
            time.sleep(1)
            lookup(port, "www.example.com")  # warm up
            t0, sent = time.monotonic(), 0
            for _ in range(args.lookups):
                sent += lookup(port, "www.example.com")
            dt = time.monotonic() - t0
            results.append((tag, sent / args.lookups, args.lookups / dt))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    print(f"{'':18} {'queries/lookup':>15} {'lookups/s':>10}")
    for tag, q, lps in results:
        print(f"{tag:18} {q:15.2f} {lps:10.0f}")


if __name__ == "__main__":
    main()
