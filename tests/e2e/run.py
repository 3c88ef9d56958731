#!/usr/bin/env python3
"""clusterdns end to end: the pods' path to cluster DNS on a "node" made of network namespaces.

    sudo python3 tests/e2e/run.py [--binary target/debug/clusterdns] [--keep]

Topology (every address from 198.18.0.0/15, 192.0.2.0/24 or 198.51.100.0/24; nothing leaves the
namespaces this script makes, and it removes all of them on exit, error or Ctrl-C):

* `node`: routes between the pods' veths, and holds the `kube-dns` VIP 198.19.0.10 as kube-proxy
  (iptables mode) does: `KUBE-SERVICES` -> `KUBE-SVC` -> `KUBE-SEP` chains, random-probability
  DNAT to each ready replica for UDP and TCP, UDP conntrack entries flushed when an endpoint goes;
* two clusterdns replicas, each in its own namespace with its own pod IP, running kubeadm's
  Corefile (../shared/corefiles/kubeadm.Corefile, rendered for cluster.local, unchanged) on :53
  from a ConfigMap volume in the kubelet's `..data` layout, reaching the API through a kubeconfig,
  with `/etc/resolv.conf` naming the suite's upstream (dnsPolicy: Default);
* the fake API server (../shared/conformance/fakeapi.py) on 192.0.2.2:6443 and an upstream DNS
  server for example.org (upstream.py) on 198.51.100.53, each in a namespace of its own;
* client pods whose resolv.conf is what the kubelet writes (search default.svc.cluster.local
  svc.cluster.local cluster.local, nameserver = the VIP, options ndots:5), running real
  resolvers: glibc (getent, a getaddrinfo program), musl (the same program built with musl-gcc),
  Go's resolver (CGO_ENABLED=0), Node's c-ares Resolver, dig, host and nslookup.

Then: every resolver's answers against what the fixture implies (computed here from
cluster.yaml and example.org.zone by the Kubernetes DNS specification), and fault phases while
each client resolves in a loop through the VIP, one summary line per phase. Exit status 1 names
every failing phase and its failed lookups.
"""

import argparse
import ctypes
import glob
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.reversename
import dns.zone
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KIT = os.path.normpath(os.path.join(ROOT, "..", "shared", "conformance"))
KUBEADM = os.path.normpath(os.path.join(ROOT, "..", "shared", "corefiles", "kubeadm.Corefile"))

PREFIX = "cdnse2e"               # every namespace this suite makes starts with it
NODE = f"{PREFIX}-node"
VIP = "198.19.0.10"              # stands for kube-dns's ClusterIP (10.96.0.10 in the fixture)
API_IP, API_GW = "192.0.2.2", "192.0.2.1"
UP_IP, UP_GW = "198.51.100.53", "198.51.100.1"
DOMAIN = "cluster.local"
SEARCH = ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
LAMEDUCK = 5.0                   # kubeadm's Corefile: health { lameduck 5s }
PROPAGATION = 1.0                # pod deleted/died -> kube-proxy has dropped the endpoint
LOOP_MS = 100                    # each loop client: one lookup, then this pause
SLOW_MS = 1000                   # a lookup this slow waited for a resolver timeout

T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


class SuiteError(Exception):
    """The suite could not run (not a failed phase)."""


def pod_net(n):
    """Pod n's address and its gateway on the node."""
    return f"198.18.{n}.2", f"198.18.{n}.1"


def sh(*argv, check=True, timeout=30, input=None):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise SuiteError(f"{' '.join(argv)}: exit {r.returncode}: {r.stderr.strip() or r.stdout.strip()}")
    return r


def in_ns(ns, *argv, **kw):
    return sh("ip", "netns", "exec", ns, *argv, **kw)


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(url, body=None, timeout=2.0):
    """(status, text); status None when nothing answers."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    try:
        with NO_PROXY.open(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (OSError, urllib.error.URLError):
        return None, ""


def setns_fd(fd):
    """Moves the calling thread (and the threads and processes it starts) into the network
    namespace `fd` refers to."""
    if hasattr(os, "setns"):
        os.setns(fd, os.CLONE_NEWNET)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        setns_fd(fd)
    finally:
        os.close(fd)


def query(server, name, rdtype, timeout=1.0):
    """One UDP query straight to a server (from the node); None on timeout."""
    q = dns.message.make_query(name, rdtype)
    try:
        return dns.query.udp(q, server, timeout=timeout)
    except (dns.exception.Timeout, OSError):
        return None


def quantile(sorted_values, p):
    if not sorted_values:
        return 0.0
    i = max(0, min(len(sorted_values) - 1, int(-(-p * len(sorted_values) // 1)) - 1))
    return sorted_values[i]


# ----------------------------------------------------------------------------------------------
# What the fixture implies

def family(ip):
    return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"


def dashed(ip):
    return ip.replace(".", "-").replace(":", "-")


class Spec:
    """The records the cluster objects and the upstream's zone imply, by the Kubernetes DNS
    specification (schema 1.1.0): ClusterIP A/AAAA per family, headless A/AAAA per ready endpoint
    (`ready` unset counts as ready), hostname records, SRV per named port, ExternalName CNAME
    (chased through the upstream), PTR for ClusterIPs and endpoint addresses, pods `insecure`
    (`a-b-c-d.NS.pod`). Computed from the objects, never from what a server answers."""

    def __init__(self, objects, zone):
        self.namespaces = set()
        self.services = {}
        self.slices = []
        for o in objects:
            md = o.get("metadata") or {}
            if o["kind"] == "Namespace":
                self.namespaces.add(md["name"])
            elif o["kind"] == "Service":
                self.services[(md.get("namespace", "default"), md["name"])] = o
            elif o["kind"] == "EndpointSlice":
                self.slices.append(o)
        self.zone = zone

    def endpoints(self, ns, name, fam):
        out = []
        for s in self.slices:
            md = s["metadata"]
            if md.get("namespace") != ns or (md.get("labels") or {}).get("kubernetes.io/service-name") != name:
                continue
            if s.get("addressType") != fam:
                continue
            for ep in s.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready") is False:
                    continue
                for a in ep["addresses"]:
                    out.append((a, ep.get("hostname")))
        return out

    @staticmethod
    def cluster_ips(svc, fam):
        spec = svc["spec"]
        ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
        return [ip for ip in ips if ip != "None" and family(ip) == fam]

    @staticmethod
    def headless(svc):
        return svc["spec"].get("clusterIP") == "None"

    def answer(self, qname, qtype):
        """(rcode, [(type, value)]) for an absolute name."""
        name = qname.lower().rstrip(".")
        if name == DOMAIN or name.endswith("." + DOMAIN):
            rest = name[: -len(DOMAIN)].rstrip(".")
            return self._cluster(rest.split(".") if rest else [], qtype)
        if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
            return self._ptr(name, qtype)
        return self._zone(name, qtype)

    def _cluster(self, labels, qtype):
        fam = {"A": "IPv4", "AAAA": "IPv6"}.get(qtype)
        if not labels:
            return "NOERROR", []
        if labels[-1] == "pod" and len(labels) == 3:
            ip_text, ns = labels[0], labels[1]
            ip = ip_text.replace("-", ".")
            if ns not in self.namespaces:
                return "NXDOMAIN", []
            return "NOERROR", [(qtype, ip)] if fam == "IPv4" else []
        if labels[-1] != "svc" or len(labels) < 3:
            return "NXDOMAIN", []
        labels = labels[:-1]
        ns, name = labels[-1], labels[-2]
        svc = self.services.get((ns, name))
        if svc is None:
            return "NXDOMAIN", []
        etype = svc["spec"].get("type")
        if len(labels) == 2:
            if etype == "ExternalName":
                target = svc["spec"]["externalName"].rstrip(".") + "."
                if qtype in ("A", "AAAA", "CNAME"):
                    chased = [] if qtype == "CNAME" else self.answer(target, qtype)[1]
                    return "NOERROR", [("CNAME", target)] + chased
                return "NOERROR", []
            if fam is None:
                return "NOERROR", []
            if self.headless(svc):
                return "NOERROR", [(qtype, a) for a, _ in self.endpoints(ns, name, fam)]
            return "NOERROR", [(qtype, ip) for ip in self.cluster_ips(svc, fam)]
        if len(labels) == 3:
            host = labels[0]
            for f in ("IPv4", "IPv6"):
                for a, h in self.endpoints(ns, name, f):
                    if host in (h, dashed(a)):
                        return "NOERROR", [(qtype, a)] if f == fam else []
            return "NXDOMAIN", []
        if len(labels) == 4 and labels[0].startswith("_") and labels[1].startswith("_"):
            port, proto = labels[0][1:], labels[1][1:]
            ports = [p for p in svc["spec"].get("ports") or []
                     if p.get("name") == port and p.get("protocol", "TCP").lower() == proto]
            if not ports:
                return "NXDOMAIN", []
            if qtype != "SRV":
                return "NOERROR", []
            out = []
            for p in ports:
                if self.headless(svc):
                    for f in ("IPv4", "IPv6"):
                        for a, h in self.endpoints(ns, name, f):
                            out.append(("SRV", f"{p['port']} {h or dashed(a)}.{name}.{ns}.svc.{DOMAIN}."))
                else:
                    out.append(("SRV", f"{p['port']} {name}.{ns}.svc.{DOMAIN}."))
            return "NOERROR", out
        return "NXDOMAIN", []

    def _ptr(self, name, qtype):
        ip = dns.reversename.to_address(dns.name.from_text(name))
        for (ns, n), svc in self.services.items():
            if not self.headless(svc) and ip in self.cluster_ips(svc, family(ip)):
                return "NOERROR", [("PTR", f"{n}.{ns}.svc.{DOMAIN}.")] if qtype == "PTR" else []
        for (ns, n), svc in self.services.items():
            for a, h in self.endpoints(ns, n, family(ip)):
                if a == ip:
                    return "NOERROR", [("PTR", f"{h or dashed(a)}.{n}.{ns}.svc.{DOMAIN}.")] if qtype == "PTR" else []
        return "NXDOMAIN", []

    def _zone(self, name, qtype):
        n = dns.name.from_text(name)
        if not n.is_subdomain(self.zone.origin):
            return "NXDOMAIN", []
        node = self.zone.get_node(n)
        if node is None:
            return "NXDOMAIN", []
        rds = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.from_text(qtype))
        return "NOERROR", [(qtype, rd.to_text()) for rd in rds] if rds else []

    @staticmethod
    def expansions(name):
        """The names a stub resolver with the kubelet's resolv.conf (ndots:5) tries, in order."""
        if name.endswith("."):
            return [name]
        tail = [f"{name}.{s}." for s in SEARCH]
        return [name + "."] + tail if name.count(".") >= 5 else tail + [name + "."]

    def resolve(self, name, qtypes):
        """The values of `qtypes` at the first search expansion that has any, or None
        (NXDOMAIN/NODATA everywhere)."""
        for fq in self.expansions(name):
            vals = [v for t in qtypes for (rt, v) in self.answer(fq, t)[1] if rt == t]
            if vals:
                return vals
        return None


