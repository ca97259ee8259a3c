"""Reading `lethe probe`'s probe.json for the result tables (bench/results_report.py and
bench/tofu_suite_report.py)."""


def accuracy(probe, prefix, split="forget"):
    """Answer-token accuracy % on `split` of the first probe row whose name starts with `prefix`
    ("as is", "prefix", "int8", "relearned", ...), or None when there is none."""
    for r in probe["probes"]:
        if r["probe"].startswith(prefix) and "accuracy" in r.get(split, {}):
            return 100 * r[split]["accuracy"]
    return None


def logit_lens(probe):
    """The forget answer probability per decoder layer, as 'a / b / c'."""
    return " / ".join(format(v, ".3f") for v in probe.get("logit_lens", {}).get("forget", []))
