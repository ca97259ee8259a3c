"""Compares the weights of two HF model directories (single or sharded safetensors).
usage: compare_weights.py DIR_A DIR_B (--exact | --rtol R)   exit 0 when they agree.
--rtol judges ||a - b|| / ||b|| over the whole parameter vector; the worst single tensor is
printed too (Adam's first steps amplify rounding on near-zero gradient elements, so one small
tensor can differ more than the model as a whole; see docs/DISTRIBUTED.md)."""
import json
import os
import sys

from safetensors.torch import load_file as read_safetensors


def load(d):
    index = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(index):
        out = {}
        for f in sorted(set(json.load(open(index))["weight_map"].values())):
            out.update(read_safetensors(os.path.join(d, f)))
        return out
    return read_safetensors(os.path.join(d, "model.safetensors"))


a, b = load(sys.argv[1]), load(sys.argv[2])
exact = sys.argv[3] == "--exact"
rtol = 0.0 if exact else float(sys.argv[4])
assert a.keys() == b.keys(), "different tensor names"
worst, worst_name, diff_sq, ref_sq = 0.0, "", 0.0, 0.0
for k in sorted(a):
    if exact and not bool((a[k] == b[k]).all()):
        print(f"{k} differs"); sys.exit(1)
    d = a[k].double() - b[k].double()
    diff_sq += float(d.pow(2).sum())
    ref_sq += float(b[k].double().pow(2).sum())
    err = float(d.norm()) / max(float(b[k].double().norm()), 1e-30)
    if err > worst:
        worst, worst_name = err, k
total = (diff_sq ** 0.5) / max(ref_sq ** 0.5, 1e-30)
print(f"relative error {total:.3g} over all {len(a)} tensors; worst tensor {worst_name} {worst:.3g}")
sys.exit(0 if total <= rtol else 1)
