#!/usr/bin/env python3
"""Pod-traffic benchmark (not a test): what pods' resolvers send, served by kubeadm's Corefile,
next to the caching resolvers from Debian configured to answer the same names the same way.

    cargo build --release
    python3 bench/pod_traffic.py                     # every server, every kind, 10 s each
    python3 bench/pod_traffic.py --duration 2 --servers clusterdns,unbound   # a smoke run

The query file is generated from LOOKUPS, as glibc's resolver in a pod expands them (namespace
`ns-K`, `search ns-K.svc.cluster.local svc.cluster.local cluster.local`, `ndots:5`, A and AAAA
asked together; a name with fewer than 5 dots is tried with each search suffix first, and the
search stops at the first suffix that answers):

    kind of lookup (share of lookups)              queries it sends
    external name, cached      `www.site-7.example.com`  (30 %)   6 NXDOMAIN + A + AAAA
    external name, new         `q123.miss.example.net`   ( 2 %)   6 NXDOMAIN + A + AAAA
    Service, own namespace     `svc-3`                   (30 %)   A + AAAA (NODATA)
    Service, other namespace   `svc-3.ns-2`              (15 %)   2 NXDOMAIN + A + AAAA
    Service, full name         `svc-3.ns-2.svc.cluster.local` (10 %) 6 NXDOMAIN + A + AAAA
    headless Service           `db` (3 endpoints)        ( 5 %)   A (3 records) + AAAA
    SRV                        `_http._tcp.svc-3.ns-2.svc.cluster.local` (4 %)   SRV
    PTR of a ClusterIP         `3.0.96.10.in-addr.arpa`  ( 4 %)   PTR

Each query is one of four kinds: `cluster` (answered from the cluster's names: A, AAAA NODATA,
SRV, PTR, headless), `search-nx` (a search-path expansion: NXDOMAIN from the cluster zone),
`cache-hit` (an external name the server has cached), `cache-miss` (an external name it has
never seen: asked upstream). About 59 % of the queries are search-nx, 27 % cluster, 13 %
cache hits, 1 % cache misses.

Every server forwards what it does not answer itself to the same stub upstream: knotd,
authoritative for the root zone with the external names (TTL 30, NXDOMAIN with the root SOA for
anything else; `*.miss.example.net` is a wildcard) on CPU 1 next to dnsperf. The servers, each
pinned to CPU 0 with one worker:

* clusterdns: kubeadm's Corefile (errors, health, ready, kubernetes cluster.local in-addr.arpa
  ip6.arpa with pods insecure, fallthrough and ttl 30, prometheus, forward to the stub,
  cache 30 with success and denial disabled for cluster.local, loop, reload, loadbalance; log
  off), the cluster from a snapshot file.
* unbound: `local-zone: static` with the cluster's A, SRV and PTR records as `local-data`,
  `forward-zone: .` to the stub, its message and RRset caches.
* pdns-recursor: the cluster as `auth-zones` (zone files), `forward-zones-recurse=.` to the
  stub, dnssec off, its packet cache.
* dnsmasq: the cluster as an `addn-hosts` file (A and PTR) plus `srv-host` lines,
  `local=/cluster.local/` (NXDOMAIN for other cluster names), `server=` the stub, cache 10000.
* kresd (knot-resolver): has no local zone data for SRV, so it forwards everything to the stub,
  which also serves the cluster zones (TTL 30); its cache answers them after the warm-up.

Each server is started afresh, warmed up with one pass over every distinct question of the mix
except the misses, and then measured for each kind with dnsperf (`-q 100 -c 8`, DURATION
seconds, on CPU 1): `srv_us/q` is the server's own CPU time (all threads, user + system) per
answered query. Needs root only to install missing packages (dnsperf knot unbound dnsmasq
knot-resolver pdns-recursor) and python3 with dnspython; every socket is on 127.0.0.1.
"""
import argparse
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import dns.message
import dns.query
import dns.rcode