# ----------------------------------------------------------------------------------------------
# The node

class Suite:
    def __init__(self, opts):
        self.opts = opts
        self.work = tempfile.mkdtemp(prefix="clusterdns-e2e-")
        self.procs = []          # (Popen, label): everything started, killed by PID at the end
        self.host_netns = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.api_up = False
        self.api = None
        self.vip = None
        self.replicas = []
        self.next_replica = 1
        self.failures = []       # (phase, [lines])

    # -- processes
    def spawn(self, label, ns, argv, resolv=None, hosts=None, nss=None, env=None, cwd=None,
              stdout=None):
        if resolv or hosts or nss:
            script = ('set -e; [ -z "$1" ] || mount --bind "$1" /etc/resolv.conf; '
                      '[ -z "$2" ] || mount --bind "$2" /etc/hosts; '
                      '[ -z "$3" ] || mount --bind "$3" /etc/nsswitch.conf; shift 3; exec "$@"')
            argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                    resolv or "", hosts or "", nss or ""] + list(argv)
        logf = open(os.path.join(self.work, f"{label}.log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv), stdout=stdout or logf,
                             stderr=logf, env=env or self.env(), cwd=cwd or self.work,
                             stdin=subprocess.DEVNULL)
        self.procs.append((p, label))
        return p

    def env(self, **extra):
        e = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": self.work,
             "LANG": "C.UTF-8"}
        e.update(extra)
        return e

    def cleanup(self):
        for p, _ in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 3
        for p, _ in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        try:
            setns_fd(self.host_netns)
        except OSError:
            pass
        remove_namespaces()
        if self.opts.keep or self.failures:
            log(f"logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # -- network
    def sandbox(self, ns, veth, addr, gw):
        """A namespace with eth0 = addr/24, its gateway gw on the node's end of the veth."""
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", NODE, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", NODE, "addr", "add", f"{gw}/24", "dev", veth)
        sh("ip", "-n", NODE, "link", "set", veth, "up")
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", gw)

    def build_node(self):
        sh("ip", "netns", "add", NODE)
        sh("ip", "-n", NODE, "link", "set", "lo", "up")
        in_ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        setns(f"/run/netns/{NODE}")   # from here on, this process's sockets are the node's
        self.vip = Vip(self)

    def write(self, name, text):
        path = os.path.join(self.work, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path


def remove_namespaces():
    """Kills what runs in this suite's namespaces (only this suite's processes run there) and
    deletes them: their veths, routes, iptables rules and conntrack entries go with them."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = [line.split()[0] for line in r.stdout.splitlines() if line.startswith(PREFIX + "-")]
    for ns in names:
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


class Vip:
    """kube-proxy's iptables mode for the kube-dns Service, in the node namespace."""

    # kube-proxy's chain for kube-system/kube-dns:dns; here one chain serves UDP and TCP.
    SVC = "KUBE-SVC-TCOU7JCQXEZGVUNU"

    def __init__(self, suite):
        self.suite = suite
        self.endpoints = []
        self.restore(f"""*nat
:KUBE-SERVICES - [0:0]
:{self.SVC} - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A KUBE-SERVICES -d {VIP}/32 -p udp -m udp --dport 53 -j {self.SVC}
-A KUBE-SERVICES -d {VIP}/32 -p tcp -m tcp --dport 53 -j {self.SVC}
COMMIT
""", noflush=False)

    @staticmethod
    def sep(ip):
        return "KUBE-SEP-" + ip.replace(".", "-")

    @staticmethod
    def restore(text, noflush=True):
        sh("iptables-restore", *(["--noflush"] if noflush else []), input=text)

    def set(self, ips):
        """Programs the VIP for `ips` in one iptables-restore, as kube-proxy's sync does; flushes
        the UDP conntrack entries of endpoints that left."""
        gone = [ip for ip in self.endpoints if ip not in ips]
        lines = ["*nat", f":{self.SVC} - [0:0]"]
        lines += [f":{self.sep(ip)} - [0:0]" for ip in ips + gone]
        for i, ip in enumerate(ips):
            left = len(ips) - i
            prob = [] if left == 1 else ["-m", "statistic", "--mode", "random", "--probability", f"{1 / left:.11f}"]
            lines.append(" ".join(["-A", self.SVC, "-m", "comment", "--comment",
                                   f'"kube-system/kube-dns:dns -> {ip}:53"'] + prob + ["-j", self.sep(ip)]))
            for proto in ("udp", "tcp"):
                lines.append(f"-A {self.sep(ip)} -p {proto} -m {proto} -j DNAT --to-destination {ip}:53")
        lines += [f"-X {self.sep(ip)}" for ip in gone]
        lines.append("COMMIT")
        self.restore("\n".join(lines) + "\n")
        for ip in gone:
            sh("conntrack", "-D", "-p", "udp", "--orig-dst", VIP, "--dst-nat", ip, check=False)
        self.endpoints = list(ips)
        api = self.suite.api
        if api is not None and self.suite.api_up:
            api.apply({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                       "metadata": {"name": "kube-dns-7x2lq", "namespace": "kube-system",
                                    "labels": {"kubernetes.io/service-name": "kube-dns"}},
                       "addressType": "IPv4",
                       "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips],
                       "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                                 {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                                 {"name": "metrics", "port": 9153, "protocol": "TCP"}]})

    def add(self, ip):
        self.set(self.endpoints + [ip])

    def remove(self, ip):
        self.set([e for e in self.endpoints if e != ip])


def wait_for_line(path, text, proc, what):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with open(path) as f:
            if text in f.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise SuiteError(f"{what} did not start (see the logs)")


class FakeApi:
    """../shared/conformance/fakeapi.py on 192.0.2.2:6443, with a bookmark a minute as the API
    server sends them. A restart carries its objects and resource version over, as etcd keeps
    them across API server restarts."""

    NS = f"{PREFIX}-api"

    def __init__(self, suite):
        self.suite = suite
        self.proc = None
        suite.sandbox(self.NS, "cde-api", API_IP, API_GW)
        self.url = f"http://{API_IP}:6443"

    def start(self, fixture, initial_rv=None):
        argv = ["python3", os.path.join(KIT, "fakeapi.py"), "--fixture", fixture,
                "--host", API_IP, "--port", "6443", "--bookmark-interval", "60"]
        if initial_rv is not None:
            argv += ["--initial-rv", str(initial_rv)]
        out = os.path.join(self.suite.work, "api.stdout")
        with open(out, "wb") as f:
            self.proc = self.suite.spawn("fakeapi", self.NS, argv, stdout=f)
        wait_for_line(out, "listening on", self.proc, "the fake API server")
        self.suite.api_up = True

    def kill(self):
        self.suite.api_up = False
        self.proc.kill()
        self.proc.wait()

    def control(self, op, body=None):
        status, text = http(f"{self.url}/_control/{op}", body=body, timeout=10)
        if status != 200:
            raise SuiteError(f"fake API {op}: {status} {text[:200]}")
        return json.loads(text)

    def apply(self, *objs):
        self.control("apply", json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objs)}).encode())

    def delete(self, *refs):
        self.control("delete", json.dumps({"apiVersion": "v1", "kind": "List", "items": list(refs)}).encode())

    def objects(self):
        return self.control("objects")["items"]

    def rv(self):
        return int(self.control("state")["resourceVersion"])


