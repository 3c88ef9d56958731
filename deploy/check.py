#!/usr/bin/env python3
"""Checks deploy/kubernetes against what the binary serves (run by CI, as root):

1. every manifest validates against the Kubernetes 1.33 OpenAPI schemas (kubernetes-validate,
   offline, strict);
2. the Deployment's args, mounts, ports and probes and the Service's ports agree with each
   other and with the ConfigMap's Corefile;
3. the binary, started with the ConfigMap's Corefile in the kubelet's `..data` layout, inside a
   private network and mount namespace (loopback only; `/etc/resolv.conf` names an address
   nothing answers on; the API is the conformance kit's fake API server serving the demo
   cluster, reached through KUBECONFIG as kube-rs does outside a pod) answers DNS on :53,
   `/health` on :8080, `/ready` on :8181 and `/metrics` on :9153 — the probes' ports and paths —
   and after SIGTERM answers `/ready` 503 while `/health` and DNS keep answering through lameduck;
4. docs/migration.md, step by step: kubeadm's CoreDNS manifests (../shared/corefiles/manifests)
   rendered, each `kubectl` command of the guide played against them, each `clusterdns` command
   run, and what each step claims asserted (only the image changes; rollback restores kubeadm's
   Deployment; the rest equals deploy/kubernetes);
5. with `--image IMAGE` (after deploy/image.sh): the image's root filesystem, mounted read-only,
   runs `/clusterdns` as uid 65532 with only CAP_NET_BIND_SERVICE (deploy/runas.py, as runc
   starts the Deployment's container) in a private network namespace, with the ConfigMap, a
   kubeconfig and resolv.conf mounted as the kubelet mounts volumes; it must answer :53,
   `/health` :8080, `/ready` :8181 and `/metrics` :9153.

    python3 deploy/check.py [BINARY]
    python3 deploy/check.py --image localhost/clusterdns:dev
"""
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MANIFESTS = os.path.join(ROOT, "deploy", "kubernetes")
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "clusterdns")


