"""Reference for lethe's memorisation and membership-inference metrics (eval/mia.h), written from
open-unlearning's definitions (docs/METHODS.md) on transformers' own forward pass.

Reads CASE/model (written by lethe, loaded with AutoModelForCausalLM), CASE/ref_model (the
reference attack's model) and CASE/items.json:
{"items": [{"ids": [...], "prompt_len": P, "answer": "text", "group": "forget"|"holdout"}], "k": 0.4}.
Each item runs alone (no padding). Writes CASE/ref.json: per item {exact_memorization,
extraction_strength, loss, zlib, min_k, min_k_plus_plus, gradnorm, reference}, and the AUC of each
score with forget labelled 0 and holdout 1 (from the pairs: P(holdout > forget) + 0.5 P(equal)).
GradNorm: the item's mean answer-token NLL backpropagated alone; the mean over the model's
parameter tensors of each gradient's L2 norm. Reference: the NLL minus the reference model's.

usage: mia_reference.py CASE_DIR
"""
import json
import math
import sys
import zlib

import torch
import transformers
from hf_load import load_causal_lm


def min_k(values, k):
    if not values:
        return 0.0
    m = max(1, int(math.floor(len(values) * k)))
    return -sum(sorted(values)[:m]) / m


def extraction_strength(pred, labels):
    n = len(labels)
    k = n  # no suffix matches: the empty one does
    for start in range(n):
        if pred[start:] == labels[start:]:
            k = start
            break
    return 1.0 - k / n


def auc(neg, pos):
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


def main():
    case = sys.argv[1]
    spec = json.load(open(f"{case}/items.json"))
    model = load_causal_lm(f"{case}/model")
    ref_model = load_causal_lm(f"{case}/ref_model")
    out = []
    for it in spec["items"]:
        ids = torch.tensor([it["ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].double()
        P = it["prompt_len"]
        # positions P-1 .. n-2 predict the answer tokens P .. n-1
        z = logits[P - 1:-1]
        y = ids[0, P:]
        logp = torch.log_softmax(z, -1)
        probs = logp.exp()
        tok_lp = logp.gather(1, y.view(-1, 1)).view(-1)
        mu = (probs * logp).sum(-1)
        sigma = ((probs * logp * logp).sum(-1) - mu * mu).sqrt()
        zscore = (tok_lp - mu) / sigma
        pred = z.argmax(-1).tolist()
        labels = y.tolist()
        loss = -tok_lp.mean().item()
        model.zero_grad()
        lp = torch.log_softmax(model(input_ids=ids).logits[0, P - 1:-1], -1)
        (-lp.gather(1, y.view(-1, 1)).mean()).backward()
        norms = [p.grad.detach().double().norm(2) for p in model.parameters() if p.grad is not None]
        gradnorm = torch.stack(norms).mean().item()
        with torch.no_grad():
            ref_lp = torch.log_softmax(ref_model(input_ids=ids).logits[0, P - 1:-1].double(), -1)
        ref_loss = -ref_lp.gather(1, y.view(-1, 1)).mean().item()
        out.append({
            "group": it["group"],
            "exact_memorization": sum(int(a == b) for a, b in zip(pred, labels)) / len(labels),
            "extraction_strength": extraction_strength(pred, labels),
            "loss": loss,
            "zlib": loss / len(zlib.compress(it["answer"].encode("utf-8"))),
            "min_k": min_k(tok_lp.tolist(), spec["k"]),
            "min_k_plus_plus": min_k(zscore.tolist(), spec["k"]),
            "gradnorm": gradnorm,
            "reference": loss - ref_loss,
        })
    aucs = {}
    for key in ("loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm", "reference"):
        neg = [o[key] for o in out if o["group"] == "forget"]
        pos = [o[key] for o in out if o["group"] == "holdout"]
        aucs[key] = auc(neg, pos)
    json.dump({"items": out, "auc": aucs}, open(f"{case}/ref.json", "w"), indent=1)
    print(f"[ reference ] transformers {transformers.__version__}: {len(out)} items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
