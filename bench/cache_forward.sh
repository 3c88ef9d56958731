#!/usr/bin/env bash
# Benchmark (not a test) of the cached-forward path: dnsperf → clusterdns (cache + forward,
# pinned to CPU 0) → upstream, next to knotd, nsd, unbound and dnsmasq serving the same names
# in the same run (../shared/bench/peers/run-peers.sh; needs root, installs its packages).
#
# The upstream is a second clusterdns serving the names from a kubernetes snapshot with TTL 3600;
# after the first pass over the query set every answer is a cache hit, so this measures the
# cache.
#
#   cargo build --release && bash bench/cache_forward.sh [DURATION] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-1}
PEERS=../shared/bench/peers/run-peers.sh
BIN=$PWD/target/release/clusterdns
WORK=$(mktemp -d /tmp/clusterdns-bench.XXXXXX)
trap 'kill $UP 2>/dev/null || true; rm -rf "$WORK"' EXIT

bash "$PEERS" --gen-only "$WORK/data" >/dev/null
python3 bench/hosts_to_snapshot.py "$WORK/data/names.hosts" >"$WORK/cluster.json"
cat >"$WORK/upstream.Corefile" <<EOC
.:5399 {
    bind 127.0.0.1
    kubernetes cluster.local {
        snapshot $WORK/cluster.json
        ttl 3600
    }
}
EOC
cat >"$WORK/target.Corefile" <<EOC
.:5310 {
    bind 127.0.0.1
    cache 3600
    forward . 127.0.0.1:5399
}
EOC
"$BIN" -conf "$WORK/upstream.Corefile" >"$WORK/upstream.log" 2>&1 &
UP=$!
sleep 1
bash "$PEERS" --names "$WORK/data/names.hosts" -d "$DURATION" -r "$ROUNDS" --configs cpu0 -q 100 \
    --target 127.0.0.1:5310 --target-cmd "$BIN -conf $WORK/target.Corefile" \
    knot nsd unbound dnsmasq