def load(name):
    with open(os.path.join(MANIFESTS, name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def check_schemas():
    files = [os.path.join(MANIFESTS, f) for f in sorted(os.listdir(MANIFESTS))
             if f.endswith(".yaml") and f != "kustomization.yaml"]
    subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", "1.33.0", *files], check=True)
    kust = load("kustomization.yaml")[0]
    listed = set(kust["resources"])
    on_disk = {os.path.basename(f) for f in files}
    assert listed == on_disk, f"kustomization.yaml lists {listed}, directory has {on_disk}"
    print(f"schemas: {len(files)} manifests valid (Kubernetes 1.33, strict)")


def check_consistency():
    dep = load("deployment.yaml")[0]
    svc = load("service.yaml")[0]
    cm = load("configmap.yaml")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["args"] == ["-conf", "/etc/coredns/Corefile"], c["args"]
    mount = c["volumeMounts"][0]
    assert mount["mountPath"] == "/etc/coredns" and mount["readOnly"], mount
    vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert vol["configMap"]["name"] == cm["metadata"]["name"] == "coredns"
    assert vol["configMap"]["items"] == [{"key": "Corefile", "path": "Corefile"}]
    ports = {p["name"]: (p["containerPort"], p["protocol"]) for p in c["ports"]}
    assert ports == {"dns": (53, "UDP"), "dns-tcp": (53, "TCP"), "metrics": (9153, "TCP"),
                     "liveness-probe": (8080, "TCP"), "readiness-probe": (8181, "TCP")}, ports
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert (live["path"], ports[live["port"]][0]) == ("/health", 8080), live
    assert (ready["path"], ports[ready["port"]][0]) == ("/ready", 8181), ready
    for p in svc["spec"]["ports"]:
        assert ports[p["name"]] == (p["targetPort"], p["protocol"]), p
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert pod["dnsPolicy"] == "Default" and pod["serviceAccountName"] == "coredns"
    sc = c["securityContext"]
    assert sc["capabilities"] == {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]} and sc["readOnlyRootFilesystem"]
    corefile = cm["data"]["Corefile"]
    for needle in (".:53 {", "health {", "ready", "prometheus :9153", "kubernetes cluster.local"):
        assert needle in corefile, needle
    print("consistency: args, mounts, ports, probes, Service and ConfigMap agree")
    return corefile


SCRIPT = r'''
set -euo pipefail
ip link set lo up
work=$1; bin=$2; kit=$3; fixture=$4
# The ConfigMap as the kubelet mounts it: Corefile -> ..data/Corefile -> ..TIMESTAMP/Corefile.
mkdir -p "$work/etc-coredns/..2026_01_01_00_00_00"
cp "$work/Corefile" "$work/etc-coredns/..2026_01_01_00_00_00/Corefile"
ln -s ..2026_01_01_00_00_00 "$work/etc-coredns/..data"
ln -s ..data/Corefile "$work/etc-coredns/Corefile"
# The node's resolver, as `dnsPolicy: Default` gives it: an address with no route in here, so
# external names get SERVFAIL and nothing leaves the namespace (the probe checks ports, not
# forwarding; `loop` sees its probe answered and stands down).
printf 'nameserver 192.0.2.1\n' >"$work/resolv.conf"
mount --bind "$work/resolv.conf" /etc/resolv.conf
python3 "$kit/fakeapi.py" --fixture "$fixture" >"$work/api.out" 2>"$work/api.log" &
api=$!
for _ in $(seq 100); do grep -q listening "$work/api.out" 2>/dev/null && break; sleep 0.1; done
addr=$(awk '/listening/ {print $NF}' "$work/api.out")
cat >"$work/kubeconfig" <<EOK
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://$addr"}}]
users: [{name: fake, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
EOK
env -u KUBERNETES_SERVICE_HOST -u KUBERNETES_SERVICE_PORT KUBECONFIG="$work/kubeconfig" \
    "$bin" -conf "$work/etc-coredns/Corefile" >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid $api 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8181/ready >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:8181/ready | grep -q OK
curl -sf http://127.0.0.1:8080/health | grep -q OK
# (to a file: `curl | grep -q` fails under pipefail when grep stops reading first)
curl -sf http://127.0.0.1:9153/metrics >"$work/metrics"
grep -q 'coredns_dns_requests_total\|coredns_build_info' "$work/metrics"
out=$(dig @127.0.0.1 -p 53 +time=2 +tries=2 +short kube-dns.kube-system.svc.cluster.local)
[ "$out" = "10.96.0.10" ] || { echo "dig: $out"; cat "$work/server.log"; exit 1; }
out=$(dig @127.0.0.1 -p 53 +tcp +time=2 +short -x 10.96.0.1)
[ "$out" = "kubernetes.default.svc.cluster.local." ] || { echo "dig -x: $out"; exit 1; }
kill -TERM $pid
sleep 0.5
code=$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8181/ready)
[ "$code" = 503 ] || { echo "/ready during lameduck: $code"; exit 1; }
curl -sf http://127.0.0.1:8080/health >/dev/null
dig @127.0.0.1 -p 53 +time=1 +short kubernetes.default.svc.cluster.local | grep -q 10.96.0.1
wait $pid
echo "boot: the ConfigMap's Corefile serves :53, /health :8080, /ready :8181, /metrics :9153; SIGTERM lameduck ok"
'''


def check_boot(corefile):
    import tempfile
    with tempfile.TemporaryDirectory() as work:
        with open(os.path.join(work, "Corefile"), "w") as f:
            f.write(corefile)
        kit = os.path.join(ROOT, "..", "shared", "conformance")
        fixture = os.path.join(ROOT, "deploy", "demo", "cluster.yaml")
        subprocess.run(["unshare", "-n", "-m", "bash", "-c", SCRIPT, "check", work, BINARY, kit, fixture],
                       check=True)


KUBEADM_VALUES = {
    "{{ .DNSIP }}": "10.96.0.10",
    "{{ .DeploymentName }}": "coredns",
    "{{ .Replicas }}": "2",
    "{{ .ControlPlaneTaintKey }}": "node-role.kubernetes.io/control-plane",
    "{{ .Image }}": "registry.k8s.io/coredns/coredns:v1.11.3",
    "{{ .DNSDomain }}": "cluster.local",
}


def kubeadm_objects():
    """kubeadm's CoreDNS objects, its Go template filled as `kubeadm init` fills it."""
    import re
    path = os.path.join(ROOT, "..", "shared", "corefiles", "manifests", "kubeadm.manifests.yaml")
    with open(path) as f:
        text = f.read()
    text = re.sub(r"\s*\{\{- if \.DNSDomain \}\}", "", text)
    text = re.sub(r"\s*\{\{- end \}\}", "", text)
    for k, v in KUBEADM_VALUES.items():
        text = text.replace(k, v)
    assert "{{" not in text, "unfilled placeholder in kubeadm's manifests"
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text) if d}


