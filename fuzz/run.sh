#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60), one after another, and fails on the
# first crash, failed invariant, timeout or leak. Seeds: fuzz/seeds/TARGET (captured dig and
# kdig queries, hand-made malformed ones, the demo cluster's objects, cluster names, Corefiles)
# and, for `corefile`, the real Corefiles in ../shared/corefiles; what a run finds is kept in
# fuzz/corpus/TARGET, a crash in fuzz/artifacts/TARGET. Prints libFuzzer's final stats.
#
#   fuzz/run.sh 60                      # what CI runs
#   TARGETS=query fuzz/run.sh 3600      # one target
#   RUNS=10000000 fuzz/run.sh 0         # a number of executions instead of a time
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); builds on stable with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
targets=${TARGETS:-query corefile kube roundtrip zonefile}
export RUSTC_BOOTSTRAP=1
limit=(-max_total_time="$secs")
if [ -n "${RUNS:-}" ]; then
    limit=(-runs="$RUNS")
fi
# No sanitizer (the code is safe Rust; ASan would halve the speed), but with debug assertions
# and overflow checks.
flags=(--sanitizer none --debug-assertions)
cargo +stable fuzz build "${flags[@]}"
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
    seeds=("fuzz/seeds/$t")
    if [ "$t" = corefile ] && [ -d ../shared/corefiles ]; then
        seeds+=(../shared/corefiles)
    fi
    what=${RUNS:+$RUNS runs}
    echo "== fuzz $t (${what:-$secs s})"
    start=$(date +%s)
    set +e
    cargo +stable fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "${seeds[@]}" -- \
        "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$t/" >"fuzz/artifacts/$t.log" 2>&1
    status=$?
    set -e
    grep -E '^(stat::|INFO: Loaded|#[0-9]+ *(INITED|DONE))' "fuzz/artifacts/$t.log" || true
    if [ "$status" -ne 0 ]; then
        echo "fuzz $t FAILED (exit $status); see fuzz/artifacts/$t.log and fuzz/artifacts/$t/"
        tail -40 "fuzz/artifacts/$t.log"
        exit 1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "fuzz/artifacts/$t.log" | grep -o '[0-9]*$' || echo "?")
    echo "fuzz $t: $runs executions in $(( $(date +%s) - start )) s, 0 crashes"
done
