"""Independent reference for lethe's unlearning loss terms (docs/METHODS.md), on PyPI's
torch. Reads the inputs lethe's test wrote (safetensors), evaluates every loss with
torch autograd from the formulas, and writes each loss and its gradients.

usage: losses_reference.py INPUTS.safetensors PARAMS.json OUT.safetensors
"""
import json
import math
import sys

import torch
import torch.nn.functional as F

from safetensors.torch import load_file as read_safetensors, save_file


def npo(logp, logp_ref, beta):
    # (2/beta) E log(1 + (pi/pi_ref)^beta), pi = exp(logp)
    ratio = torch.exp(logp - logp_ref)
    return (2.0 / beta) * torch.log1p(ratio ** beta).mean()


def simnpo(mean_nll, beta, delta):
    return -(2.0 / beta) * torch.log(torch.sigmoid(beta * (mean_nll - delta))).mean()


def dpo(lw, lw_ref, ll, ll_ref, beta):
    margin = (lw - lw_ref) - (ll - ll_ref)
    return -(2.0 / beta) * torch.log(torch.sigmoid(beta * margin)).mean()


def kl(logits, ref_logits, mask):
    logq = F.log_softmax(logits, dim=-1)
    logp = F.log_softmax(ref_logits, dim=-1)
    per_pos = F.kl_div(logq, logp, reduction="none", log_target=True).sum(-1)  # KL(p || q)
    per_item = (per_pos * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    return per_item.mean()


def masked_mse(h, target, mask):
    per_pos = F.mse_loss(h, target.expand_as(h), reduction="none").mean(-1)
    return ((per_pos * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()


def swd(w, w0, dirs):
    total = 0.0
    for k in range(dirs.shape[1]):
        a, _ = torch.sort(w @ dirs[:, k])
        b, _ = torch.sort(w0 @ dirs[:, k])
        total = total + ((b - a) ** 2).sum()
    return total / dirs.shape[1]


def masked_item_mean(per_pos, mask):
    return ((per_pos * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()


def wga(nll, mask, beta):
    # -mean(w * CE), w = p(y)^beta with no gradient
    w = torch.exp(-nll.detach()) ** beta
    return -masked_item_mean(w * nll, mask)


def satimp(nll, mask, b1, b2):
    p = torch.exp(-nll.detach())
    return -masked_item_mean(p ** b1 * (1 - p) ** b2 * nll, mask)


def soft_ce(logits, q):
    return -(q * F.log_softmax(logits, dim=-1)).sum(-1)


def undial(logits, ref_logits, targets, mask, beta):
    adjusted = ref_logits.clone()
    for b, t in (targets >= 0).nonzero().tolist():
        adjusted[b, t, targets[b, t]] -= beta
    return masked_item_mean(soft_ce(logits, F.softmax(adjusted, dim=-1)), mask)


def ce_u(logits, targets, mask):
    z = logits.detach().clone()
    for b, t in (targets >= 0).nonzero().tolist():
        z[b, t, targets[b, t]] = float("-inf")
    return masked_item_mean(soft_ce(logits, F.softmax(z, dim=-1)), mask)


def logit_spread(logits, mask):
    return masked_item_mean((logits.max(dim=-1).values - logits.mean(dim=-1)) ** 2, mask)


def main():
    x = {k: v.double() for k, v in read_safetensors(sys.argv[1]).items()}
    p = json.load(open(sys.argv[2]))
    out = {}

    def run(name, fn, wrt):
        leaves = {k: x[k].clone().requires_grad_(True) for k in wrt}
        loss = fn(leaves)
        loss.backward()
        out[name + ".loss"] = loss.detach().reshape(1)
        for k, v in leaves.items():
            out[name + ".grad." + k] = v.grad

    run("npo", lambda t: npo(t["logp"], x["logp_ref"], p["npo_beta"]), ["logp"])
    run("simnpo", lambda t: simnpo(t["mean_nll"], p["simnpo_beta"], p["simnpo_delta"]), ["mean_nll"])
    run("dpo", lambda t: dpo(t["logp_w"], x["logp_w_ref"], t["logp_l"], x["logp_l_ref"], p["dpo_beta"]),
        ["logp_w", "logp_l"])
    run("kl", lambda t: kl(t["logits"], x["ref_logits"], x["kl_mask"]), ["logits"])
    run("rmu", lambda t: masked_mse(t["h"], x["target"], x["mse_mask"]), ["h"])
    run("swd", lambda t: swd(t["w"], x["w0"], x["dirs"]), ["w"])
    targets = x["targets"].long()
    run("wga", lambda t: wga(t["nll"], x["tok_mask"], p["wga_beta"]), ["nll"])
    run("satimp", lambda t: satimp(t["nll"], x["tok_mask"], p["satimp_b1"], p["satimp_b2"]), ["nll"])
    run("undial", lambda t: undial(t["logits"], x["ref_logits"], targets, x["kl_mask"], p["undial_beta"]), ["logits"])
    run("ce_u", lambda t: ce_u(t["logits"], targets, x["tok_mask"]), ["logits"])
    run("pdu", lambda t: logit_spread(t["logits"], x["tok_mask"]), ["logits"])
    save_file({k: v.float().contiguous() for k, v in out.items()}, sys.argv[3])
    return 0


if __name__ == "__main__":
    sys.exit(main())
