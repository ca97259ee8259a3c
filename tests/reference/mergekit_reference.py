"""mergekit as the reference for `lethe merge`.
usage: mergekit_reference.py OUT BASE METHOD PARAMS_JSON MODEL [MODEL ...]
PARAMS_JSON: {"weights": [...], "density": d, "lambda": l, "normalize": bool or null,
"rescale": bool or null, "out_dtype": optional} (null: mergekit's default). Runs mergekit's own merge (CPU, float32)
and writes its output directory OUT."""
import json
import sys

from importlib.metadata import version

import yaml
from mergekit.config import MergeConfiguration
from mergekit.merge import MergeOptions, run_merge

out, base, method, params_json = sys.argv[1:5]
models = sys.argv[5:]
p = json.loads(params_json)
shared = {}
if method != "linear":
    shared["lambda"] = p.get("lambda", 1.0)
for key in ("normalize", "rescale"):
    if p.get(key) is not None:
        shared[key] = p[key]
entries = []
for i, m in enumerate(models):
    params = {"weight": p["weights"][i]}
    if method in ("ties", "dare_ties", "dare_linear"):
        params["density"] = p.get("density", 1.0)
    entries.append({"model": m, "parameters": params})
cfg = {"merge_method": method, "models": entries, "dtype": "float32", "parameters": shared}
if p.get("out_dtype"):
    cfg["out_dtype"] = p["out_dtype"]
if method != "linear":  # linear averages the models themselves; the base takes no part
    cfg["base_model"] = base
config = MergeConfiguration.model_validate(yaml.safe_load(yaml.safe_dump(cfg)))
run_merge(config, out, options=MergeOptions(cuda=False, copy_tokenizer=False, lazy_unpickle=False,
                                            safe_serialization=True, random_seed=0))
print(f"[ reference ] mergekit {version('mergekit')} {method} {json.dumps(shared)} -> {out}")