import knot_conf  # bench/knot_conf.py, beside this file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZONE = "cluster.local"
TTL = 30
NAMESPACES = 20
SERVICES = 50          # ClusterIP Services per namespace
EXTERNAL = 400         # external names the pods look up (cached)
HEADLESS_EPS = 3
SERVERS = ["clusterdns", "unbound", "pdns-recursor", "dnsmasq", "kresd"]
KINDS = ["mix", "cluster", "search-nx", "cache-hit", "cache-miss"]
PACKAGES = {"dnsperf": "dnsperf", "knotd": "knot", "unbound": "unbound", "dnsmasq": "dnsmasq-base",
            "kresd": "knot-resolver", "pdns_recursor": "pdns-recursor"}

# Share of each kind of lookup (see the module doc).
LOOKUPS = [("external", 30), ("external-new", 2), ("short", 30), ("other-ns", 15), ("fqdn", 10),
           ("headless", 5), ("srv", 4), ("ptr", 4)]


# ---- the cluster and the names ----------------------------------------------------------------

def cluster():
    """Services (name, namespace, ClusterIP) and headless Services (namespace, [(host, ip)])."""
    svcs, headless = [], []
    i = 0
    for m in range(NAMESPACES):
        ns = f"ns-{m}"
        for n in range(SERVICES):
            i += 1
            svcs.append((f"svc-{n}", ns, f"10.96.{i >> 8}.{i & 255}"))
        headless.append((ns, [(f"db-{k}", f"10.244.{m}.{k + 1}") for k in range(HEADLESS_EPS)]))
    return svcs, headless


def externals():
    tlds = ["com", "net", "org"]
    return [f"www.site-{i}.example.{tlds[i % 3]}" for i in range(EXTERNAL)]


def rev(ip):
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def expand(name, ns):
    """The names glibc asks, in order, for `name` from a pod in `ns` (ndots:5)."""
    search = [f"{ns}.svc.{ZONE}", f"svc.{ZONE}", ZONE]
    if name.endswith("."):
        return [name]
    if name.count(".") >= 5:
        return [name + "."] + [f"{name}.{s}." for s in search]
    return [f"{name}.{s}." for s in search] + [name + "."]


def lookups(n, seed):
    """`n` lookups as (queries, kinds): each query is (name, type), each kind one of the four."""
    rnd = random.Random(seed)
    svcs, headless = cluster()
    ext = externals()
    weights = [w for _, w in LOOKUPS]
    miss = 0
    for _ in range(n):
        what = rnd.choices([k for k, _ in LOOKUPS], weights)[0]
        ns = f"ns-{rnd.randrange(NAMESPACES)}"
        svc, sns, ip = svcs[rnd.randrange(len(svcs))]
        if what in ("external", "external-new"):
            if what == "external":
                name, kind = rnd.choice(ext), "cache-hit"
            else:
                miss += 1
                name, kind = f"q{miss}-{rnd.randrange(1 << 30)}.miss.example.net", "cache-miss"
            names = expand(name, ns)
            out = [(q, t, "search-nx") for q in names[:-1] for t in ("A", "AAAA")]
            out += [(names[-1], t, kind) for t in ("A", "AAAA")]
        elif what == "short":
            own = [s for s in svcs[:SERVICES]]  # a Service of the pod's own namespace
            name = f"{own[rnd.randrange(SERVICES)][0]}"
            out = [(f"{name}.{ns}.svc.{ZONE}.", t, "cluster") for t in ("A", "AAAA")]
        elif what == "other-ns":
            names = expand(f"{svc}.{sns}", ns)
            # The first suffix (the pod's own namespace) is NXDOMAIN, the second answers.
            out = [(names[0], t, "search-nx") for t in ("A", "AAAA")]
            out += [(names[1], t, "cluster") for t in ("A", "AAAA")]
        elif what == "fqdn":
            names = expand(f"{svc}.{sns}.svc.{ZONE}", ns)
            out = [(q, t, "search-nx") for q in names[:-1] for t in ("A", "AAAA")]
            out += [(names[-1], t, "cluster") for t in ("A", "AAAA")]
        elif what == "headless":
            out = [(f"db.{ns}.svc.{ZONE}.", t, "cluster") for t in ("A", "AAAA")]
        elif what == "srv":
            out = [(f"_http._tcp.{svc}.{sns}.svc.{ZONE}.", "SRV", "cluster")]
        else:
            out = [(rev(ip) + ".", "PTR", "cluster")]
        yield out


