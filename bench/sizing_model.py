"""A sizing model for lethe's training step on GPU clusters: step time, memory per GPU and
communication volume per step for Llama-3-8B- and 70B-shaped models on 8 to 512 GPUs, under
each ZeRO stage and SPUNGE group layout. Inputs are a measured single-device figure (the MFU
lethe reached, `--mfu`, from `lethe bench step` on one GPU) and NCCL bus bandwidths (`--nvlink-gbs`
inside a node of 8 GPUs, `--ib-gbs` between nodes). Prints Markdown tables.

Model (stated so it can be checked):
- FLOPs per token: 6 * matmul weights + 12 * layers * d_model * seq (PaLM's convention, as
  `lethe bench step` counts them); compute time = FLOPs / (peak * MFU).
- Memory per GPU, mixed precision as lethe trains: bf16 weights (2 B) and gradients (2 B), fp32
  master, exp_avg and exp_avg_sq (12 B) per parameter. ZeRO 0 keeps all 16 B; ZeRO 1 shards the
  12 B; ZeRO 2 the 12 B and the gradients; ZeRO 3 all 16 B over the group's G GPUs. Activations
  for one micro-batch of `--micro-batch` sequences with fused attention: 34 * seq * d_model bytes
  per layer and sequence (no activation checkpointing), or 2 * seq * d_model with full
  checkpointing (`--checkpointing full`, which adds a forward: 8 instead of 6 FLOPs per weight).
- Communication per GPU and step (bytes each GPU sends, in nccl-tests' bus-bandwidth terms):
  ZeRO 0-2 move 2 (G-1)/G * 2P bytes (all-reduce, or reduce-scatter + all-gather), ZeRO 3
  3 (G-1)/G * 2P (parameters gathered for forward and again for backward, gradients
  reduce-scattered). Time = volume / bus bandwidth (NVLink when the group fits in one node,
  else the inter-node bandwidth); `--overlap` is the fraction hidden behind compute.
- SPUNGE: the N GPUs form K groups of N/K, each unlearning its own subset at the same time; the
  collectives run inside a group (smaller G, NVLink when G <= 8), memory follows G, and the
  merge afterwards moves each group's delta once (K * 2P bytes over the merge communicators).
usage: sizing_model.py [--mfu 0.126] [--peak 989e12] [--seq 8192] [--micro-batch 1]
                       [--nvlink-gbs 360] [--ib-gbs 45] [--overlap 0] [--checkpointing none|full]
"""
import argparse

MODELS = {  # name: (layers, d_model, ffn, heads, kv_heads, vocab)
    "llama3-8b": (32, 4096, 14336, 32, 8, 128256),
    "llama3-70b": (80, 8192, 28672, 64, 8, 128256),
}


def params(layers, d, ffn, heads, kv, vocab):
    hd = d // heads
    per_layer = d * (heads * hd + 2 * kv * hd) + heads * hd * d + 3 * d * ffn + 2 * d
    return layers * per_layer + 2 * vocab * d + d, layers * per_layer - 2 * d * layers + vocab * d


def row(model, n_gpus, stage, groups, a):
    layers, d, ffn, heads, kv, vocab = MODELS[model]
    P, matmul = params(*MODELS[model])
    G = n_gpus // groups
    flops_token = (8 if a.checkpointing == "full" else 6) * matmul + 12 * layers * d * a.seq
    tokens_gpu = a.micro_batch * a.seq
    t_compute = flops_token * tokens_gpu / (a.peak * a.mfu)
    state = {0: 16 * P, 1: 4 * P + 12 * P / G, 2: 2 * P + 14 * P / G, 3: 16 * P / G}[stage]
    act = (2 if a.checkpointing == "full" else 34) * a.seq * d * layers * a.micro_batch
    mem = (state + act) / 2**30
    factor = 3 if stage == 3 else 2
    volume = factor * (G - 1) / G * 2 * P if G > 1 else 0
    bw = (a.nvlink_gbs if G <= 8 else a.ib_gbs) * 1e9
    t_comm = volume / bw * (1 - a.overlap)
    t = t_compute + t_comm
    return {"model": model, "gpus": n_gpus, "groups": groups, "group_size": G, "zero": stage,
            "mem_gib": mem, "comm_gb": volume / 1e9, "t_compute": t_compute, "t_comm": t_comm,
            "step_s": t, "tok_s_gpu": tokens_gpu / t, "fits_80g": mem < 80}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mfu", type=float, default=0.126, help="MFU measured on one GPU (default: lethe, 1.1B bf16, H100)")
    ap.add_argument("--peak", type=float, default=989e12)
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--micro-batch", type=int, default=1)
    ap.add_argument("--nvlink-gbs", type=float, default=360.0, help="NCCL bus bandwidth inside a node (GB/s)")
    ap.add_argument("--ib-gbs", type=float, default=45.0, help="NCCL bus bandwidth across nodes, per GPU (GB/s)")
    ap.add_argument("--overlap", type=float, default=0.0, help="fraction of communication hidden behind compute")
    ap.add_argument("--checkpointing", default="none", choices=["none", "full"])
    a = ap.parse_args()
    print(f"MFU {a.mfu:.1%} of {a.peak / 1e12:.0f} TFLOP/s, seq {a.seq}, micro-batch {a.micro_batch}/GPU, "
          f"NVLink {a.nvlink_gbs:.0f} GB/s, inter-node {a.ib_gbs:.0f} GB/s, overlap {a.overlap:.0%}, "
          f"activation checkpointing {a.checkpointing}\n")
    print("| model | GPUs | groups x size | ZeRO | memory/GPU GiB | fits 80 GB | comm/GPU/step GB | compute s | comm s |"
          " step s | tokens/s/GPU |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    for model in MODELS:
        for n in (8, 64, 512):
            for groups in (1, 8) if n >= 64 else (1, 2):
                for stage in (0, 1, 2, 3):
                    r = row(model, n, stage, groups, a)
                    print(f"| {model} | {n} | {groups} x {r['group_size']} | {stage} | {r['mem_gib']:.1f} |"
                          f" {'yes' if r['fits_80g'] else 'no'} | {r['comm_gb']:.1f} | {r['t_compute']:.2f} |"
                          f" {r['t_comm']:.2f} | {r['step_s']:.2f} | {r['tok_s_gpu']:.0f} |")
    P, _ = params(*MODELS["llama3-8b"])
    print(f"\nSPUNGE merge of K group deltas: each group's delta is {2 * P / 1e9:.1f} GB (8B) in bf16; "
          f"the merge moves K of them once over the merge communicators.")


if __name__ == "__main__":
    main()
