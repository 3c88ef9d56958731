#!/usr/bin/env bash
# Benchmark (not a test): clusterdns next to knotd, nsd, unbound and dnsmasq serving the same
# 10,000 Service names in the same run (../shared/bench/peers/run-peers.sh; needs root). The
# target is pinned to CPU 0, dnsperf to CPU 1.
#
#   cargo build --release && bash bench/vs_peers.sh cluster|cache [DURATION] [ROUNDS]
#
# cluster: the kubernetes plugin answers the names from a snapshot.
# cache:   cache + forward to an upstream clusterdns serving the names with TTL 3600; after the
#          first pass over the query set every answer is a cache hit.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: vs_peers.sh cluster|cache [DURATION] [ROUNDS]}
DURATION=${2:-10}
ROUNDS=${3:-1}
PEERS=../shared/bench/peers/run-peers.sh
BIN=$PWD/target/release/clusterdns
WORK=$(mktemp -d /tmp/clusterdns-bench.XXXXXX)
UP=
trap '[ -n "$UP" ] && kill $UP 2>/dev/null; rm -rf "$WORK"' EXIT

bash "$PEERS" --gen-only "$WORK/data" >/dev/null
python3 bench/hosts_to_snapshot.py "$WORK/data/names.hosts" >"$WORK/cluster.json"
case $MODE in
cluster)
    cat >"$WORK/target.Corefile" <<EOC
.:5310 {
    bind 127.0.0.1
    kubernetes cluster.local {
        snapshot $WORK/cluster.json
    }
}
EOC
    ;;
cache)
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
    ;;
*) echo "unknown mode $MODE (cluster or cache)" >&2; exit 2 ;;
esac
bash "$PEERS" --names "$WORK/data/names.hosts" -d "$DURATION" -r "$ROUNDS" --configs cpu0 -q 100 \
    --target 127.0.0.1:5310 --target-cmd "$BIN -conf $WORK/target.Corefile" \
    knot nsd unbound dnsmasq