def write_data(d, n_queries, seed):
    svcs, headless = cluster()
    ext = externals()
    os.makedirs(d, exist_ok=True)
    # The mix, and each kind alone (in the order the mix has them).
    mix = []
    for out in lookups(10 ** 9, seed):
        mix.extend(out)
        if len(mix) >= n_queries:
            break
    files = {k: open(os.path.join(d, f"{k}.txt"), "w") for k in KINDS}
    warm = set()
    for q, t, kind in mix:
        files["mix"].write(f"{q} {t}\n")
        files[kind].write(f"{q} {t}\n")
        if kind != "cache-miss":
            warm.add((q, t))
    # Misses alone: every name new, as many as the mix has queries.
    for i in range(n_queries):
        files["cache-miss"].write(f"m{i}-{random.Random(seed + i).randrange(1 << 30)}.miss.example.net. A\n")
    for f in files.values():
        f.close()
    with open(os.path.join(d, "warm.txt"), "w") as f:
        for q, t in sorted(warm):
            f.write(f"{q} {t}\n")
    counts = {}
    for _, _, k in mix:
        counts[k] = counts.get(k, 0) + 1

    # clusterdns: a snapshot of the API objects.
    import json
    items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{m}"}}
             for m in range(NAMESPACES)]
    for name, ns, ip in svcs:
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                      "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    for ns, eps in headless:
        items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": ns},
                      "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}})
        items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                      "metadata": {"name": "db-x", "namespace": ns,
                                   "labels": {"kubernetes.io/service-name": "db"}},
                      "addressType": "IPv4",
                      "endpoints": [{"addresses": [ip], "hostname": h, "conditions": {"ready": True}}
                                    for h, ip in eps],
                      "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]})
    with open(os.path.join(d, "cluster.json"), "w") as f:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, f)

    # The same names as records (what the kubernetes plugin answers, CoreDNS's TTL 30).
    soa = f"{ZONE}. {TTL} IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {TTL}"
    recs = [soa, f"{ZONE}. {TTL} IN NS ns.dns.{ZONE}.", f"ns.dns.{ZONE}. {TTL} IN A 10.96.0.10"]
    ptrs = []
    for name, ns, ip in svcs:
        fq = f"{name}.{ns}.svc.{ZONE}."
        recs.append(f"{fq} {TTL} IN A {ip}")
        recs.append(f"_http._tcp.{fq} {TTL} IN SRV 0 100 80 {fq}")
        ptrs.append(f"{rev(ip)}. {TTL} IN PTR {fq}")
    for ns, eps in headless:
        fq = f"db.{ns}.svc.{ZONE}."
        for h, ip in eps:
            recs.append(f"{fq} {TTL} IN A {ip}")
            recs.append(f"{h}.{fq} {TTL} IN A {ip}")
    rsoa = f"96.10.in-addr.arpa. {TTL} IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 {TTL}"
    rzone = [rsoa, f"96.10.in-addr.arpa. {TTL} IN NS ns.dns.{ZONE}."] + ptrs
    with open(os.path.join(d, f"{ZONE}.zone"), "w") as f:
        f.write("\n".join(recs) + "\n")
    with open(os.path.join(d, "96.10.in-addr.arpa.zone"), "w") as f:
        f.write("\n".join(rzone) + "\n")
    with open(os.path.join(d, "unbound-local.conf"), "w") as f:
        f.write(f'local-zone: "{ZONE}." static\nlocal-zone: "96.10.in-addr.arpa." static\n')
        for r in recs + rzone:
            f.write(f'local-data: "{r}"\n')
    with open(os.path.join(d, "cluster.hosts"), "w") as f:
        for name, ns, ip in svcs:
            f.write(f"{ip} {name}.{ns}.svc.{ZONE}\n")
        for ns, eps in headless:
            for h, ip in eps:
                f.write(f"{ip} db.{ns}.svc.{ZONE} {h}.db.{ns}.svc.{ZONE}\n")
    with open(os.path.join(d, "dnsmasq-srv.conf"), "w") as f:
        for name, ns, _ in svcs:
            fq = f"{name}.{ns}.svc.{ZONE}"
            f.write(f"srv-host=_http._tcp.{fq},{fq},80,0,100\n")

    # The stub upstream's root zone: the external names (A and AAAA), the miss wildcard.
    root = [". 86400 IN SOA ns.stub. hostmaster.stub. 1 1800 900 604800 86400",
            ". 86400 IN NS ns.stub.", "ns.stub. 86400 IN A 127.0.0.1"]
    for i, name in enumerate(ext):
        root.append(f"{name}. {TTL} IN A 198.51.100.{i % 250 + 1}")
        root.append(f"{name}. {TTL} IN AAAA 2001:db8::{i + 1:x}")
    root.append(f"*.miss.example.net. {TTL} IN A 203.0.113.1")
    root.append(f"*.miss.example.net. {TTL} IN AAAA 2001:db8::ffff")
    with open(os.path.join(d, "root.zone"), "w") as f:
        f.write("\n".join(root) + "\n")
    return counts


