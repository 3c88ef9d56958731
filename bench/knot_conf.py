#!/usr/bin/env python3
"""Writes a knotd configuration that serves zone files from a data directory: one UDP and one
TCP worker, logging errors only, no journal or zone-file sync (a benchmark peer, not a server).
Used by pod_traffic.py (its stub upstream) and cpu_split.sh (the peer on cluster names).

    python3 bench/knot_conf.py DIR DATA PORT ZONE...   # writes DIR/knot.conf, prints its path

Each ZONE is served from DATA/ZONE.zone ("." from DATA/root.zone)."""
import os
import sys


def write(d, data, port, zones):
    """Writes d/knot.conf (and the rundir and database directories) and returns knotd's argv."""
    os.makedirs(os.path.join(d, "db"), exist_ok=True)
    os.makedirs(os.path.join(d, "run"), exist_ok=True)
    zone_lines = "".join(
        f'  - domain: {z}\n    file: "{"root" if z == "." else z}.zone"\n' for z in zones)
    path = os.path.join(d, "knot.conf")
    with open(path, "w") as f:
        f.write(f"""server:
    rundir: "{d}/run"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: error
database:
    storage: "{d}/db"
template:
  - id: default
    storage: "{data}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off
zone:
{zone_lines}""")
    return ["knotd", "-c", path]


if __name__ == "__main__":
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    print(write(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:])[2])
