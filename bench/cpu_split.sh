#!/usr/bin/env bash
# Benchmark (not a test): where a cluster answer's CPU goes, user space against the kernel, for
# clusterdns (kubernetes alone) and knotd on the same 10,000 names, in ROUNDS interleaved rounds.
# Each server is pinned to CPU 0 and started afresh; dnsperf (`-q 100 -c 8`, DURATION s, on CPU
# 1) sends as fast as it can, or RATE queries/s; utime and stime come from /proc/PID/stat.
#
#   cargo build --release && bash bench/cpu_split.sh [ROUNDS] [DURATION] [RATE]
#
# Needs knotd and dnsperf (bench/run.sh installs them); loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
D=${2:-10}
RATE=${3:-}
BIN=$PWD/target/release/clusterdns
W=$(mktemp -d /tmp/clusterdns-split.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$W"' EXIT
python3 ../shared/bench/peers/gen-data.py "$W/data" >/dev/null 2>&1
python3 bench/hosts_to_snapshot.py "$W/data/names.hosts" >"$W/cluster.json"
cat >"$W/Corefile" <<EOC
.:5310 {
    bind 127.0.0.1
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        snapshot $W/cluster.json
    }
}
EOC
python3 bench/knot_conf.py "$W/knot" "$W/data" 5301 cluster.local >/dev/null
TCK=$(getconf CLK_TCK)
# measure NAME PORT CMD...: one line "NAME queries user_us/q sys_us/q total_us/q"
measure() {
    local name=$1 port=$2 pid u0 s0 u1 s1 n out
    shift 2
    taskset -c 0 "$@" >"$W/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 50); do
        dig +short +time=1 +tries=1 -p "$port" @127.0.0.1 svc-0.ns-0.svc.cluster.local >/dev/null 2>&1 && break
        sleep 0.1
    done
    sleep 1
    read -r u0 s0 < <(awk '{print $14, $15}' /proc/$pid/stat)
    out=$(taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$W/data/queries.txt" -l "$D" ${RATE:+-Q "$RATE"} -q 100 -c 8 2>&1)
    read -r u1 s1 < <(awk '{print $14, $15}' /proc/$pid/stat)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    n=$(echo "$out" | awk '/Queries completed/{print $3}')
    awk -v n="$n" -v name="$name" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v t="$TCK" \
        'BEGIN {printf "%-12s %9d %8.2f %8.2f %8.2f\n", name, n, u/t/n*1e6, s/t/n*1e6, (u+s)/t/n*1e6}'
}
printf '%-12s %9s %8s %8s %8s\n' server queries user_us sys_us total_us
for _ in $(seq "$ROUNDS"); do
    measure knotd 5301 knotd -c "$W/knot/knot.conf"
    measure clusterdns 5310 "$BIN" -conf "$W/Corefile"
done | tee "$W/rows"
echo "# median per server (µs of CPU per query)"
python3 - "$W/rows" <<'EOP'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append([float(x) for x in f[2:5]])
for name, rs in rows.items():
    u, s, t = (statistics.median(c) for c in zip(*rs))
    print("%-12s user %.2f  sys %.2f  total %.2f" % (name, u, s, t))
EOP
