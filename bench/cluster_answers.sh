#!/usr/bin/env bash
# Benchmark (not a test) of cluster answers: dnsperf → clusterdns's kubernetes plugin (snapshot of
# the peers' 10,000 names, pinned to CPU 0), next to knotd, nsd, unbound and dnsmasq serving the
# same names in the same run (../shared/bench/peers/run-peers.sh; needs root).
#
#   cargo build --release && bash bench/cluster_answers.sh [DURATION] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
ROUNDS=${2:-1}
PEERS=../shared/bench/peers/run-peers.sh
BIN=$PWD/target/release/clusterdns
WORK=$(mktemp -d /tmp/clusterdns-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

bash "$PEERS" --gen-only "$WORK/data" >/dev/null
python3 bench/hosts_to_snapshot.py "$WORK/data/names.hosts" >"$WORK/cluster.json"
cat >"$WORK/target.Corefile" <<EOC
.:5310 {
    bind 127.0.0.1
    kubernetes cluster.local {
        snapshot $WORK/cluster.json
    }
}
EOC
bash "$PEERS" --names "$WORK/data/names.hosts" -d "$DURATION" -r "$ROUNDS" --configs cpu0 -q 100 \
    --target 127.0.0.1:5310 --target-cmd "$BIN -conf $WORK/target.Corefile" \
    knot nsd unbound dnsmasq
