"""peft as the reference for lethe's LoRA adapters, both ways.
usage: peft_reference.py CASE_DIR [CASE_DIR ...]
Each CASE holds model/ (a base model lethe wrote), inputs.safetensors (input_ids,
attention_mask) and lethe_adapter/ (an adapter lethe wrote). Writes, per case:
  peft_adapter/            a LoRA adapter made by peft (r 4, alpha 8, random A and B), saved by peft
  peft_out.safetensors     logits of base + peft's adapter; merged.<name>: merge_and_unload's weights
  lethe_out.safetensors    the same for lethe's adapter loaded by PeftModel.from_pretrained
"""
import sys

import peft
import torch
import transformers

from safetensors.torch import load_file, save_file
from hf_load import load_causal_lm


def base(case):
    return load_causal_lm(f"{case}/model")


def outputs(model, inputs):
    with torch.no_grad():
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits
    out = {"logits": logits.float().contiguous()}
    merged = model.merge_and_unload()
    for name, p in merged.state_dict().items():
        out["merged." + name] = p.detach().float().contiguous().clone()
    return out


def run(case):
    inputs = load_file(f"{case}/inputs.safetensors")
    model = base(case)
    targets = sorted({n.split(".")[-1] for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and n != "lm_head"})
    cfg = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
    model = peft.get_peft_model(model, cfg)
    torch.manual_seed(11)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.3)  # peft starts B at 0: a non-zero B makes the adapter matter
    model.save_pretrained(f"{case}/peft_adapter")
    save_file(outputs(model, inputs), f"{case}/peft_out.safetensors")

    loaded = peft.PeftModel.from_pretrained(base(case), f"{case}/lethe_adapter")
    save_file(outputs(loaded.train(False), inputs), f"{case}/lethe_out.safetensors")
    print(f"[ reference ] peft {peft.__version__}: adapters both ways on {case} ({', '.join(targets)})")


if __name__ == "__main__":
    for c in sys.argv[1:]:
        run(c)