class Replica:
    """A clusterdns pod: its sandbox (namespace, IP), its ConfigMap volume, its container."""

    def __init__(self, suite, corefile):
        self.suite = suite
        self.n = suite.next_replica
        suite.next_replica += 1
        self.name = f"coredns-{self.n}"
        self.ns = f"{PREFIX}-r{self.n}"
        self.ip, gw = pod_net(self.n)
        suite.sandbox(self.ns, f"cde-r{self.n}", self.ip, gw)
        self.dir = os.path.join(suite.work, self.name)
        self.volume = os.path.join(self.dir, "etc-coredns")
        os.makedirs(self.volume)
        self.version = 0
        self.update_configmap(corefile)
        self.proc = None
        self.restarts = 0

    def update_configmap(self, corefile):
        """The kubelet's atomic writer: a new timestamped directory, `..data` swapped to it by
        rename, the old one removed; `Corefile` -> `..data/Corefile` never changes."""
        self.version += 1
        new = f"..2026_01_01_00_{self.version:02d}_00.{os.getpid()}"
        os.makedirs(os.path.join(self.volume, new))
        with open(os.path.join(self.volume, new, "Corefile"), "w") as f:
            f.write(corefile)
        data = os.path.join(self.volume, "..data")
        old = os.readlink(data) if os.path.islink(data) else None
        tmp = os.path.join(self.volume, "..data_tmp")
        os.symlink(new, tmp)
        os.rename(tmp, data)
        if old:
            shutil.rmtree(os.path.join(self.volume, old))
        link = os.path.join(self.volume, "Corefile")
        if not os.path.islink(link):
            os.symlink("..data/Corefile", link)

    def start(self):
        s = self.suite
        self.proc = s.spawn(f"{self.name}.{self.restarts}", self.ns,
                            [s.opts.binary, "-conf", os.path.join(self.volume, "Corefile")],
                            resolv=s.node_resolv, cwd=self.dir,
                            env=s.env(KUBECONFIG=s.kubeconfig))

    def ready(self):
        return http(f"http://{self.ip}:8181/ready", timeout=1)[0]

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready() == 200:
                return
            if self.proc.poll() is not None:
                raise SuiteError(f"{self.name} exited with {self.proc.returncode} (see {self.name}.*.log)")
            time.sleep(0.1)
        raise SuiteError(f"{self.name}: /ready not 200 after {timeout} s")

    def metrics(self):
        return http(f"http://{self.ip}:9153/metrics", timeout=2)[1]

    def metric_sum(self, prefix, having=""):
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(prefix) and having in line:
                total += float(line.rsplit(" ", 1)[1])
        return total

    def reload_hash(self):
        m = re.search(r'coredns_reload_version_info\{hash="sha512",value="([0-9a-f]+)"\}', self.metrics())
        return m.group(1) if m else None

    def delete_sandbox(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


class ClientPod:
    """A pod in namespace default with the kubelet's resolv.conf and hosts file."""

    def __init__(self, suite, name, n):
        self.suite = suite
        self.name = name
        self.ns = f"{PREFIX}-pod-{name}"
        self.ip, gw = pod_net(n)
        suite.sandbox(self.ns, f"cde-c{n}", self.ip, gw)
        self.hosts = suite.write(f"{name}/hosts", (
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
            f"fe00::1\tip6-mcastprefix\n{self.ip}\t{name}\n"))

    def argv(self, argv):
        s = self.suite
        script = ('set -e; mount --bind "$1" /etc/resolv.conf; mount --bind "$2" /etc/hosts; '
                  '[ -z "$3" ] || mount --bind "$3" /etc/nsswitch.conf; shift 3; exec "$@"')
        return ["ip", "netns", "exec", self.ns, "unshare", "-m", "--propagation", "private",
                "sh", "-c", script, "sh", s.pod_resolv, self.hosts, s.pod_nss or ""] + list(argv)

    def run(self, argv, timeout=60):
        t = time.monotonic()
        r = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout,
                           env=self.suite.env(), cwd=self.suite.work)
        return r, time.monotonic() - t

    def spawn(self, label, argv):
        s = self.suite
        p = subprocess.Popen(self.argv(argv), stdout=subprocess.PIPE,
                             stderr=open(os.path.join(s.work, f"{label}.log"), "ab"),
                             env=s.env(), cwd=s.work, stdin=subprocess.DEVNULL, text=True, bufsize=1)
        s.procs.append((p, label))
        return p


# ----------------------------------------------------------------------------------------------
# Resolver checks

NOTFOUND = {"NONAME", "NOTFOUND", "ENOTFOUND"}


def norm(v):
    return v.strip().rstrip(".").lower()


def parse_lookup(r):
    lines = [x for x in r.stdout.splitlines() if x.strip()]
    if lines and lines[0].startswith("ERR "):
        code = lines[0][4:].strip()
        return "NXDOMAIN" if code in NOTFOUND else f"ERR {code}"
    return tuple(sorted(norm(x) for x in lines))


def parse_getent(col):
    def parse(r):
        if r.returncode == 2:
            return "NXDOMAIN"
        if r.returncode != 0:
            return f"ERR exit {r.returncode}"
        return tuple(sorted({norm(line.split()[col]) for line in r.stdout.splitlines() if line.strip()}))
    return parse


def parse_dig(rtype):
    def parse(r):
        m = re.search(r"status: (\w+)", r.stdout)
        if not m:
            return f"ERR {r.stdout.strip()[-80:]}"
        if m.group(1) != "NOERROR":
            return m.group(1)
        sect = r.stdout.split(";; ANSWER SECTION:", 1)
        vals = []
        if len(sect) == 2:
            for line in sect[1].split("\n\n", 1)[0].splitlines():
                f = line.split()
                if len(f) >= 5 and f[3] == rtype:
                    vals.append(norm(" ".join(f[6:]) if rtype == "SRV" else f[4]))
        return tuple(sorted(vals))
    return parse


def parse_host(r):
    if "NXDOMAIN" in r.stdout:
        return "NXDOMAIN"
    vals = []
    for line in r.stdout.splitlines():
        for pat in (r"has (?:IPv6 )?address (\S+)$", r"domain name pointer (\S+)$",
                    r"has SRV record \d+ \d+ (\d+ \S+)$"):
            m = re.search(pat, line)
            if m:
                vals.append(norm(m.group(1)))
    return tuple(sorted(vals)) if vals else f"ERR {r.stdout.strip()[-80:]}"


def parse_nslookup(r):
    if "NXDOMAIN" in r.stdout:
        return "NXDOMAIN"
    vals = []
    for line in r.stdout.splitlines():
        if line.startswith("Server:") or ("#" in line and line.startswith("Address:")):
            continue
        for pat in (r"^Address: (\S+)$", r"name = (\S+)$", r"service = \d+ \d+ (\d+ \S+)$"):
            m = re.search(pat, line.strip())
            if m:
                vals.append(norm(m.group(1)))
    return tuple(sorted(vals)) if vals else f"ERR {r.stdout.strip()[-80:]}"


