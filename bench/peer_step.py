"""The Python peer of `lethe bench step`: the same training step with Hugging Face transformers
and torch.optim.AdamW (peft for LoRA), as open-unlearning runs it: the model for the config
(AutoModelForCausalLM.from_config), random sequences of exactly SEQ tokens (half prompt, half
answer), the method's loss, gradient clipping at 1.0, AdamW at lr 1e-5. For npo, kl, dpo, rmu and
adversarial the frozen reference model runs every step (open-unlearning keeps a second model;
lethe caches the reference's values once). dpo prefers a refusal (the forget prompt, then random
answer tokens, --win-len tokens in all: lethe bench step reports its refusals' mean length as
preferred_seq_len) over the answer, beta 0.1, + NLL(retain); adversarial trains the forget answers
towards the reference's most likely token other than the true one. rmu as open-unlearning runs it: a forward hook on decoder layer
--rmu-layer takes its output from a whole forward pass (every layer and the head), the
down_proj weights of that layer and the two below train, loss = MSE(h_f, c u) + 1200
MSE(h_r, h_r_ref). Prints one JSON line with the keys lethe prints.
usage: peer_step.py --model-config CFG --batch-size B --seq-len T --steps S [--warmup W]
                    [--method nll|ga|gd|npo|kl|dpo|adversarial|rmu] [--rmu-layer L] [--win-len W]
                    [--lora-rank R] [--threads N]
                    [--device cpu|cuda] [--dtype float32|bfloat16] [--attn sdpa|eager]
"""
import argparse
import copy
import json
import resource
import statistics
import time

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-config", required=True)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--method", default="gd", choices=["nll", "ga", "gd", "npo", "kl", "dpo", "adversarial", "rmu"])
    ap.add_argument("--rmu-layer", type=int, default=7)
    ap.add_argument("--win-len", type=int, default=0, help="dpo: tokens of a preferred sequence (0: --seq-len)")
    ap.add_argument("--lora-rank", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[a.dtype]
    torch.manual_seed(0)
    from transformers import AutoConfig, AutoModelForCausalLM
    cfg = json.load(open(a.model_config))
    hf_cfg = {k: v for k, v in cfg.items() if k not in ("model_type", "torch_dtype")}
    config = AutoConfig.for_model(cfg.get("model_type", "llama"), **hf_cfg)
    config._attn_implementation = a.attn
    model = AutoModelForCausalLM.from_config(config).to(a.device, dtype)
    ref = None
    if a.method in ("npo", "kl", "dpo", "adversarial", "rmu"):
        ref = copy.deepcopy(model).eval().requires_grad_(False)
    if a.method == "rmu":
        L = a.rmu_layer
        trained = {f"model.layers.{l}.mlp.down_proj.weight" for l in (L - 2, L - 1, L)}
        for n, p in model.named_parameters():
            p.requires_grad_(n in trained)
        u = torch.rand(cfg["hidden_size"], device=a.device)
        control = (6.5 * u / u.norm()).to(dtype)
    if a.lora_rank > 0:
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=a.lora_rank, lora_alpha=16, lora_dropout=0.1,
                                                 target_modules="all-linear"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, weight_decay=0.0)
    B, T, V = a.batch_size, a.seq_len, cfg["vocab_size"]

    def batch():
        ids = torch.randint(0, V, (B, T), device=a.device)
        labels = ids.clone()
        labels[:, : T // 2] = -100
        return ids, labels

    W = a.win_len or T
    if W <= T // 2:
        ap.error(f"--win-len {W} leaves no answer after the {T // 2}-token prompt")

    def preferred(forget):  # the forget prompt, then a refusal of W - T/2 tokens
        ids = torch.cat([forget[0][:, : T // 2], torch.randint(0, V, (B, W - T // 2), device=a.device)], 1)
        labels = ids.clone()
        labels[:, : T // 2] = -100
        return ids, labels

    def token_nll(logits, labels):  # [B, T-1] per-token NLL, 0 off the answer
        lg = logits[:, :-1].float()
        lb = labels[:, 1:]
        nll = F.cross_entropy(lg.reshape(-1, V), lb.reshape(-1), ignore_index=-100, reduction="none")
        return nll.view(lb.shape), lb.ne(-100)

    def summed_logp(m, ids, labels):
        return -token_nll(m(input_ids=ids).logits, labels)[0].sum(1)

    def mean_item_nll(m, ids, labels):
        nll, mask = token_nll(m(input_ids=ids).logits, labels)
        return (nll.sum(1) / mask.sum(1).clamp_min(1)).mean()

    def layer_output(m, ids, no_grad):  # open-unlearning's forward_with_cache
        cache = []

        def hook(module, inputs, output):
            cache.append(output[0] if isinstance(output, tuple) else output)

        handle = m.model.layers[a.rmu_layer].register_forward_hook(hook)
        with torch.set_grad_enabled(not no_grad):
            m(input_ids=ids)
        handle.remove()
        return cache[0]

    def loss_of(forget, retain):
        ids, labels = forget
        if a.method == "rmu":
            f = layer_output(model, ids, False)
            r = layer_output(model, retain[0], False)
            r_ref = layer_output(ref, retain[0], True)
            return F.mse_loss(f, control.expand_as(f)) + 1200.0 * F.mse_loss(r, r_ref)
        if a.method == "dpo":  # open-unlearning's DPO: both reference log-probs every step
            win = preferred(forget)
            lw, ll = summed_logp(model, *win), summed_logp(model, ids, labels)
            with torch.no_grad():
                rw, rl = summed_logp(ref, *win), summed_logp(ref, ids, labels)
            margin = (lw - rw) - (ll - rl)
            return -2.0 / 0.1 * F.logsigmoid(0.1 * margin).mean() + mean_item_nll(model, *retain)
        if a.method == "adversarial":  # the reference's top-1 other than the true token, every step
            with torch.no_grad():
                lg = ref(input_ids=ids).logits[:, :-1].float()
                tgt = labels[:, 1:]
                lg.scatter_(-1, tgt.clamp_min(0).unsqueeze(-1), float("-inf"))
                adv = labels.clone()
                adv[:, 1:] = torch.where(tgt.ne(-100), lg.argmax(-1), tgt)
            return mean_item_nll(model, ids, adv)
        if a.method == "nll":
            return mean_item_nll(model, ids, labels)
        if a.method == "ga":
            return -mean_item_nll(model, ids, labels)
        if a.method == "gd":
            return -mean_item_nll(model, ids, labels) + mean_item_nll(model, *retain)
        if a.method == "npo":
            nll, _ = token_nll(model(input_ids=ids).logits, labels)
            with torch.no_grad():
                ref_nll, _ = token_nll(ref(input_ids=ids).logits, labels)
            ratio = ref_nll.sum(1) - nll.sum(1)  # log pi_theta - log pi_ref
            return -2.0 / 0.1 * F.logsigmoid(-0.1 * ratio).mean() + mean_item_nll(model, *retain)
        # kl: -NLL(forget) + KL(p_ref || p_theta) over the retain answer positions
        r_ids, r_labels = retain
        logp = F.log_softmax(model(input_ids=r_ids).logits[:, :-1].float(), -1)
        with torch.no_grad():
            ref_logp = F.log_softmax(ref(input_ids=r_ids).logits[:, :-1].float(), -1)
        mask = r_labels[:, 1:].ne(-100).float()
        kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        return -mean_item_nll(model, ids, labels) + (kl * mask).sum() / mask.sum()

    cuda = a.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times = []
    for s in range(a.warmup + a.steps):
        forget, retain = batch(), batch()
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_of(forget, retain)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        loss.item()
        sync()
        if s >= a.warmup:
            times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    seqs = 2 if a.method in ("gd", "npo", "kl", "dpo", "rmu") else 1  # forget (+ retain) sequences
    tokens = seqs * B * T + (B * W if a.method == "dpo" else 0)  # + dpo's preferred ones
    mem = (torch.cuda.max_memory_allocated() // 2**20 if cuda
           else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    print(json.dumps({"bench": "step", "impl": f"transformers-{a.attn}" + ("+peft" if a.lora_rank else ""),
                      "method": a.method, "params": sum(p.numel() for p in model.parameters()),
                      "device": a.device, "dtype": a.dtype, "threads": torch.get_num_threads(),
                      "batch_size": B, "seq_len": T, "steps": a.steps, "step_s": step_s, "step_s_all": times,
                      "tokens_per_s": tokens / step_s, "peak_memory_mib": [mem]}))


if __name__ == "__main__":
    main()
