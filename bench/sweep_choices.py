#!/usr/bin/python3
"""Each method's configuration in a `lethe sweep`: the best harmonic mean of x (forget quality, or
1 - forget answer probability without a reference) and y (model utility).
usage: sweep_choices.py SWEEP_JSON   (prints: method lr steps hmean config, one line per method)"""
import json
import sys


def choices(sweep_json):
    """{method: (harmonic mean, result row)} from sweep.json's results."""
    best = {}
    for r in json.load(open(sweep_json))["results"]:
        x, y = max(r["x"], 0.0), max(r["y"], 0.0)
        h = 0.0 if x == 0 or y == 0 else 2 / (1 / x + 1 / y)
        if r["method"] not in best or h > best[r["method"]][0]:
            best[r["method"]] = (h, r)
    return best


if __name__ == "__main__":
    for m, (h, r) in choices(sys.argv[1]).items():
        print(m, r["lr"], r["steps"], f"{h:.4g}", r["name"])