class Check:
    def __init__(self, resolver, pod, argv, parse, expect, fast=False, note=""):
        self.resolver, self.pod, self.argv, self.parse = resolver, pod, argv, parse
        self.expect, self.fast, self.note = expect, fast, note
        # A check of the 80-endpoint Service that must be retried over TCP.
        self.tcp = "retried over TCP" in note


def addrs(vals):
    return "NXDOMAIN" if vals is None else tuple(sorted(norm(v) for v in vals))


def musl_version():
    """(major, minor, patch) of the musl that musl-gcc links, from its dynamic loader's banner."""
    for loader in glob.glob("/lib/ld-musl-*.so.1"):
        out = subprocess.run([loader], capture_output=True, text=True).stderr
        m = re.search(r"Version (\d+)\.(\d+)\.(\d+)", out)
        if m:
            return tuple(int(x) for x in m.groups())
    return None


def musl_truncated_count(qname):
    """A records that fit a 512-byte UDP reply without EDNS (musl sends none): header 12,
    question = name + 4, each answer 16 (2-byte compression pointer to the question's name,
    type, class, TTL, rdlength, 4-byte address)."""
    return (512 - 12 - (len(dns.name.from_text(qname).to_wire()) + 4)) // 16


def resolver_checks(suite, spec):
    g, m, go, nd = suite.pods["glibc"], suite.pods["musl"], suite.pods["go"], suite.pods["nodejs"]
    bins = suite.bins
    A, AAAA, BOTH = ("A",), ("AAAA",), ("A", "AAAA")

    def getent_hosts(name):
        # getent hosts: gethostbyname2(AF_INET6), then AF_INET when that finds nothing.
        return addrs(spec.resolve(name, AAAA) or spec.resolve(name, A))

    def ptr(ip):
        return addrs([v for _, v in spec.answer(dns.reversename.from_address(ip).to_text(), "PTR")[1]] or None)

    def srv(name):
        for fq in spec.expansions(name):
            vals = [v for t, v in spec.answer(fq, "SRV")[1] if t == "SRV"]
            if vals:
                return tuple(sorted(norm(v) for v in vals))
        return "NXDOMAIN"

    big = spec.resolve("big", A)
    fq = lambda n: n + "." + SEARCH[0] if "." not in n else n + ".svc." + DOMAIN  # noqa: E731
    cname_target = norm(spec.answer("payments.shop.svc.cluster.local.", "CNAME")[1][0][1])
    musl_big = musl_truncated_count("big." + SEARCH[0] + ".")
    musl_tcp = (musl_version() or (0, 0, 0)) >= (1, 2, 4)   # 1.2.4 added the TCP fallback

    c = []
    # glibc: getent (NSS -> the stub resolver), and getaddrinfo from a C program.
    c += [Check("glibc", g, ["getent", "hosts", "web"], parse_getent(0), getent_hosts("web")),
          Check("glibc", g, ["getent", "ahosts", "web.shop"], parse_getent(0), addrs(spec.resolve("web.shop", BOTH)), note="dual stack"),
          Check("glibc", g, ["getent", "ahostsv4", "db.shop"], parse_getent(0), addrs(spec.resolve("db.shop", A)), note="headless"),
          Check("glibc", g, ["getent", "hosts", "db-0.db.shop"], parse_getent(0), getent_hosts("db-0.db.shop"), note="StatefulSet pod"),
          Check("glibc", g, ["getent", "ahosts", "payments.shop"], parse_getent(0), addrs(spec.resolve("payments.shop", BOTH)), note="ExternalName"),
          Check("glibc", g, ["getent", "ahosts", "www.example.org"], parse_getent(0), addrs(spec.resolve("www.example.org", BOTH)), note="external via search path"),
          Check("glibc", g, ["getent", "ahostsv4", "198-18-21-2.default.pod"], parse_getent(0), addrs(spec.resolve("198-18-21-2.default.pod", A)), note="pod A"),
          Check("glibc", g, ["getent", "hosts", "10.96.1.10"], parse_getent(1), ptr("10.96.1.10"), note="PTR"),
          Check("glibc", g, ["getent", "hosts", "198.18.50.10"], parse_getent(1), ptr("198.18.50.10"), note="PTR endpoint"),
          Check("glibc", g, ["getent", "hosts", "nosuch"], parse_getent(0), "NXDOMAIN", fast=True),
          Check("glibc", g, ["getent", "ahostsv4", "big"], parse_getent(0), addrs(big), note="80 endpoints: TC, retried over TCP"),
          Check("glibc", g, [bins["glibc"], "host", "big"], parse_lookup, addrs(big), note="getaddrinfo, 80 endpoints: TC, retried over TCP")]
    # musl: the same getaddrinfo program, linked with musl.
    c += [Check("musl", m, [bins["musl"], "host", "web"], parse_lookup, addrs(spec.resolve("web", BOTH))),
          Check("musl", m, [bins["musl"], "host", "web.shop"], parse_lookup, addrs(spec.resolve("web.shop", BOTH)), note="dual stack"),
          Check("musl", m, [bins["musl"], "host", "db.shop"], parse_lookup, addrs(spec.resolve("db.shop", BOTH)), note="headless"),
          Check("musl", m, [bins["musl"], "host", "db-0.db.shop"], parse_lookup, addrs(spec.resolve("db-0.db.shop", BOTH)), note="StatefulSet pod"),
          Check("musl", m, [bins["musl"], "host", "payments.shop"], parse_lookup, addrs(spec.resolve("payments.shop", BOTH)), note="ExternalName"),
          Check("musl", m, [bins["musl"], "host", "www.example.org"], parse_lookup, addrs(spec.resolve("www.example.org", BOTH)), note="external via search path"),
          Check("musl", m, [bins["musl"], "addr", "10.96.1.10"], parse_lookup, ptr("10.96.1.10"), note="PTR"),
          Check("musl", m, [bins["musl"], "addr", "198.18.50.10"], parse_lookup, ptr("198.18.50.10"), note="PTR endpoint"),
          Check("musl", m, [bins["musl"], "host", "nosuch"], parse_lookup, "NXDOMAIN", fast=True),
          Check("musl", m, [bins["musl"], "host4", "big"], parse_lookup, addrs(big), note="80 endpoints: TC, retried over TCP")
          if musl_tcp else
          Check("musl", m, [bins["musl"], "host4", "big"], parse_lookup, ("subset", frozenset(addrs(big)), musl_big),
                note=f"80 endpoints: musl before 1.2.4 keeps the truncated UDP answer, the {musl_big} A records that fit 512 bytes (no TCP retry)")]
    # Go's resolver.
    c += [Check("go", go, [bins["go"], "host", "web"], parse_lookup, addrs(spec.resolve("web", BOTH))),
          Check("go", go, [bins["go"], "host", "web.shop"], parse_lookup, addrs(spec.resolve("web.shop", BOTH)), note="dual stack"),
          Check("go", go, [bins["go"], "host", "db.shop"], parse_lookup, addrs(spec.resolve("db.shop", BOTH)), note="headless"),
          Check("go", go, [bins["go"], "host", "db-0.db.shop"], parse_lookup, addrs(spec.resolve("db-0.db.shop", BOTH)), note="StatefulSet pod"),
          Check("go", go, [bins["go"], "srv", "postgres", "tcp", "db.shop"], parse_lookup, srv("_postgres._tcp.db.shop"), note="SRV"),
          Check("go", go, [bins["go"], "cname", "payments.shop"], parse_lookup, (cname_target,), note="ExternalName CNAME"),
          Check("go", go, [bins["go"], "host", "payments.shop"], parse_lookup, addrs(spec.resolve("payments.shop", BOTH)), note="ExternalName"),
          Check("go", go, [bins["go"], "host", "www.example.org"], parse_lookup, addrs(spec.resolve("www.example.org", BOTH)), note="external via search path"),
          Check("go", go, [bins["go"], "addr", "10.96.1.10"], parse_lookup, ptr("10.96.1.10"), note="PTR"),
          Check("go", go, [bins["go"], "addr", "198.18.50.10"], parse_lookup, ptr("198.18.50.10"), note="PTR endpoint"),
          Check("go", go, [bins["go"], "host", "nosuch"], parse_lookup, "NXDOMAIN", fast=True),
          Check("go", go, [bins["go"], "host", "big"], parse_lookup, addrs(big), note="80 endpoints: TC, retried over TCP")]
    # Node's c-ares Resolver (no search list: fully qualified names).
    node = ["node", bins["node"]]
    c += [Check("c-ares", nd, node + ["host", fq("web")], parse_lookup, addrs(spec.resolve(fq("web") + ".", BOTH))),
          Check("c-ares", nd, node + ["host", fq("web.shop")], parse_lookup, addrs(spec.resolve(fq("web.shop") + ".", BOTH)), note="dual stack"),
          Check("c-ares", nd, node + ["host", fq("db.shop")], parse_lookup, addrs(spec.resolve(fq("db.shop") + ".", BOTH)), note="headless"),
          Check("c-ares", nd, node + ["host", fq("db-0.db.shop")], parse_lookup, addrs(spec.resolve(fq("db-0.db.shop") + ".", BOTH)), note="StatefulSet pod"),
          Check("c-ares", nd, node + ["srv", fq("_postgres._tcp.db.shop")], parse_lookup, srv(fq("_postgres._tcp.db.shop") + "."), note="SRV"),
          Check("c-ares", nd, node + ["cname", fq("payments.shop")], parse_lookup, (cname_target,), note="ExternalName CNAME"),
          Check("c-ares", nd, node + ["host", "www.example.org"], parse_lookup, addrs(spec.resolve("www.example.org.", BOTH)), note="external"),
          Check("c-ares", nd, node + ["addr", "10.96.1.10"], parse_lookup, ptr("10.96.1.10"), note="PTR"),
          Check("c-ares", nd, node + ["addr", "198.18.50.10"], parse_lookup, ptr("198.18.50.10"), note="PTR endpoint"),
          Check("c-ares", nd, node + ["host", fq("nosuch")], parse_lookup, "NXDOMAIN", fast=True),
          Check("c-ares", nd, node + ["host", fq("big")], parse_lookup, addrs(big), note="80 endpoints: TC, retried over TCP")]
    # dig, host, nslookup (BIND 9), with the search path.
    dig = ["dig", "+search", "+time=5", "+tries=2"]
    c += [Check("dig", g, dig + ["web"], parse_dig("A"), addrs(spec.resolve("web", A))),
          Check("dig", g, dig + ["web.shop", "AAAA"], parse_dig("AAAA"), addrs(spec.resolve("web.shop", AAAA)), note="dual stack AAAA"),
          Check("dig", g, dig + ["db-0.db.shop"], parse_dig("A"), addrs(spec.resolve("db-0.db.shop", A)), note="StatefulSet pod"),
          Check("dig", g, dig + ["_postgres._tcp.db.shop", "SRV"], parse_dig("SRV"), srv("_postgres._tcp.db.shop"), note="SRV"),
          Check("dig", g, dig + ["payments.shop"], parse_dig("A"), addrs(spec.resolve("payments.shop", A)), note="ExternalName"),
          Check("dig", g, dig + ["www.example.org"], parse_dig("A"), addrs(spec.resolve("www.example.org", A)), note="external via search path"),
          Check("dig", g, ["dig", "-x", "10.96.1.10"], parse_dig("PTR"), ptr("10.96.1.10"), note="PTR"),
          Check("dig", g, dig + ["nosuch"], parse_dig("A"), "NXDOMAIN", fast=True),
          Check("dig", g, dig + ["big"], parse_dig("A"), addrs(big), note="80 endpoints: TC, retried over TCP")]
    c += [Check("host", g, ["host", "web"], parse_host, addrs(spec.resolve("web", BOTH))),
          Check("host", g, ["host", "web.shop"], parse_host, addrs(spec.resolve("web.shop", BOTH)), note="dual stack"),
          Check("host", g, ["host", "-t", "SRV", "_postgres._tcp.db.shop"], parse_host, srv("_postgres._tcp.db.shop"), note="SRV"),
          Check("host", g, ["host", "198.18.50.10"], parse_host, ptr("198.18.50.10"), note="PTR endpoint"),
          Check("host", g, ["host", "www.example.org"], parse_host, addrs(spec.resolve("www.example.org", BOTH)), note="external via search path"),
          Check("host", g, ["host", "nosuch"], parse_host, "NXDOMAIN", fast=True),
          Check("host", g, ["host", "-t", "A", "big"], parse_host, addrs(big), note="80 endpoints: TC, retried over TCP")]
    c += [Check("nslookup", g, ["nslookup", "web"], parse_nslookup, addrs(spec.resolve("web", BOTH))),
          Check("nslookup", g, ["nslookup", "web.shop"], parse_nslookup, addrs(spec.resolve("web.shop", BOTH)), note="dual stack"),
          Check("nslookup", g, ["nslookup", "-type=SRV", "_postgres._tcp.db.shop"], parse_nslookup, srv("_postgres._tcp.db.shop"), note="SRV"),
          Check("nslookup", g, ["nslookup", "10.96.1.10"], parse_nslookup, ptr("10.96.1.10"), note="PTR"),
          Check("nslookup", g, ["nslookup", "db-0.db.shop"], parse_nslookup, addrs(spec.resolve("db-0.db.shop", BOTH)), note="StatefulSet pod"),
          Check("nslookup", g, ["nslookup", "nosuch"], parse_nslookup, "NXDOMAIN", fast=True),
          Check("nslookup", g, ["nslookup", "-type=A", "big"], parse_nslookup, addrs(big), note="80 endpoints: TC, retried over TCP")]
    return c


