#!/usr/bin/env python3
"""Turns the peers' name set (`IP svc-N.ns-M.svc.ZONE` per line, ../shared/bench/peers/gen-data.py)
into a kubernetes snapshot file (a JSON v1 List of Namespaces and ClusterIP Services), so that
clusterdns serves exactly the names the peers serve.

    python3 bench/hosts_to_snapshot.py names.hosts > cluster.json
"""
import json
import sys

items, namespaces = [], set()
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) < 2 or parts[0].startswith("#"):
        continue
    ip, name = parts[0], parts[1].rstrip(".")
    labels = name.split(".")
    if len(labels) < 4 or labels[2] != "svc":
        continue
    svc, ns = labels[0], labels[1]
    namespaces.add(ns)
    items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": ns},
                  "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
items = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in sorted(namespaces)] + items
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout)
