#!/usr/bin/python3
"""PyTorch peer for bench/train_step_bench.cpp: the same decoder, the same loss,
torch.optim.AdamW (PyTorch's default implementation for the device), the same batch.
IMPL "reference" is tests/reference's eager implementation (written like HF's eager attention;
used where Hugging Face transformers cannot be installed, as on the Debian machines); "hf-eager"
and "hf-sdpa" are transformers' LlamaForCausalLM with that attention implementation.
usage: peer_train_step.py CONFIG.json BATCH SEQ STEPS THREADS [DEVICE] [DTYPE] [IMPL]
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
    device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[sys.argv[7] if len(sys.argv) > 7 else "float32"]
    impl = sys.argv[8] if len(sys.argv) > 8 else "reference"
    torch.set_num_threads(threads)
    cfg = json.load(open(cfg_path))
    torch.manual_seed(0)
    if impl == "reference":
        w = reference_weights(cfg, device, dtype)
        params = list(w.values())
        model = lambda ids, mask: forward(cfg, w, ids, mask)  # noqa: E731
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        hf_cfg = {k: v for k, v in cfg.items() if k not in ("model_type", "torch_dtype")}
        hf = LlamaForCausalLM(LlamaConfig(**hf_cfg, attn_implementation=impl[3:])).to(device, dtype)
        params = list(hf.parameters())
        model = lambda ids, mask: hf(input_ids=ids, attention_mask=mask).logits  # noqa: E731
    V = cfg["vocab_size"]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    ids = torch.randint(0, V, (B, T), device=device)
    mask = torch.ones(B, T, dtype=torch.long, device=device)
    labels = ids.clone()
    labels[:, : T // 2] = -100
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        opt.zero_grad()
        logits = model(ids, mask)
        lb = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().reshape(-1, V), lb.reshape(-1),
                                                 ignore_index=-100)
        loss.backward()
        opt.step()

    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    secs = time.perf_counter() - t0
    n = sum(t.numel() for t in params)
    print(json.dumps({"impl": impl, "params": n, "device": device, "dtype": str(dtype).replace("torch.", ""),
                      "step_s": secs / steps, "tokens_per_s": B * T * steps / secs}))


def reference_weights(cfg, device, dtype):
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
    return {k: (torch.randn(s) * 0.02).to(device, dtype).requires_grad_(True) for k, s in shapes.items()}


if __name__ == "__main__":
    main()