def run_checks(suite, spec):
    failed = []
    checks = resolver_checks(suite, spec)
    out = open(os.path.join(suite.work, "checks.log"), "w")

    def tcp_queries():
        return sum(rep.metric_sum("coredns_dns_requests_total{", 'proto="tcp"') for rep in suite.replicas)

    def run(ck):
        r, took = ck.pod.run(ck.argv)
        out.write(f"$ {' '.join(ck.argv)}  (exit {r.returncode}, {took * 1000:.0f} ms)\n{r.stdout}{r.stderr}\n")
        # The lookup's own duration where the client reports it (not Node's start-up), else the
        # command's.
        m = re.search(r"^lookup-ms (\S+)$", r.stderr, re.M)
        return r, (float(m.group(1)) / 1000 if m else took), bool(m)

    for ck in checks:
        tcp0 = tcp_queries() if ck.tcp else 0
        r, took, own = run(ck)
        # A command's time includes its start-up, which another process's burst on this shared
        # machine can stall: the best of three runs, each with the expected answer.
        tries = 1
        while ck.fast and not own and took >= 1.0 and tries < 3 and ck.parse(r) == ck.expect:
            r, again, _ = run(ck)
            took, tries = min(took, again), tries + 1
        got = ck.parse(r)
        if isinstance(ck.expect, tuple) and ck.expect and ck.expect[0] == "subset":
            _, pool, count = ck.expect
            ok = isinstance(got, tuple) and len(got) == count and set(got) <= pool
            want = f"{count} of the {len(pool)} addresses"
        else:
            ok = got == ck.expect
            want = ck.expect
        if ck.fast and took >= 1.0:
            ok = False
            want = f"{want} in under 1 s"
        if ck.tcp and tcp_queries() == tcp0:
            ok = False
            want = f"{want} over TCP (no TCP query reached a replica)"
        shown = got if not isinstance(got, tuple) or len(got) <= 3 else f"{len(got)} records"
        line = f"{ck.resolver:8} {' '.join(os.path.basename(a) for a in ck.argv):48} -> {shown} ({took * 1000:.0f} ms)"
        if ck.note:
            line += f"  [{ck.note}]"
        if ok:
            log("  ok   " + line)
        else:
            log("  FAIL " + line + f"; expected {want}")
            failed.append(line + f"; expected {want}")
    out.close()
    return len(checks), failed


# ----------------------------------------------------------------------------------------------
# Client loops

class Loop:
    """One resolver resolving through the VIP in a loop; every lookup recorded."""

    def __init__(self, suite, label, pod, argv, expect, notfound):
        self.label = label
        self.expect = expect        # name -> "a,b" | "NXDOMAIN"
        self.notfound = notfound
        self.records = []           # (start_ms, latency_ms, name, result, ok, wrong)
        self.lock = threading.Lock()
        self.proc = pod.spawn(f"loop-{label}", argv)
        threading.Thread(target=self.read, daemon=True).start()

    def read(self):
        for line in self.proc.stdout:
            f = line.split()
            if len(f) != 4:
                continue
            start, lat, name, res = int(f[0]), float(f[1]), f[2], f[3]
            want = self.expect[name]
            if want == "NXDOMAIN":
                ok = res == f"ERR:{self.notfound}"
                wrong = not res.startswith("ERR:")
            else:
                ok = res == want
                wrong = not ok and (not res.startswith("ERR:") or res == f"ERR:{self.notfound}")
            with self.lock:
                self.records.append((start, lat, name, res, ok, wrong))

    def last_start(self):
        with self.lock:
            return self.records[-1][0] if self.records else 0

    def window(self, t0, t1):
        with self.lock:
            return [r for r in self.records if t0 * 1000 <= r[0] < t1 * 1000]


