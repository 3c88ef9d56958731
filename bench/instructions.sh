#!/usr/bin/env bash
# Instructions per query of the answer path, counted by callgrind: deterministic, so it can be
# compared across commits on a busy machine where wall-clock figures cannot.
#
#   bash bench/instructions.sh [FILTER] [ITERS]
#
# Runs `cargo bench --bench answer` (benches/answer.rs) once per case with ANSWER_ITERS=ITERS
# (default 2000) under `valgrind --tool=callgrind`, counting only the function that answers the
# queries (`measured`: query bytes in, reply bytes out, as a UDP reader does it, no socket), and
# prints instructions per query. FILTER selects cases by "setup: case" substring, e.g.
# `kubeadm` or `ClusterIP A`. Needs valgrind; takes about 20 s per case.
set -euo pipefail
cd "$(dirname "$0")/.."
FILTER=${1:-}
ITERS=${2:-2000}
cargo bench --bench answer --no-run --quiet 2>/dev/null
BIN=$(cargo bench --bench answer --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "answer" and m.get("executable"):
        print(m["executable"])')
# Every "setup: case" label, from a run that answers nothing (ANSWER_ITERS=0).
mapfile -t LABELS < <(ANSWER_ITERS=0 ANSWER_CASE="$FILTER" "$BIN" --bench | awk '
    /^== / {setup = substr($0, 4); next}
    {sub(/ +0 queries$/, ""); print setup ": " $0}')
OUT=$(mktemp -d /tmp/clusterdns-instr.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
printf '%-62s %12s\n' "case" "instr/query"
for label in "${LABELS[@]}"; do
    ANSWER_ITERS=$ITERS ANSWER_CASE="=$label" valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect='*answer*measured*' --callgrind-out-file="$OUT/cg.out" \
        "$BIN" --bench >/dev/null 2>"$OUT/vg.log" || { cat "$OUT/vg.log" >&2; exit 1; }
    ir=$(awk '/^summary:/ {print $2}' "$OUT/cg.out")
    printf '%-62s %12d\n' "$label" $((ir / ITERS))
done
