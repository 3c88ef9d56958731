#!/usr/bin/env python3
"""Medians over the rounds of a run-peers.sh output (stdin): for its table, where a value of
each round is shown `a/b/c`, one line per server with the median QPS and srv_us/q and the ratio
of srv_us/q to knotd's; for its latency rows (one per round), one line per server with the
median p50 and p99 and their ratios to knotd's. bench/run.sh prints these under each section.

    bash bench/vs_peers.sh cluster 10 3 | python3 bench/medians.py
"""
import statistics
import sys

table, lat = {}, {}
mode = None
for line in sys.stdin:
    sys.stdout.write(line)
    f = line.split()
    if f[:3] == ["peer", "config", "q"]:
        mode = "table"
    elif f[:3] == ["peer", "config", "run"]:
        mode = "lat"
    elif not f or f[0].startswith("#") or f[0].startswith("=="):
        mode = None if f and f[0] == "==" else mode
    elif mode == "table" and len(f) >= 11:
        try:
            qps = [float(x) for x in f[4].split("/")]
            us = [float(x) for x in f[8].split("/")]
        except ValueError:
            continue
        table[f[0]] = (statistics.median(qps), statistics.median(us), len(us))
    elif mode == "lat" and len(f) >= 8:
        try:
            p50, p99 = float(f[5]), float(f[7])
        except ValueError:
            continue
        lat.setdefault(f[0], []).append((p50, p99))
for name, (qps, us, n) in table.items():
    vs = f"  vs knotd {us / table['knot'][1]:.2f}x" if "knot" in table else ""
    print(f"median of {n}: {name:<20} qps {qps:9.0f}  srv_us/q {us:6.2f}{vs}")
for name, rows in lat.items():
    p50 = statistics.median(r[0] for r in rows)
    p99 = statistics.median(r[1] for r in rows)
    k = lat.get("knot")
    r50 = f" ({p50 / statistics.median(r[0] for r in k):.2f}x knotd)" if k else ""
    r99 = f" ({p99 / statistics.median(r[1] for r in k):.2f}x knotd)" if k else ""
    print(f"median of {len(rows)}: {name:<20} p50 {p50:.3f} ms{r50}  p99 {p99:.3f} ms{r99}")