class Phase:
    def __init__(self, suite, name):
        self.suite, self.name = suite, name
        self.t0 = time.time()
        self.t1 = None
        self.notes = []
        self.problems = []

    def end(self):
        self.t1 = time.time()
        # Every lookup that started in the phase has ended once each client has started another.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and any(lp.last_start() < self.t1 * 1000 for lp in self.suite.loops):
            time.sleep(0.1)

    def records(self):
        return {lp.label: lp.window(self.t0, self.t1) for lp in self.suite.loops}

    def report(self, allow=None):
        """Prints the phase's summary line. `allow(client, record)` may excuse a failed lookup."""
        per = self.records()
        allrec = [r for recs in per.values() for r in recs]
        lats = sorted(r[1] for r in allrec)
        failed = [(c, r) for c, recs in per.items() for r in recs if not r[4]]
        wrong = [x for x in failed if x[1][5]]
        bad = [x for x in failed if not (allow and allow(*x))]
        if bad:
            self.problems.append(f"{len(bad)} failed lookups")
        for lp in self.suite.loops:
            if lp.proc.poll() is not None or not per[lp.label]:
                self.problems.append(f"the {lp.label} loop client stopped resolving (see loop-{lp.label}.log)")
        line = (f"phase {self.name}: {len(allrec)} lookups, {len(failed)} failed, "
                f"p50 {quantile(lats, 0.5):.1f} ms, p99 {quantile(lats, 0.99):.1f} ms")
        if wrong:
            line += f", {len(wrong)} wrong answers"
        if self.notes:
            line += "; " + "; ".join(self.notes)
        line += " -> " + ("FAILED: " + "; ".join(self.problems) if self.problems else "ok")
        print("E2E " + line, flush=True)
        self.suite.summary.append(line)
        if self.problems:
            detail = [f"{c:7} {time.strftime('%H:%M:%S', time.localtime(r[0] / 1000))}.{r[0] % 1000:03d} "
                      f"{r[2]} -> {r[3]} ({r[1]:.0f} ms){'' if (c, r) in bad else ' (allowed)'}"
                      for c, r in failed]
            self.suite.failures.append((self.name, self.problems, detail))


# ----------------------------------------------------------------------------------------------
# Phases

def phase_baseline(suite):
    ph = Phase(suite, "baseline")
    time.sleep(10)
    ph.end()
    ph.report()


def phase_rolling_restart(suite):
    """One replica at a time: SIGTERM (lameduck keeps answering), the VIP drops it as kube-proxy
    drops a terminating endpoint, a new pod joins when its /ready is 200."""
    ph = Phase(suite, "rolling-restart")
    for old in list(suite.replicas):
        served = old.metric_sum("coredns_dns_requests_total{")
        old.proc.send_signal(signal.SIGTERM)
        t_term = time.monotonic()
        new = Replica(suite, suite.corefile)
        new.start()
        time.sleep(max(0.0, PROPAGATION - (time.monotonic() - t_term)))
        served = old.metric_sum("coredns_dns_requests_total{") - served
        suite.vip.remove(old.ip)
        new.wait_ready()
        suite.vip.add(new.ip)
        suite.replicas[suite.replicas.index(old)] = new
        try:
            rc = old.proc.wait(timeout=LAMEDUCK + 10)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t_term
        if rc != 0:
            ph.problems.append(f"{old.name} exit status {rc} after SIGTERM")
        if took < LAMEDUCK - 0.5:
            ph.problems.append(f"{old.name} exited {took:.1f} s after SIGTERM, before its {LAMEDUCK:.0f} s lameduck")
        ph.notes.append(f"{old.name} -> {new.name} (old answered {served:.0f} queries after SIGTERM, "
                        f"exited {took:.1f} s after it, status {rc})")
        old.delete_sandbox()
    time.sleep(3)
    ph.end()
    ph.report()


def phase_sigkill(suite):
    """SIGKILL one replica with no warning: the kubelet notices, the endpoint turns not ready and
    kube-proxy drops it (PROPAGATION later), then the container is restarted and rejoins."""
    ph = Phase(suite, "sigkill")
    victim = suite.replicas[0]
    t_kill = time.time()
    victim.proc.kill()
    victim.proc.wait()
    time.sleep(PROPAGATION)
    suite.vip.remove(victim.ip)
    t_drop = time.time()
    victim.restarts += 1
    victim.start()
    victim.wait_ready()
    suite.vip.add(victim.ip)
    ph.notes.append(f"{victim.name} killed, dropped from the VIP after {t_drop - t_kill:.1f} s, "
                    f"back after {time.time() - t_kill:.1f} s")
    time.sleep(5)
    ph.end()
    # Failures only for lookups that started before the VIP dropped it; each client loses at
    # most one timeout.
    slow = {client: sum(1 for r in recs if r[1] >= SLOW_MS) for client, recs in ph.records().items()}
    ph.notes.append("lookups that waited for a timeout: " + ", ".join(f"{c} {n}" for c, n in slow.items()))
    for client, n in slow.items():
        if n > 1:
            ph.problems.append(f"{client}: {n} lookups waited for a timeout (at most 1)")
    early = [(c, r) for c, recs in ph.records().items() for r in recs if not r[4] and r[0] < t_drop * 1000]
    wrong = [f"{c} {r[2]} {r[3]} after {r[1] / 1000:.1f} s" for c, r in early if r[5]]
    ph.notes.append(f"{len(early)} failed before the drop (allowed)")
    if wrong:
        # glibc and Go (net.Resolver without StrictErrors) move on to the next search domain when
        # a query times out, and report the last one's NXDOMAIN: a packet DNATed to the dead pod
        # can cost such a client its answer, whoever serves DNS.
        ph.notes.append("of which not-found after a timeout: " + ", ".join(wrong))
    ph.report(allow=lambda c, r: r[0] < t_drop * 1000)


def changes_during_outage(objects):
    """What happens in etcd while this replica's API server is down: a Service created, one
    deleted, a StatefulSet scaled up."""
    out = [o for o in objects if not (o["kind"] == "Service" and o["metadata"]["name"] == "gone"
                                      and o["metadata"].get("namespace") == "default")]
    out.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "late", "namespace": "default"},
                "spec": {"clusterIP": "10.96.1.77", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
    for o in out:
        if o["kind"] == "EndpointSlice" and o["metadata"]["name"] == "db-x7k2p":
            o["endpoints"].append({"addresses": ["198.18.50.13"], "hostname": "db-3", "conditions": {"ready": True}})
    return out


def expected(spec, name, qtype):
    rcode, rrs = spec.answer(name, qtype)
    return rcode, sorted(v for t, v in rrs if t == qtype)


def answered(server, name, qtype, want):
    r = query(server, name, qtype)
    if r is None:
        return False
    got = sorted(f"{rd.port} {rd.target}" if qtype == "SRV" else rd.to_text()
                 for rrset in r.answer if rrset.rdtype == dns.rdatatype.from_text(qtype) for rd in rrset)
    return (dns.rcode.to_text(r.rcode()), got) == want


def wait_answers(suite, spec, names, timeout):
    """Seconds until every replica answers each (name, type) as `spec` says, per replica; None
    where it did not within `timeout`."""
    wants = [(n, t, expected(spec, n, t)) for n, t in names]
    start = time.monotonic()
    done = {}
    while time.monotonic() - start < timeout and len(done) < len(suite.replicas):
        for rep in suite.replicas:
            if rep.name not in done and all(answered(rep.ip, n, t, w) for n, t, w in wants):
                done[rep.name] = time.monotonic() - start
        time.sleep(0.05)
    return {rep.name: done.get(rep.name) for rep in suite.replicas}


def phase_api_outage(suite, seconds):
    """The API server down `seconds` s: answers and /ready unchanged; once it is back (objects and
    resource versions as etcd kept them, plus changes made meanwhile) the changes are answered
    within 5 s."""
    ph = Phase(suite, "api-outage")
    objects = suite.api.objects()
    rv = suite.api.rv()
    suite.api.kill()
    t_down = time.monotonic()
    not_ready = []
    stop = threading.Event()

    def watch_ready():
        # As the kubelet probes: a status other than 200 fails at once; no answer within the
        # probe's timeout counts only when it happens three times in a row (failureThreshold 3).
        silent = {}
        while not stop.is_set():
            for rep in suite.replicas:
                st = http(f"http://{rep.ip}:8181/ready", timeout=2)[0]
                silent[rep.name] = silent.get(rep.name, 0) + 1 if st is None else 0
                if (st is not None and st != 200) or silent[rep.name] >= 3:
                    not_ready.append((rep.name, st))
            stop.wait(0.5)
    th = threading.Thread(target=watch_ready, daemon=True)
    th.start()
    time.sleep(5)
    changed = changes_during_outage(objects)
    dump = suite.write("etcd.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": changed}))
    time.sleep(max(0.0, seconds - (time.monotonic() - t_down)))
    stop.set()
    th.join()
    suite.api.start(dump, initial_rv=rv + 3)
    spec = Spec(changed, suite.zone)
    names = [("late.default.svc.cluster.local.", "A"), ("gone.default.svc.cluster.local.", "A"),
             ("db-3.db.shop.svc.cluster.local.", "A")]
    took = wait_answers(suite, spec, names, timeout=120)
    ph.notes.append(f"API down {seconds:.0f} s, /ready non-200 {len(not_ready)} times")
    ph.notes.append("changes answered " + ", ".join(
        f"{n} {t:.1f} s" if t is not None else f"{n} never" for n, t in took.items()) + " after the API returned (bar 5 s)")
    if not_ready:
        ph.problems.append(f"/ready not 200 while the API was down: {not_ready[:5]}")
    for n, t in took.items():
        if t is None or t > 5.0:
            ph.problems.append(f"{n} answered the changes after {'more than 120' if t is None else f'{t:.1f}'} s (bar 5 s)")
    suite.spec = spec
    time.sleep(2)
    ph.end()
    ph.report()


