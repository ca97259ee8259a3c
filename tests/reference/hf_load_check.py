#!/usr/bin/python3
"""Loads a directory written by `lethe merge` (or any lethe HF output) with Hugging Face
transformers (AutoModelForCausalLM + the tokenizer.json through PreTrainedTokenizerFast) and
compares its logits with expected ones (a torch.save'd {"ids", "logits"} computed elsewhere, e.g.
by tests/reference/llama_reference.py). Needs transformers: run where it is installed (the GPU
image; not on the Debian machines). usage: hf_load_check.py MODEL_DIR EXPECTED.pt [ATOL]"""
import sys

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

d, expected = sys.argv[1], torch.load(sys.argv[2])
atol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-4
model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
tok = PreTrainedTokenizerFast(tokenizer_file=f"{d}/tokenizer.json")
with torch.no_grad():
    logits = model(input_ids=expected["ids"]).logits
err = (logits - expected["logits"]).abs().max().item()
print(f"{type(model).__name__} loaded from {d}: {sum(p.numel() for p in model.parameters()):,} parameters, "
      f"tokenizer vocab {tok.vocab_size}; max |logit difference| vs expected {err:.3g} (atol {atol})")
sys.exit(0 if err <= atol else 1)