# ---- processes ----------------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    """utime + stime of the process (all its threads) and its children."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    pids.extend(int(c) for c in f.read().split())
        except (OSError, ValueError, IndexError):
            pass
    return total


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def busy_ticks():
    """(all ticks, idle ticks) of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4]


def start(cmd, log, cpu):
    p = subprocess.Popen(["taskset", "-c", str(cpu)] + cmd, stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    return p


def stop(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def answers(port, name, qtype, want_rcode=dns.rcode.NOERROR, timeout=0.5):
    try:
        r = dns.query.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=timeout)
        return r.rcode() == want_rcode and (want_rcode != dns.rcode.NOERROR or len(r.answer) > 0)
    except Exception:
        return False


def sample_answers(port, questions):
    """(rcode, sorted answer data) per question: what a client would compare."""
    out = {}
    for q, t in questions:
        try:
            r = dns.query.udp(dns.message.make_query(q, t), "127.0.0.1", port=port, timeout=1)
            data = sorted(f"{rr.rdtype} {rd.to_text().lower()}" for rr in r.answer for rd in rr)
            out[(q, t)] = (dns.rcode.to_text(r.rcode()), tuple(data))
        except Exception as e:
            out[(q, t)] = ("error", (str(e),))
    return out


def wait_ready(p, port, deadline):
    """Until the server answers a cluster name, an external name (through the stub) and an
    NXDOMAIN."""
    while time.monotonic() < deadline:
        if p.poll() is not None:
            return False
        if (answers(port, f"svc-0.ns-0.svc.{ZONE}.", "A")
                and answers(port, "www.site-0.example.com.", "A")
                and answers(port, f"nope.ns-0.svc.{ZONE}.", "A", dns.rcode.NXDOMAIN)):
            return True
        time.sleep(0.1)
    return False


# ---- the servers' configurations ----------------------------------------------------------------

def configure(server, d, data, port, stub):
    """Writes `server`'s configuration into `d`; returns its command line."""
    os.makedirs(d, exist_ok=True)
    if server == "clusterdns":
        with open(os.path.join(d, "Corefile"), "w") as f:
            f.write(f""".:{port} {{
    bind 127.0.0.1
    errors
    health 127.0.0.1:0 {{
       lameduck 5s
    }}
    ready 127.0.0.1:0
    kubernetes {ZONE} in-addr.arpa ip6.arpa {{
       snapshot {data}/cluster.json
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl {TTL}
    }}
    prometheus 127.0.0.1:0
    forward . 127.0.0.1:{stub} {{
       max_concurrent 1000
    }}
    cache 30 {{
       disable success {ZONE}
       disable denial {ZONE}
    }}
    loop
    reload
    loadbalance
}}
""")
        return [os.path.join(ROOT, "target", "release", "clusterdns"), "-conf", os.path.join(d, "Corefile")]
    if server == "unbound":
        with open(os.path.join(d, "unbound.conf"), "w") as f:
            f.write(f"""server:
    interface: 127.0.0.1@{port}
    port: {port}
    do-ip6: no
    num-threads: 1
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    include: "{data}/unbound-local.conf"
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@{stub}
remote-control:
    control-enable: no
""")
        return ["unbound", "-d", "-p", "-c", os.path.join(d, "unbound.conf")]
    if server == "pdns-recursor":
        with open(os.path.join(d, "recursor.conf"), "w") as f:
            f.write(f"""local-address=127.0.0.1
local-port={port}
threads=1
pdns-distributes-queries=no
socket-dir={d}
auth-zones={ZONE}={data}/{ZONE}.zone,96.10.in-addr.arpa={data}/96.10.in-addr.arpa.zone
forward-zones-recurse=.=127.0.0.1:{stub}
dnssec=off
# No security poll (a query for *.secpoll.powerdns.com that the stub answers NXDOMAIN from the
# root, which pdns would then apply to all of .com).
security-poll-suffix=
root-nx-trust=no
daemon=no
write-pid=no
disable-syslog=yes
quiet=yes
loglevel=3
""")
        return ["pdns_recursor", f"--config-dir={d}"]
    if server == "dnsmasq":
        with open(os.path.join(d, "dnsmasq.conf"), "w") as f:
            f.write(f"""keep-in-foreground
no-resolv
no-hosts
no-poll
addn-hosts={data}/cluster.hosts
conf-file={data}/dnsmasq-srv.conf
local=/{ZONE}/
local-ttl={TTL}
server=127.0.0.1#{stub}
cache-size=10000
listen-address=127.0.0.1
bind-interfaces
port={port}
user=root
group=root
pid-file={d}/dnsmasq.pid
log-facility={d}/dnsmasq.log
""")
        return ["dnsmasq", f"--conf-file={d}/dnsmasq.conf"]
    if server == "kresd":
        os.makedirs(os.path.join(d, "cache"), exist_ok=True)
        with open(os.path.join(d, "config"), "w") as f:
            f.write(f"""net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})
net.ipv6 = false
-- The stub is not signed: no DNSSEC validation.
trust_anchors.remove('.')
cache.open(100 * MB, 'lmdb://{d}/cache')
policy.add(policy.all(policy.FORWARD('127.0.0.1@{stub}')))
""")
        return ["kresd", "-n", "-q", "-c", os.path.join(d, "config"), d]
    raise ValueError(server)