def phase_watch_drop(suite):
    """Every watch cut (each resumes from its resource version), then compactions and cuts (410
    Gone: every kind relists), with a change each time and the loops running throughout: each
    change answered, no lookup failed or answered wrong while the views were rebuilt."""
    ph = Phase(suite, "watch-drop-410")
    api = suite.api
    lists = 'coredns_kubernetes_rest_client_request_duration_seconds_count{'
    answered_after = []

    def step(label, cut, change, names):
        cut()
        change()
        spec = Spec(api.objects(), suite.zone)
        took = wait_answers(suite, spec, names, timeout=30)
        worst = max((t if t is not None else 1e9) for t in took.values())
        answered_after.append(f"{label} {worst:.2f} s" if worst < 1e9 else f"{label} never")
        if worst > 5.0:
            ph.problems.append(f"{label}: change not answered within 5 s")
        suite.spec = spec
        time.sleep(2)

    def svc(name, ip):
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}

    def db_endpoints(keep):
        for o in api.objects():
            if o["kind"] == "EndpointSlice" and o["metadata"]["name"] == "db-x7k2p":
                o["endpoints"] = [e for e in o["endpoints"] if keep(e)]
                api.apply(o)

    def drop():
        api.control("drop-watches", b"")

    def gone():
        # A change no watcher sees (ConfigMaps are not watched) moves the resource version past
        # every watcher's; the compaction then expires them all, and each resumed watch gets 410.
        # (No bookmark can refresh a watcher in between: every watch restarted at the first cut,
        # less than a bookmark interval ago.)
        gone.n += 1
        api.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tick", "namespace": "default"},
                   "data": {"n": str(gone.n)}})
        api.control("compact", b"")
        api.control("drop-watches", b"")
    gone.n = 0

    step("watches cut + Service added", drop, lambda: api.apply(svc("w1", "10.96.1.81")),
         [("w1.default.svc.cluster.local.", "A")])
    before = {r.name: r.metric_sum(lists, 'verb="GET"') for r in suite.replicas}
    step("410 + Service added", gone, lambda: api.apply(svc("w2", "10.96.1.82")),
         [("w2.default.svc.cluster.local.", "A")])
    step("410 + Service deleted", gone, lambda: api.delete({"kind": "Service", "namespace": "default", "name": "w1"}),
         [("w1.default.svc.cluster.local.", "A")])
    step("410 + endpoint removed", gone, lambda: db_endpoints(lambda e: e.get("hostname") != "db-3"),
         [("db-3.db.shop.svc.cluster.local.", "A"), ("db.shop.svc.cluster.local.", "A"),
          ("_postgres._tcp.db.shop.svc.cluster.local.", "SRV")])
    kinds = 3   # Services, EndpointSlices, Namespaces (kubeadm's `pods insecure` watches no Pods)
    for r in suite.replicas:
        relists = r.metric_sum(lists, 'verb="GET"') - before[r.name]
        ph.notes.append(f"{r.name} listed {relists:.0f} times")
        if relists < 3 * kinds:
            ph.problems.append(f"{r.name}: {relists:.0f} lists after three 410s: not every kind relisted each time")
    ph.notes.insert(0, "changes answered after: " + ", ".join(answered_after))
    ph.end()
    ph.report()


def phase_configmap_edit(suite):
    """kubectl edit configmap coredns (add serve_stale): the kubelet swaps each pod's `..data`,
    the reload plugin picks it up within its interval — no lookup lost."""
    ph = Phase(suite, "configmap-edit")
    before = {r.name: r.reload_hash() for r in suite.replicas}
    suite.corefile = suite.corefile.replace(
        "disable denial cluster.local\n    }", "disable denial cluster.local\n       serve_stale\n    }")
    assert "serve_stale" in suite.corefile
    for r in suite.replicas:
        r.update_configmap(suite.corefile)
    t = time.monotonic()
    pending = set(before)
    while pending and time.monotonic() - t < 75:
        for r in suite.replicas:
            if r.name in pending and r.reload_hash() not in (None, before[r.name]):
                pending.discard(r.name)
                ph.notes.append(f"{r.name} reloaded after {time.monotonic() - t:.0f} s")
        time.sleep(0.5)
    if pending:
        ph.problems.append(f"not reloaded within 75 s: {sorted(pending)}")
    ph.end()
    ph.report()


def phase_upstream_down(suite, seconds):
    """The upstream unreachable (packets to it dropped) for `seconds` s with serve_stale: cached
    external names keep answering."""
    ph = Phase(suite, "upstream-down")
    for r in suite.replicas:
        for name in ("www.example.org.", "nosuch."):
            for t in ("A", "AAAA"):
                query(r.ip, name, t)
    stale0 = {r.name: r.metric_sum("coredns_cache_served_stale_total") for r in suite.replicas}
    rule = ["FORWARD", "-d", UP_IP, "-j", "DROP"]
    sh("iptables", "-I", *rule)
    try:
        time.sleep(seconds)
    finally:
        sh("iptables", "-D", *rule)
    for r in suite.replicas:
        n = r.metric_sum("coredns_cache_served_stale_total") - stale0[r.name]
        ph.notes.append(f"{r.name} served {n:.0f} stale")
        if n == 0:
            ph.problems.append(f"{r.name} served nothing stale: the phase did not outlast the cache")
    ph.end()
    ph.report()


# ----------------------------------------------------------------------------------------------

def render_kubeadm(template):
    """kubeadm's Corefile template for DNSDomain=cluster.local (Go text/template: `{{-` trims the
    whitespace before it)."""
    text = re.sub(r"\s*\{\{-\s*if \.DNSDomain\s*\}\}", "", template)
    text = re.sub(r"\s*\{\{-\s*end\s*\}\}", "", text)
    return text.replace("{{ .DNSDomain }}", DOMAIN)


