#!/usr/bin/python3
"""PyTorch peer for bench/train_step_bench.cpp: the same decoder (tests/reference's eager
implementation, written like HF's eager attention), the same loss, torch.optim.AdamW, the same
batch. Hugging Face transformers is not installable here (no PyPI), so this eager model stands
in for it. usage: peer_train_step.py CONFIG.json BATCH SEQ STEPS THREADS
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "reference"))
from llama_reference import forward  # noqa: E402


def main():
    cfg_path, B, T, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
    torch.set_num_threads(threads)
    cfg = json.load(open(cfg_path))
    torch.manual_seed(0)
    C, H = cfg["hidden_size"], cfg["num_attention_heads"]
    K = cfg.get("num_key_value_heads", H)
    D, I, V = C // H, cfg["intermediate_size"], cfg["vocab_size"]
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "self_attn.q_proj.weight": (H * D, C), p + "self_attn.k_proj.weight": (K * D, C),
                       p + "self_attn.v_proj.weight": (K * D, C), p + "self_attn.o_proj.weight": (C, H * D),
                       p + "mlp.gate_proj.weight": (I, C), p + "mlp.up_proj.weight": (I, C),
                       p + "mlp.down_proj.weight": (C, I), p + "input_layernorm.weight": (C,),
                       p + "post_attention_layernorm.weight": (C,)})
    if not cfg.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (V, C)
    w = {k: (torch.randn(s) * 0.02).requires_grad_(True) for k, s in shapes.items()}
    opt = torch.optim.AdamW(w.values(), lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, V, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    labels = ids.clone()
    labels[:, : T // 2] = -100

    def step():
        opt.zero_grad()
        logits = forward(cfg, w, ids, mask)
        lb = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, V), lb.reshape(-1), ignore_index=-100)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    secs = time.perf_counter() - t0
    params = sum(t.numel() for t in w.values())
    print(json.dumps({"impl": "pytorch-eager", "params": params, "step_s": secs / steps, "tokens_per_s": B * T * steps / secs}))


if __name__ == "__main__":
    main()
