#!/usr/bin/env bash
# Benchmark (not a test): clusterdns next to knotd, nsd, unbound and dnsmasq serving the same
# 10,000 Service names in the same run (../shared/bench/peers/run-peers.sh; needs root). The
# target is pinned to CPU 0, dnsperf to CPU 1.
#
#   cargo build --release && bash bench/vs_peers.sh MODE [DURATION] [ROUNDS] [run-peers options]
#
# cluster: the kubernetes plugin alone answers the names from a snapshot.
# metrics: the same plus `prometheus` (what metrics cost).
# log:     the same plus `prometheus` and `log` (a line per query to stdout, sent to /dev/null).
# kubeadm: kubeadm's Corefile (errors, health, ready, kubernetes, prometheus, forward, cache 30
#          with success/denial disabled for cluster.local, loop, reload, loadbalance): what a
#          cluster runs; every cluster name is answered by kubernetes.
# cache:   cache + forward to an upstream clusterdns serving the names with TTL 3600. Not every
#          answer is a hit: half of the set's NXDOMAIN names never repeat and the questions
#          exceed the default capacity, so about one query in twenty goes upstream; pure cache
#          hits are measured by bench/pod_traffic.py.
#
# PEERS="knot nsd unbound dnsmasq" (default) chooses the peers; PEERS= measures clusterdns only.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: vs_peers.sh cluster|metrics|log|kubeadm|cache [DURATION] [ROUNDS] [options]}
DURATION=${2:-10}
ROUNDS=${3:-1}
shift $(($# < 3 ? $# : 3))
PEERS_LIST=${PEERS-knot nsd unbound dnsmasq}
RUN_PEERS=../shared/bench/peers/run-peers.sh
BIN=$PWD/target/release/clusterdns
WORK=$(mktemp -d /tmp/clusterdns-bench.XXXXXX)
UP=
trap '[ -n "$UP" ] && kill $UP 2>/dev/null; rm -rf "$WORK"' EXIT

bash "$RUN_PEERS" --gen-only "$WORK/data" >/dev/null
python3 bench/hosts_to_snapshot.py "$WORK/data/names.hosts" >"$WORK/cluster.json"
kubernetes="kubernetes cluster.local {
        snapshot $WORK/cluster.json
    }"
case $MODE in
cluster) extra= ;;
metrics) extra="prometheus 127.0.0.1:0" ;;
log) extra="prometheus 127.0.0.1:0
    log" ;;
kubeadm)
    kubernetes="errors
    health 127.0.0.1:0 {
        lameduck 5s
    }
    ready 127.0.0.1:0
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        snapshot $WORK/cluster.json
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus 127.0.0.1:0
    forward . 127.0.0.1:9
    cache 30 {
        disable success cluster.local
        disable denial cluster.local
    }
    loop
    reload
    loadbalance"
    extra= ;;
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
    kubernetes="cache 3600
    forward . 127.0.0.1:5399"
    extra=
    "$BIN" -conf "$WORK/upstream.Corefile" >"$WORK/upstream.log" 2>&1 &
    UP=$!
    sleep 1
    ;;
*) echo "unknown mode $MODE" >&2; exit 2 ;;
esac
cat >"$WORK/target.Corefile" <<EOC
.:5310 {
    bind 127.0.0.1
    $kubernetes
    $extra
}
EOC
# shellcheck disable=SC2086
bash "$RUN_PEERS" --names "$WORK/data/names.hosts" -d "$DURATION" -r "$ROUNDS" --configs cpu0 -q 100 \
    --target 127.0.0.1:5310 --target-cmd "$BIN -conf $WORK/target.Corefile >/dev/null 2>&1" \
    --target-name "clusterdns-$MODE" "$@" $PEERS_LIST
