"""Hugging Face transformers peer for bench/train_step_bench.cpp: the same decoder (any family
of configs/models, built by AutoModelForCausalLM.from_config), the same loss,
torch.optim.AdamW (PyTorch's default implementation for the device), the same batch.
IMPL "hf-eager" or "hf-sdpa" is the attention implementation.
usage: peer_train_step.py CONFIG.json BATCH SEQ STEPS THREADS [DEVICE] [DTYPE] [IMPL]
"""
import json
import sys
import time

import torch


def main():
    cfg_path, B, T, steps, threads = sys.argv[1], *map(int, sys.argv[2:6])
    device = sys.argv[6] if len(sys.argv) > 6 else "cpu"
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[sys.argv[7] if len(sys.argv) > 7 else "float32"]
    impl = sys.argv[8] if len(sys.argv) > 8 else "hf-sdpa"
    torch.set_num_threads(threads)
    cfg = json.load(open(cfg_path))
    torch.manual_seed(0)
    from transformers import AutoConfig, AutoModelForCausalLM
    hf_cfg = {k: v for k, v in cfg.items() if k not in ("model_type", "torch_dtype")}
    config = AutoConfig.for_model(cfg.get("model_type", "llama"), **hf_cfg)
    config._attn_implementation = impl[3:]
    hf = AutoModelForCausalLM.from_config(config).to(device, dtype)
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


if __name__ == "__main__":
    main()
