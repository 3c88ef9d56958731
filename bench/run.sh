#!/usr/bin/env bash
# Every figure of the README's Performance section from one run (a benchmark, not a test: about
# 40 minutes, needs root for the peers' packages and taskset; all traffic on 127.0.0.1).
#
#   bash bench/run.sh [DURATION]        # DURATION: seconds per dnsperf run (default 10)
#   ROUNDS=N bash bench/run.sh          # rounds of sections 1-3's comparisons (default 3)
#
# 1. cluster answers (kubernetes alone) next to knotd, nsd, unbound and dnsmasq: srv_us/q, QPS
# 2. p50/p99 at half of clusterdns's own maximum QPS, knotd at the same rate
# 3. what prometheus and log cost; kubeadm's whole Corefile; cache hits (clusterdns only)
# 4. RSS after loading 1k, 10k, 100k Services with 5 endpoints each (snapshot source)
# 5. the fake API server at 10k Services: start-to-ready, change→answer p50/p99 over 1,000 changes
#    under a steady dnsperf load, relist peak
# 6. the same at 100k Services (200 changes): start-to-ready, relist peak
# 7. pod traffic: kubeadm's Corefile next to unbound, pdns-recursor, dnsmasq and kresd, every one
#    forwarding to the same stub upstream; CPU per query for the mix and each kind of query
# The output goes to stdout and to bench/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}
R=${ROUNDS:-3}
OUT=bench/last-run.txt
exec > >(tee "$OUT") 2>&1
echo "# clusterdns bench/run.sh $(date -u +%FT%TZ) $(git rev-parse --short HEAD) $(nproc) cpus"
cargo build --release --quiet
cargo bench --bench answer --quiet 2>/dev/null | grep -v '^$' || true

echo "== 1. cluster answers next to the peers ($R interleaved rounds, medians last)"
bash bench/vs_peers.sh cluster "$D" "$R" | python3 bench/medians.py | tee /tmp/clusterdns-run-1.txt
QPS=$(awk '$1=="median" && $4=="clusterdns-cluster" {print int($6)}' /tmp/clusterdns-run-1.txt)
echo "== 2. latency at 50 % of clusterdns's maximum ($QPS QPS): $((QPS / 2)) QPS, $R rounds"
PEERS=knot bash bench/vs_peers.sh cluster "$D" "$R" --lat-only --lat-qps $((QPS / 2)) | python3 bench/medians.py
echo "== 3. metrics, log, kubeadm's Corefile, cache hits (clusterdns only; metrics and log $R rounds)"
for mode in metrics log; do
    PEERS= bash bench/vs_peers.sh "$mode" "$D" "$R" | python3 bench/medians.py | grep -E '^(peer|clusterdns|median)'
done
for mode in kubeadm cache; do
    PEERS= bash bench/vs_peers.sh "$mode" "$D" 1 | grep -E '^(peer|clusterdns)'
done
echo "== 4. memory"
python3 bench/k8s_scale.py --memory 1000,10000,100000
echo "== 5. fake API, 10k Services"
python3 bench/k8s_scale.py --services 10000 --changes 1000 --load-qps 20000
echo "== 6. fake API, 100k Services"
python3 bench/k8s_scale.py --services 100000 --changes 200 --load-qps 20000
echo "== 7. pod traffic (kubeadm's Corefile and the caching resolvers)"
python3 bench/pod_traffic.py --duration "$D"