def stub_config(d, data, port):
    return knot_conf.write(d, data, port, [".", ZONE, "96.10.in-addr.arpa"])


def version(server):
    cmd = {"clusterdns": [os.path.join(ROOT, "target", "release", "clusterdns"), "-version"],
           "unbound": ["unbound", "-V"], "pdns-recursor": ["pdns_recursor", "--version"],
           "dnsmasq": ["dnsmasq", "-v"], "kresd": ["kresd", "-V"]}[server]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        for line in text:
            for w in line.replace(",", " ").split():
                if w[:1].isdigit() and "." in w:
                    return w
        return text[0] if text else "?"
    except Exception:
        return "?"


# ---- measuring ----------------------------------------------------------------------------------

def dnsperf(port, qfile, duration, extra=()):
    cmd = ["taskset", "-c", "1", "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
           "-q", "100", "-c", "8", "-t", "1", "-O", "suppress=timeout"] + list(extra)
    if duration:
        cmd += ["-l", str(duration)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=(duration or 600) + 60).stdout
    res = {"completed": 0, "qps": 0.0, "lost": 0.0, "rcodes": ""}
    for line in out.splitlines():
        w = line.split()
        if "Queries completed:" in line:
            res["completed"] = int(w[2])
        elif "Queries per second:" in line:
            res["qps"] = float(w[3])
        elif "Queries lost:" in line:
            res["lost"] = float(line.split("(")[1].split("%")[0])
        elif "Response codes:" in line:
            res["rcodes"] = line.split(":", 1)[1].strip().replace(" ", "")
    return res


