"""Reference for TOFU's model utility terms as open-unlearning defines them (docs/METHODS.md), on
transformers' own forward pass.

Reads CASE/model (written by lethe) and CASE/items.json:
{"splits": {NAME: [{"answer": {"ids", "prompt_len"}, "options": [{"ids", "prompt_len"}, ...],
"rouge_recall": R}]}}. Each sequence runs alone; avg_loss is its mean answer-token NLL. Per item:
prob = exp(-avg_loss(answer)); where the item has options (perturbed answers, the correct one
being the answer itself): prob_normalised = p / (p + sum_k exp(-avg_loss_k) + 1e-10) and
truth_ratio = exp(-mean_k avg_loss_k) / (p + 1e-10). Per split: the means of prob and
prob_normalised, and truth ratio's "true better" mean(max(0, 1 - R)). model_utility: the harmonic
mean of retain {prob, ROUGE} and, for the splits with options, {prob_normalised, ROUGE, truth
ratio}, the ROUGE-L recalls taken from the case (lethe's per-item values), and
model_utility_without_rouge, the same without the ROUGE terms (an untrained model generates none
of the answers: ROUGE 0 makes the first 0). Writes CASE/ref.json.

usage: tofu_reference.py CASE_DIR
"""
import json
import math
import statistics
import sys

import torch
import transformers
from hf_load import load_causal_lm


def avg_loss(model, seq):
    ids = torch.tensor([seq["ids"]])
    P = seq["prompt_len"]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    lp = torch.log_softmax(logits[P - 1:-1], -1)
    return -lp.gather(1, ids[0, P:].view(-1, 1)).mean().item()


def main():
    case = sys.argv[1]
    spec = json.load(open(f"{case}/items.json"))
    model = load_causal_lm(f"{case}/model")
    out = {"splits": {}}
    terms, no_rouge = [], []
    for name, items in spec["splits"].items():
        per_item = []
        for it in items:
            c = avg_loss(model, it["answer"])
            p = math.exp(-c)
            row = {"prob": p}
            if it["options"]:
                wrong = [avg_loss(model, o) for o in it["options"]]
                row["prob_normalised"] = p / (p + sum(math.exp(-w) for w in wrong) + 1e-10)
                row["truth_ratio"] = math.exp(-statistics.fmean(wrong)) / (p + 1e-10)
            per_item.append(row)
        agg = {"prob": statistics.fmean(r["prob"] for r in per_item),
               "rouge": statistics.fmean(it["rouge_recall"] for it in items)}
        if all("truth_ratio" in r for r in per_item):
            agg["prob_normalised"] = statistics.fmean(r["prob_normalised"] for r in per_item)
            agg["truth_ratio"] = statistics.fmean(max(0.0, 1 - r["truth_ratio"]) for r in per_item)
            terms += [agg["prob_normalised"], agg["rouge"], agg["truth_ratio"]]
            no_rouge += [agg["prob_normalised"], agg["truth_ratio"]]
        else:
            terms += [agg["prob"], agg["rouge"]]
            no_rouge += [agg["prob"]]
        out["splits"][name] = {"items": per_item, "agg": agg}
    out["model_utility"] = statistics.harmonic_mean(terms)
    out["model_utility_without_rouge"] = statistics.harmonic_mean(no_rouge)
    json.dump(out, open(f"{case}/ref.json", "w"), indent=1)
    print(f"[ reference ] transformers {transformers.__version__}: model utility of {len(terms)} terms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