def ours():
    objs = {}
    for f in load("kustomization.yaml")[0]["resources"]:
        for d in load(f):
            objs[(d["kind"], d["metadata"]["name"])] = d
    return objs


def shell_steps(path):
    """The commands of every ```sh block, in order (continued lines joined)."""
    steps, block = [], None
    with open(path) as f:
        for line in f:
            if line.startswith("```"):
                block = [] if block is None and line.strip() == "```sh" else None
                continue
            if block is not None and line.strip() and not line.lstrip().startswith("#"):
                steps.append(line.strip())
    return steps


def check_migration():
    """Plays docs/migration.md against kubeadm's objects."""
    import copy
    import re
    import tempfile
    cluster = kubeadm_objects()
    original = copy.deepcopy(cluster)
    mine = ours()
    history = []
    files = {}
    checked = []

    def deployment():
        return cluster[("Deployment", "coredns")]

    def container(dep, name):
        cs = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == name]
        assert cs, f"no container {name!r} in deployment/coredns"
        return cs[0]

    def only_image_changed():
        before = copy.deepcopy(original[("Deployment", "coredns")])
        after = copy.deepcopy(deployment())
        assert container(after, "coredns")["image"] != container(before, "coredns")["image"]
        container(after, "coredns")["image"] = container(before, "coredns")["image"]
        assert after == before, "set image changed more than the image"
        # Everything else is what deploy/kubernetes ships.
        for key in [("ConfigMap", "coredns"), ("ServiceAccount", "coredns"),
                    ("ClusterRole", "system:coredns"), ("ClusterRoleBinding", "system:coredns"),
                    ("Service", "kube-dns")]:
            theirs, ours_ = cluster[key], mine[key]
            for part in ("data", "rules", "roleRef", "subjects"):
                assert theirs.get(part) == ours_.get(part), f"{key} {part} differs from deploy/kubernetes"
            if key[0] == "Service":
                assert theirs["spec"] == ours_["spec"], "Service spec differs from deploy/kubernetes"
        # deploy/kubernetes's Deployment is kubeadm's with our image and a pod securityContext.
        d = copy.deepcopy(mine[("Deployment", "coredns")])
        d["spec"]["template"]["spec"].pop("securityContext")
        k = copy.deepcopy(deployment())
        container(d, "coredns")["image"] = container(k, "coredns")["image"] = "IMAGE"
        assert d["spec"] == k["spec"], "deploy/kubernetes's Deployment differs from kubeadm's beyond the image"

    with tempfile.TemporaryDirectory() as work:
        for cmd in shell_steps(os.path.join(ROOT, "docs", "migration.md")):
            m = None
            if re.fullmatch(r"python3 deploy/check\.py \S+", cmd):
                pass  # this check
            elif cmd == "bash deploy/image.sh":
                assert os.path.exists(os.path.join(ROOT, "deploy", "image.sh"))
            elif re.fullmatch(r"buildah --storage-driver vfs push localhost/clusterdns:dev docker://\S+", cmd):
                pass  # a registry push; the image itself is booted by `check.py --image` in CI
            elif (m := re.fullmatch(r"kubectl -n kube-system get configmap (\S+) -o jsonpath='\{\.data\.Corefile\}' > (\S+)", cmd)):
                files[m[2]] = cluster[("ConfigMap", m[1])]["data"]["Corefile"]
            elif (m := re.fullmatch(r"target/release/clusterdns -validate -conf (\S+)", cmd)):
                path = os.path.join(work, m[1])
                with open(path, "w") as f:
                    f.write(files[m[1]])
                out = subprocess.run([BINARY, "-validate", "-conf", path], capture_output=True, text=True)
                assert out.returncode == 0, f"-validate of the cluster's Corefile: {out.stdout}{out.stderr}"
            elif (m := re.fullmatch(r"kubectl -n kube-system get deployment (\S+) -o yaml > (\S+)", cmd)):
                files[m[2]] = copy.deepcopy(cluster[("Deployment", m[1])])
            elif (m := re.fullmatch(r"kubectl -n kube-system set image deployment/(\S+) (\S+)=(\S+)", cmd)):
                dep = cluster[("Deployment", m[1])]
                history.append(copy.deepcopy(dep["spec"]["template"]))
                container(dep, m[2])["image"] = m[3]
                only_image_changed()
                checked.append("set image: only the image differs; the rest equals deploy/kubernetes")
            elif (m := re.fullmatch(r"kubectl -n kube-system rollout (status|undo) deployment/(\S+)", cmd)):
                dep = cluster[("Deployment", m[2])]
                if m[1] == "undo":
                    assert history, "rollout undo with no previous revision"
                    dep["spec"]["template"] = history.pop()
                    assert dep == original[("Deployment", "coredns")], "rollback did not restore kubeadm's Deployment"
                    assert files.get("coredns-deployment.yaml") == dep, "rollback differs from the saved copy"
                    checked.append("rollout undo: kubeadm's Deployment again, equal to the saved copy")
            elif re.fullmatch(r"kubectl run -it --rm dnstest --image=busybox:1\.36 --restart=Never -- nslookup kubernetes\.default", cmd):
                pass  # answered by the boot check: kubernetes.default from the ConfigMap's Corefile
            elif (m := re.fullmatch(r"kubectl -n kube-system logs deployment/(\S+)", cmd)):
                assert ("Deployment", m[1]) in cluster
            elif cmd == "kubectl apply -k deploy/kubernetes":
                kust = load("kustomization.yaml")[0]
                assert kust["namespace"] == "kube-system"
                for key, obj in mine.items():
                    cluster[key] = copy.deepcopy(obj)
                checked.append("apply -k: kustomization lists every manifest")
            else:
                raise AssertionError(f"docs/migration.md has a step this check does not know: {cmd}")
    assert len(checked) >= 3, checked
    print("migration: " + "; ".join(checked))