def quiet_wait(max_s):
    """Waits (at most `max_s` s) until the machine is less than 15 % busy."""
    for _ in range(max_s):
        a = busy_ticks()
        time.sleep(1)
        b = busy_ticks()
        total, idle = b[0] - a[0], b[1] - a[1]
        if total <= 0 or 1 - idle / total < 0.15:
            return
    print(f"  (machine still busy after {max_s} s; measuring anyway, see other%)", file=sys.stderr)


def measure(pid, port, qfile, duration, quiet, stub_pid):
    hz = os.sysconf("SC_CLK_TCK")
    quiet_wait(quiet)
    s0, t0, b0, st0 = cpu_ticks(pid), time.monotonic(), busy_ticks(), cpu_ticks(stub_pid)
    r0 = os.times()
    res = dnsperf(port, qfile, duration)
    s1, t1, b1, st1 = cpu_ticks(pid), time.monotonic(), busy_ticks(), cpu_ticks(stub_pid)
    r1 = os.times()
    secs = (s1 - s0) / hz
    perf = (r1.children_user + r1.children_system) - (r0.children_user + r0.children_system)
    busy = ((b1[0] - b1[1]) - (b0[0] - b0[1])) / hz
    other = max(0.0, busy - secs - perf - (st1 - st0) / hz) / (t1 - t0) * 100
    res["us_per_q"] = 1e6 * secs / res["completed"] if res["completed"] else float("nan")
    res["cpu_pct"] = 100 * secs / (t1 - t0)
    res["other"] = other
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per dnsperf run (default 10)")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--queries", type=int, default=1_000_000, help="length of the query files")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quiet-max", type=int, default=60,
                    help="wait at most this long for a quiet machine before each run (s)")
    ap.add_argument("--workdir", help="keep data, configurations and logs here")
    ap.add_argument("--gen-only", action="store_true", help="only write the data into --workdir")
    a = ap.parse_args()

    servers = [s for s in a.servers.split(",") if s]
    kinds = [k for k in a.kinds.split(",") if k]
    missing = [b for b in ["dnsperf", "knotd"] + [{"pdns-recursor": "pdns_recursor"}.get(s, s) for s in servers
                                                  if s != "clusterdns"] if shutil.which(b) is None]
    if missing and not a.gen_only:
        pkgs = [PACKAGES[m] for m in missing]
        if os.geteuid() != 0:
            sys.exit(f"missing {' '.join(missing)}: apt-get install {' '.join(pkgs)} (as root)")
        print(f"installing {' '.join(pkgs)}", file=sys.stderr)
        # Keep the packages' services from starting on port 53.
        added = not os.path.exists("/usr/sbin/policy-rc.d")
        if added:
            with open("/usr/sbin/policy-rc.d", "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod("/usr/sbin/policy-rc.d", 0o755)
        subprocess.run(["apt-get", "update", "-qq"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-q"] + pkgs, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if added:
            os.remove("/usr/sbin/policy-rc.d")
    if "clusterdns" in servers and not os.path.exists(os.path.join(ROOT, "target", "release", "clusterdns")):
        sys.exit("build clusterdns first: cargo build --release")

    work = a.workdir or tempfile.mkdtemp(prefix="clusterdns-pods.")
    os.makedirs(work, exist_ok=True)
    data = os.path.join(work, "data")
    counts = write_data(data, a.queries, a.seed)
    total = sum(counts.values())
    print(f"# pod traffic: {NAMESPACES * SERVICES} Services, {NAMESPACES} headless, {EXTERNAL} external "
          f"names; mix of {total} queries: " + ", ".join(
              f"{k} {100 * counts.get(k, 0) / total:.1f} %" for k in ["cluster", "search-nx", "cache-hit", "cache-miss"]))
    if a.gen_only:
        print(f"# data in {data}")
        return

    procs = []
    try:
        stub_port = free_port()
        stub_log = open(os.path.join(work, "stub.log"), "w")
        stub = start(stub_config(os.path.join(work, "stub"), data, stub_port), stub_log, 1)
        procs.append(stub)
        deadline = time.monotonic() + 30
        while not answers(stub_port, "www.site-0.example.com.", "A"):
            if time.monotonic() > deadline or stub.poll() is not None:
                sys.exit(f"the stub upstream (knotd) did not start; see {work}/stub.log")
            time.sleep(0.1)
        results = []
        # The same questions to every server: their answers must be the same.
        with open(os.path.join(data, "warm.txt")) as f:
            distinct = [tuple(line.split()) for line in f]
        sample = random.Random(a.seed).sample(distinct, min(300, len(distinct)))
        got = {}
        for server in servers:
            port = free_port()
            d = os.path.join(work, server)
            cmd = configure(server, d, data, port, stub_port)
            log = open(os.path.join(work, f"{server}.log"), "w")
            print(f"== {server}: {' '.join(cmd)}", file=sys.stderr)
            p = start(cmd, log, 0)
            procs.append(p)
            if not wait_ready(p, port, time.monotonic() + 60):
                print(f"  {server} did not come up; see {work}/{server}.log", file=sys.stderr)
                stop(p)
                continue
            # Warm-up: every distinct question of the mix but the misses, once.
            w = dnsperf(port, os.path.join(data, "warm.txt"), 0, ["-n", "1"])
            print(f"  warm-up: {w['completed']} queries, {w['rcodes']}", file=sys.stderr)
            got[server] = sample_answers(port, sample)
            for kind in kinds:
                r = measure(p.pid, port, os.path.join(data, f"{kind}.txt"), a.duration, a.quiet_max, stub.pid)
                r.update(server=server, kind=kind, rss=rss_mib(p.pid))
                results.append(r)
                print(f"  {kind}: {r['qps']:.0f} qps, {r['us_per_q']:.2f} us/q, lost {r['lost']:.2f} %, "
                      f"other {r['other']:.0f} %, {r['rcodes']}", file=sys.stderr)
            stop(p)
            procs.remove(p)
        ref = next(iter(got), None)
        for server, answers_of in got.items():
            if server == ref:
                continue
            diff = [q for q in sample if answers_of[q] != got[ref][q]]
            print(f"# answers of {server} to {len(sample)} sampled questions: "
                  + (f"the same as {ref}'s" if not diff else f"{len(diff)} differ from {ref}'s, e.g. "
                     + "; ".join(f"{q[0]} {q[1]}: {answers_of[q]} vs {got[ref][q]}" for q in diff[:3])))
        vers = "; ".join(f"{s} {version(s)}" for s in servers)
        print(f"# dnsperf -q 100 -c 8 -l {a.duration} on CPU 1, each server on CPU 0 (one worker); "
              f"{os.cpu_count()} cpus; {vers}")
        print(f"{'server':<14} {'kind':<11} {'QPS':>9} {'srv_us/q':>9} {'lost%':>6} {'other%':>6} {'RSS_MiB':>8}  rcodes")
        for r in results:
            print(f"{r['server']:<14} {r['kind']:<11} {r['qps']:>9.0f} {r['us_per_q']:>9.2f} {r['lost']:>6.2f} "
                  f"{r['other']:>6.0f} {r['rss']:>8.1f}  {r['rcodes']}")
        # One line per server: srv_us/q for each kind.
        print()
        print(f"{'srv_us/q':<14} " + " ".join(f"{k:>10}" for k in kinds))
        for s in servers:
            row = {r["kind"]: r["us_per_q"] for r in results if r["server"] == s}
            if row:
                print(f"{s:<14} " + " ".join(f"{row.get(k, float('nan')):>10.2f}" for k in kinds))
    finally:
        for p in procs:
            stop(p)
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
