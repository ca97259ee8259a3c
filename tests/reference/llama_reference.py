#!/usr/bin/python3
"""Independent reference for lethe's decoder: logits, loss and per-parameter gradients.

Written from the Llama / Qwen2 / Mistral architecture definitions (RMSNorm, rotary position
embeddings with the rotate-half convention and Llama-3 frequency scaling, SwiGLU MLP,
grouped-query attention, optional q/k/v bias, tied embeddings), not from lethe's C++.
Reads safetensors with its own parser (no safetensors package on Debian) and writes results
the same way, so the C++ reader is also checked against an independent writer.

usage: llama_reference.py MODEL_DIR INPUTS.safetensors OUT.safetensors
inputs: input_ids [B,T] int64, attention_mask [B,T] int64, labels [B,T] int64 (-100 ignored)
outputs: logits [B,T,V] f32, loss [] f32 (mean NLL over answer tokens), grad.<name> f32
"""
import json
import math
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64,
          "I32": torch.int32, "F64": torch.float64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = bytearray(raw[base + b:base + end])
        t = torch.frombuffer(buf, dtype=DTYPES[e["dtype"]]) if buf else torch.empty(0, dtype=DTYPES[e["dtype"]])
        out[name] = t.reshape(e["shape"]).clone()
    return out


def write_safetensors(path, tensors):
    names = {v: k for k, v in DTYPES.items()}
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
        blobs.append(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def inv_frequencies(cfg, head_dim):
    theta = cfg.get("rope_theta", 10000.0)
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "llama3":
        factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        out = []
        for f in inv.tolist():
            wavelen = 2 * math.pi / f
            if wavelen < old / hi:
                out.append(f)
            elif wavelen > old / lo:
                out.append(f / factor)
            else:
                s = (old / wavelen - lo) / (hi - lo)
                out.append((1 - s) * f / factor + s * f)
        inv = torch.tensor(out, dtype=torch.float32)
    return inv, (rs.get("factor", 1.0) if kind == "linear" else 1.0)


def forward(cfg, w, ids, mask):
    B, T = ids.shape
    C = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    K = cfg.get("num_key_value_heads", H)
    D = cfg.get("head_dim", C // H)
    eps = cfg.get("rms_norm_eps", 1e-6)
    qwen = cfg["model_type"] == "qwen2"

    def rms(x, g):
        return g * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def lin(x, p, bias):
        y = x @ w[p + ".weight"].T
        return y + w[p + ".bias"] if bias else y

    inv, lin_scale = inv_frequencies(cfg, D)
    pos = torch.arange(T, dtype=torch.float32) / lin_scale
    ang = torch.outer(pos, inv)
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()

    def rope(x):  # x [B, heads, T, D]; rotate the two halves of each head
        x1, x2 = x[..., :D // 2], x[..., D // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    allowed = torch.tril(torch.ones(T, T, dtype=torch.bool))
    sw = cfg.get("sliding_window") if (cfg["model_type"] == "mistral" or cfg.get("use_sliding_window")) else None
    if sw:
        i = torch.arange(T).view(T, 1)
        j = torch.arange(T).view(1, T)
        allowed = allowed & (i - j < sw)
    allowed = allowed.view(1, 1, T, T) & mask.bool().view(B, 1, 1, T)

    qkv_bias = qwen or cfg.get("attention_bias", False)
    o_bias = (not qwen) and cfg.get("attention_bias", False)
    mlp_bias = cfg.get("mlp_bias", False)
    x = w["model.embed_tokens.weight"][ids]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj", qkv_bias).view(B, T, H, D).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj", qkv_bias).view(B, T, K, D).transpose(1, 2)
        v = lin(h, p + "self_attn.v_proj", qkv_bias).view(B, T, K, D).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(H // K, dim=1)
        v = v.repeat_interleave(H // K, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, H * D)
        x = x + lin(o, p + "self_attn.o_proj", o_bias)
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate = lin(h, p + "mlp.gate_proj", mlp_bias)
        up = lin(h, p + "mlp.up_proj", mlp_bias)
        x = x + lin(torch.nn.functional.silu(gate) * up, p + "mlp.down_proj", mlp_bias)
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return x @ head.T


def main():
    model_dir, inputs_path, out_path = sys.argv[1:4]
    cfg = json.load(open(f"{model_dir}/config.json"))
    weights = {k: v.float().requires_grad_(True) for k, v in read_safetensors(f"{model_dir}/model.safetensors").items()}
    inp = read_safetensors(inputs_path)
    logits = forward(cfg, weights, inp["input_ids"], inp["attention_mask"])
    labels = inp["labels"][:, 1:]
    sel = labels != -100
    logp = torch.log_softmax(logits[:, :-1].float(), -1)
    nll = -logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    loss = nll[sel].mean()
    loss.backward()
    out = {"logits": logits.detach(), "loss": loss.detach().reshape([])}
    for k, v in weights.items():
        out["grad." + k] = v.grad if v.grad is not None else torch.zeros_like(v)
    write_safetensors(out_path, out)


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