IMAGE_SCRIPT = r'''
set -euo pipefail
ip link set lo up
work=$1; rootfs=$2; kit=$3; fixture=$4; here=$5
# A volume as the kubelet lays it out: FILE -> ..data/FILE -> ..TIMESTAMP/FILE, read-only.
volume() {  # DIR FILE CONTENT-FILE
    mkdir -p "$1/..2026_01_01_00_00_00"
    cp "$3" "$1/..2026_01_01_00_00_00/$2"
    ln -s ..2026_01_01_00_00_00 "$1/..data"
    ln -s "..data/$2" "$1/$2"
}
python3 "$kit/fakeapi.py" --fixture "$fixture" >"$work/api.out" 2>"$work/api.log" &
api=$!
for _ in $(seq 100); do grep -q listening "$work/api.out" 2>/dev/null && break; sleep 0.1; done
addr=$(awk '/listening/ {print $NF}' "$work/api.out")
cat >"$work/kubeconfig.src" <<EOK
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://$addr"}}]
users: [{name: fake, user: {}}]
contexts: [{name: fake, context: {cluster: fake, user: fake}}]
current-context: fake
EOK
volume "$work/etc-coredns" Corefile "$work/Corefile"
volume "$work/kubeconfig" kubeconfig "$work/kubeconfig.src"
printf 'nameserver 192.0.2.1\n' >"$work/resolv.conf"
printf '127.0.0.1 localhost\n' >"$work/hosts"
# The container's root: the image's filesystem, mount points made in its layer as the runtime
# does, volumes mounted read-only, then the root itself remounted read-only
# (readOnlyRootFilesystem).
root=$work/root
mkdir -p "$root"
mount --bind "$rootfs" "$root"
mkdir -p "$root/etc/coredns" "$root/var/run/kubeconfig" "$root/proc" "$root/dev"
touch "$root/etc/resolv.conf" "$root/etc/hosts" "$root/dev/null"
mount -t proc proc "$root/proc"
mount --bind /dev/null "$root/dev/null"
for m in "etc-coredns:etc/coredns" "kubeconfig:var/run/kubeconfig" "resolv.conf:etc/resolv.conf" "hosts:etc/hosts"; do
    mount --bind "$work/${m%%:*}" "$root/${m#*:}"
    mount -o remount,bind,ro "$root/${m#*:}"
done
mount -o remount,bind,ro "$root"
if touch "$root/probe" 2>/dev/null; then echo "root filesystem is writable"; exit 1; fi
python3 "$here/runas.py" "$root" 65532 65532 KUBECONFIG=/var/run/kubeconfig/kubeconfig \
    -- /clusterdns -conf /etc/coredns/Corefile >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid $api 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf http://127.0.0.1:8181/ready >/dev/null && break; sleep 0.1; done
curl -sf http://127.0.0.1:8181/ready | grep -q OK || { echo "/ready"; cat "$work/server.log"; exit 1; }
curl -sf http://127.0.0.1:8080/health | grep -q OK
curl -sf http://127.0.0.1:9153/metrics >"$work/metrics"
for m in coredns_build_info process_resident_memory_bytes process_cpu_seconds_total process_open_fds; do
    grep -q "^$m" "$work/metrics" || { echo "/metrics lacks $m"; exit 1; }
done
out=$(dig @127.0.0.1 -p 53 +time=2 +tries=2 +short kube-dns.kube-system.svc.cluster.local)
[ "$out" = "10.96.0.10" ] || { echo "dig: $out"; cat "$work/server.log"; exit 1; }
out=$(dig @127.0.0.1 -p 53 +tcp +time=2 +short -x 10.96.0.1)
[ "$out" = "kubernetes.default.svc.cluster.local." ] || { echo "dig -x: $out"; exit 1; }
# What it runs as: uid/gid 65532, effective and permitted capabilities NET_BIND_SERVICE only.
grep -E "^(Uid|Gid):" /proc/$pid/status | awk '{ if ($2 != 65532 || $3 != 65532) { print; exit 1 } }'
grep -qx "CapEff:	0000000000000400" /proc/$pid/status || { grep ^Cap /proc/$pid/status; exit 1; }
grep -qx "CapBnd:	0000000000000400" /proc/$pid/status || { grep ^Cap /proc/$pid/status; exit 1; }
grep -qx "NoNewPrivs:	1" /proc/$pid/status
kill -TERM $pid
wait $pid
echo "image: /clusterdns from a read-only root as 65532 with only NET_BIND_SERVICE serves :53, /health, /ready, /metrics"
'''


def check_image(image, corefile):
    import tempfile
    bud = ["buildah", "--storage-driver", "vfs"]
    ctr = subprocess.run(bud + ["from", image], check=True, capture_output=True, text=True).stdout.strip()
    try:
        rootfs = subprocess.run(bud + ["mount", ctr], check=True, capture_output=True, text=True).stdout.strip()
        with tempfile.TemporaryDirectory() as work:
            with open(os.path.join(work, "Corefile"), "w") as f:
                f.write(corefile)
            kit = os.path.join(ROOT, "..", "shared", "conformance")
            fixture = os.path.join(ROOT, "deploy", "demo", "cluster.yaml")
            here = os.path.join(ROOT, "deploy")
            subprocess.run(["unshare", "-n", "-m", "bash", "-c", IMAGE_SCRIPT, "image", work, rootfs, kit,
                            fixture, here], check=True)
    finally:
        subprocess.run(bud + ["rm", ctr], check=False, capture_output=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--image":
        check_image(sys.argv[2], check_consistency())
        sys.exit(0)
    check_schemas()
    cf = check_consistency()
    check_migration()
    check_boot(cf)
