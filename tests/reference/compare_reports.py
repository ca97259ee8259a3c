#!/usr/bin/env python3
"""Two lethe report.json (or probe.json) files agree: every number under the given top-level keys
within a relative tolerance (of max(1, |x|)), every string and flag equal, the same keys and
lengths.
Membership scores (any path with "mia") get their own tolerance: Min-K%++ subtracts two
log-probabilities of similar size, so the rounding of differently batched passes shows there.

usage: compare_reports.py A B [--keys splits,tofu,mia] [--rtol 1e-6] [--mia-rtol 1e-4]
(A and B: report.json or probe.json files, or the directories holding them; probe.json's keys
are probes, logit_lens and relearn_ratio)
"""
import argparse
import json
import os
import sys


def load(path):
    if os.path.isdir(path):
        report = os.path.join(path, "report.json")
        path = report if os.path.exists(report) else os.path.join(path, "probe.json")
    return json.load(open(path))


def compare(x, y, where, rtol, mia_rtol):
    if isinstance(x, dict):
        assert isinstance(y, dict) and x.keys() == y.keys(), (where, sorted(set(x) ^ set(y)))
        for k in x:
            compare(x[k], y[k], f"{where}.{k}", rtol, mia_rtol)
    elif isinstance(x, list):
        assert isinstance(y, list) and len(x) == len(y), (where, len(x), len(y))
        for i, (u, v) in enumerate(zip(x, y)):
            compare(u, v, f"{where}[{i}]", rtol, mia_rtol)
    elif isinstance(x, (int, float)) and not isinstance(x, bool):
        tol = mia_rtol if "mia" in where else rtol
        assert abs(x - y) <= tol * max(1.0, abs(x)), (where, x, y)
    else:
        assert x == y, (where, x, y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--keys", default="splits")
    ap.add_argument("--rtol", type=float, default=1e-6)
    ap.add_argument("--mia-rtol", type=float, default=1e-4)
    args = ap.parse_args()
    a, b = load(args.a), load(args.b)
    for key in args.keys.split(","):
        assert key in a and key in b, f"{key}: missing from {args.a if key not in a else args.b}"
        compare(a[key], b[key], key, args.rtol, args.mia_rtol)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"reports differ: {e}", file=sys.stderr)
        sys.exit(1)