def preflight(opts):
    if os.geteuid() != 0:
        raise SuiteError("must run as root: it makes network namespaces, veths and iptables rules")
    missing = [t for t in ("ip", "iptables", "iptables-restore", "conntrack", "unshare", "gcc",
                           "musl-gcc", "go", "node", "dig", "host", "nslookup", "getent")
               if shutil.which(t) is None]
    if missing:
        raise SuiteError(f"missing tools: {' '.join(missing)} (.ci/run installs them)")
    if not os.access(opts.binary, os.X_OK):
        raise SuiteError(f"no clusterdns binary at {opts.binary} (cargo build)")
    remove_namespaces()   # leftovers of an earlier run that was killed
    r = subprocess.run(["ip", "netns", "add", f"{PREFIX}-probe"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SuiteError(f"cannot make network namespaces here (ip netns add: {r.stderr.strip()}); "
                         "this suite needs them and does not pass without them")
    subprocess.run(["ip", "netns", "del", f"{PREFIX}-probe"], capture_output=True)


def build_clients(suite):
    out = os.path.join(suite.work, "bin")
    os.makedirs(out)
    src = os.path.join(HERE, "clients")
    bins = {"glibc": os.path.join(out, "lookup-glibc"), "musl": os.path.join(out, "lookup-musl"),
            "go": os.path.join(out, "lookup-go"), "node": os.path.join(src, "lookup.js")}
    sh("gcc", "-O2", "-Wall", "-o", bins["glibc"], os.path.join(src, "lookup.c"))
    sh("musl-gcc", "-O2", "-static", "-Wall", "-o", bins["musl"], os.path.join(src, "lookup.c"))
    cache = os.path.join(ROOT, "target", "e2e-go")
    env = suite.env(CGO_ENABLED="0", GOCACHE=os.path.join(cache, "cache"), GOPATH=os.path.join(cache, "path"),
                    GOPROXY="off", GOFLAGS="", HOME=cache)
    r = subprocess.run(["go", "build", "-o", bins["go"], os.path.join(src, "lookup.go")],
                       capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0:
        raise SuiteError(f"go build: {r.stderr}")
    versions = [sh("sh", "-c", "ldd --version | head -1").stdout.strip(),
                "musl " + ".".join(map(str, musl_version() or ("?",))),
                sh("go", "version").stdout.strip(), "node " + sh("node", "--version").stdout.strip() +
                " (c-ares " + sh("node", "-p", "process.versions.ares").stdout.strip() + ")",
                sh("sh", "-c", "dig -v 2>&1").stdout.strip()]
    log("resolvers: " + "; ".join(versions))
    return bins


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "debug", "clusterdns"))
    ap.add_argument("--api-outage", type=float, default=60.0, help="seconds (default 60)")
    ap.add_argument("--upstream-outage", type=float, default=30.0, help="seconds (default 30)")
    ap.add_argument("--only", help="comma-separated phases to run (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    opts = ap.parse_args()
    opts.binary = os.path.abspath(opts.binary)
    try:
        preflight(opts)
    except SuiteError as e:
        print(f"E2E FAILED: {e}", flush=True)
        return 1
    suite = Suite(opts)
    suite.summary = []

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        return run(suite, opts)
    except SuiteError as e:
        print(f"E2E FAILED: {e}", flush=True)
        suite.failures.append(("setup", [str(e)], []))
        return 1
    except KeyboardInterrupt:
        print("E2E interrupted", flush=True)
        suite.failures.append(("interrupted", [], []))
        return 1
    finally:
        suite.cleanup()


def run(suite, opts):
    log(f"work directory {suite.work}; binary {opts.binary}")
    suite.bins = build_clients(suite)
    with open(KUBEADM) as f:
        suite.corefile = render_kubeadm(f.read())
    with open(os.path.join(ROOT, "deploy", "kubernetes", "configmap.yaml")) as f:
        shipped = yaml.safe_load(f)["data"]["Corefile"]
    if suite.corefile.split() != shipped.split():
        raise SuiteError("kubeadm.Corefile rendered for cluster.local differs from deploy/kubernetes/configmap.yaml")
    with open(os.path.join(HERE, "cluster.yaml")) as f:
        fixture = yaml.safe_load(f)["items"]
    suite.zone = dns.zone.from_file(os.path.join(HERE, "example.org.zone"), relativize=False)
    suite.spec = Spec(fixture, suite.zone)

    # The node, the API server, the upstream.
    suite.build_node()
    suite.node_resolv = suite.write("node-resolv.conf", f"nameserver {UP_IP}\n")
    suite.pod_resolv = suite.write("pod-resolv.conf", (
        f"search {' '.join(SEARCH)}\nnameserver {VIP}\noptions ndots:5\n"))
    suite.pod_nss = suite.write("nsswitch.conf", "hosts: files dns\n") if os.path.exists("/etc/nsswitch.conf") else None
    suite.kubeconfig = suite.write("kubeconfig", yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
        "clusters": [{"name": "e2e", "cluster": {"server": f"http://{API_IP}:6443"}}],
        "users": [{"name": "e2e", "user": {}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}]}))
    suite.api = FakeApi(suite)
    fixture_path = suite.write("cluster.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": fixture}))
    suite.api.start(fixture_path)
    up_ns = f"{PREFIX}-up"
    suite.sandbox(up_ns, "cde-up", UP_IP, UP_GW)
    up_out = os.path.join(suite.work, "upstream.stdout")
    with open(up_out, "wb") as f:
        up = suite.spawn("upstream", up_ns, ["python3", os.path.join(HERE, "upstream.py"), "--listen", UP_IP,
                                             "--zone", os.path.join(HERE, "example.org.zone")], stdout=f)
    wait_for_line(up_out, "listening on", up, "the upstream DNS server")

    # Two replicas behind the VIP.
    for _ in range(2):
        rep = Replica(suite, suite.corefile)
        rep.start()
        suite.replicas.append(rep)
    for rep in suite.replicas:
        rep.wait_ready()
    suite.vip.set([r.ip for r in suite.replicas])
    log(f"node up: replicas {', '.join(r.ip for r in suite.replicas)} behind {VIP}; API {API_IP}:6443; upstream {UP_IP}")

    # Client pods.
    suite.pods = {name: ClientPod(suite, name, n) for n, name in
                  ((21, "glibc"), (22, "musl"), (23, "go"), (24, "nodejs"))}
    only = set(opts.only.split(",")) if opts.only else None
    want = lambda p: only is None or p in only  # noqa: E731

    if want("resolvers"):
        n, failed = run_checks(suite, suite.spec)
        line = f"phase resolvers: {n} checks, {len(failed)} failed -> {'ok' if not failed else 'FAILED'}"
        print("E2E " + line, flush=True)
        suite.summary.append(line)
        if failed:
            suite.failures.append(("resolvers", [f"{len(failed)} failed checks"], failed))

    faults = [p for p in ("baseline", "rolling-restart", "sigkill", "api-outage", "watch-drop-410",
                          "configmap-edit", "upstream-down") if want(p)]
    if not faults:
        return report(suite)
    # Loops through the VIP, for the fault phases.
    spec = suite.spec
    names = ["web", "db-0.db.shop", "www.example.org", "nosuch"]
    exp = {n: ",".join(addrs(spec.resolve(n, ("A", "AAAA")))) if spec.resolve(n, ("A", "AAAA")) else "NXDOMAIN" for n in names}
    fqn = {"web": "web.default.svc.cluster.local", "db-0.db.shop": "db-0.db.shop.svc.cluster.local",
           "www.example.org": "www.example.org", "nosuch": "nosuch.default.svc.cluster.local"}
    exp_node = {fqn[n]: (",".join(addrs(spec.resolve(fqn[n] + ".", ("A",)))) if spec.resolve(fqn[n] + ".", ("A",)) else "NXDOMAIN")
                for n in names}
    b = suite.bins
    suite.loops = [
        Loop(suite, "glibc", suite.pods["glibc"], [b["glibc"], "loop", str(LOOP_MS)] + names, exp, "NONAME"),
        Loop(suite, "musl", suite.pods["musl"], [b["musl"], "loop", str(LOOP_MS)] + names, exp, "NONAME"),
        Loop(suite, "go", suite.pods["go"], [b["go"], "loop", str(LOOP_MS)] + names, exp, "NOTFOUND"),
        Loop(suite, "c-ares", suite.pods["nodejs"], ["node", b["node"], "loop", str(LOOP_MS)] + [fqn[n] for n in names],
             exp_node, "ENOTFOUND")]
    time.sleep(2)

    for name, fn in (("baseline", lambda: phase_baseline(suite)),
                     ("rolling-restart", lambda: phase_rolling_restart(suite)),
                     ("sigkill", lambda: phase_sigkill(suite)),
                     ("api-outage", lambda: phase_api_outage(suite, opts.api_outage)),
                     ("watch-drop-410", lambda: phase_watch_drop(suite)),
                     ("configmap-edit", lambda: phase_configmap_edit(suite)),
                     ("upstream-down", lambda: phase_upstream_down(suite, opts.upstream_outage))):
        if want(name):
            log(f"phase {name}")
            fn()
    return report(suite)


def report(suite):
    print("\nE2E summary:", flush=True)
    for line in suite.summary:
        print("  " + line, flush=True)
    if suite.failures:
        for phase, problems, detail in suite.failures:
            print(f"E2E FAILED phase {phase}: {'; '.join(problems)}", flush=True)
            for d in detail[:50]:
                print(f"    {d}", flush=True)
            if len(detail) > 50:
                print(f"    ... {len(detail) - 50} more", flush=True)
        return 1
    print("E2E passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
