#!/usr/bin/env bash
# Benchmark (not a test): p50/p90/p99/p99.9 of clusterdns (kubernetes alone) and knotd at the same
# fixed rate, in ROUNDS interleaved rounds (knotd, clusterdns, knotd, …; each server started
# afresh), and the median of each percentile over the rounds. One round is not enough on a
# shared virtual machine: a neighbour's burst moves one server's p99 by several times.
#
#   cargo build --release && bash bench/latency.sh QPS [ROUNDS] [DURATION]
#
# Needs root (knotd's package, taskset); server on CPU 0, dnsperf on CPU 1; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
QPS=${1:?usage: latency.sh QPS [ROUNDS] [DURATION]}
ROUNDS=${2:-5}
D=${3:-10}
OUT=$(mktemp /tmp/clusterdns-latency.XXXXXX)
trap 'rm -f "$OUT"' EXIT
PEERS=knot bash bench/vs_peers.sh cluster "$D" "$ROUNDS" --lat-only --lat-qps "$QPS" | tee "$OUT"
# Rows of the latency table: peer config run qps_target qps_got p50 p90 p99 p999 max other%.
awk '$4 ~ /^[0-9]+$/ && $6 ~ /^[0-9.]+$/ {print}' "$OUT" | python3 -c '
import statistics, sys
rows = {}
for line in sys.stdin:
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[5:9]])
print()
print(f"# median of {len(next(iter(rows.values())))} rounds at a fixed rate, ms")
print("%-20s %7s %7s %7s %7s" % ("server", "p50", "p90", "p99", "p99.9"))
for peer, rs in rows.items():
    med = [statistics.median(c) for c in zip(*rs)]
    print(f"{peer:<20} " + " ".join(f"{m:7.3f}" for m in med))
'
