"""Hugging Face transformers as the reference for lethe's decoder.

For every case directory given, loads CASE/model (written by lethe) with transformers'
AutoModelForCausalLM (eager attention, the definition), runs CASE/inputs.safetensors and writes
CASE/ref.safetensors with:
  logits [B,T,V] f32, loss [] f32 (transformers' own labels loss), grad.<name> f32 for every
  parameter (transformers' names), generated [32] int64 (greedy, from `prompt`, no stop token).
inputs: input_ids, attention_mask, labels [B,T] int64; prompt [P] int64; dtype [] (0 f32, 1 bf16).
usage: hf_model_reference.py CASE_DIR [CASE_DIR ...]
"""
import sys

import torch
import transformers

from safetensors.torch import load_file, save_file
from hf_load import load_causal_lm


def run(case):
    inputs = load_file(f"{case}/inputs.safetensors")
    dtype = torch.bfloat16 if int(inputs["dtype"].item()) == 1 else torch.float32
    model = load_causal_lm(f"{case}/model", dtype)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"])
    out.loss.backward()
    result = {"logits": out.logits.detach().float().contiguous(), "loss": out.loss.detach().float().reshape(())}
    for name, p in model.named_parameters():
        result["grad." + name] = p.grad.detach().float().contiguous()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    with torch.no_grad():
        gen = model.generate(inputs["prompt"].view(1, -1), max_new_tokens=32, do_sample=False, min_new_tokens=32)
    result["generated"] = gen[0, inputs["prompt"].numel():].contiguous()
    save_file(result, f"{case}/ref.safetensors")
    print(f"[ reference ] transformers {transformers.__version__} {type(model).__name__} {dtype}: {case}")


if __name__ == "__main__":
    torch.manual_seed(0)
    for case in sys.argv[1:]:
        run(case)
