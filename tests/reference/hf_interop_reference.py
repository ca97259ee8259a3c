"""safetensors and transformers as the judges of lethe's checkpoints, both ways.
usage: hf_interop_reference.py CASE_DIR
CASE holds inputs.safetensors (input_ids, attention_mask) and lethe-written model directories
single/ (one fp32 file) and sharded/ (bf16, several shards + index). Writes:
  <dir>.official.safetensors   every tensor of <dir> as the safetensors library reads it
  <dir>.logits.safetensors     logits of AutoModelForCausalLM.from_pretrained(<dir>) (fp32 compute)
  saved_pretrained/            single/ re-saved by save_pretrained in small shards (with index)
  assorted.safetensors         tensors of several dtypes written by save_file, with metadata
"""
import glob
import os
import sys

import safetensors
import torch
import transformers

from safetensors.torch import load_file, save_file
from hf_load import load_causal_lm

case = sys.argv[1]
inputs = load_file(f"{case}/inputs.safetensors")
for d in ("single", "sharded"):
    tensors = {}
    for f in sorted(glob.glob(f"{case}/{d}/*.safetensors")):
        tensors.update(load_file(f))
    save_file(tensors, f"{case}/{d}.official.safetensors")
    model = load_causal_lm(f"{case}/{d}")
    with torch.no_grad():
        logits = model(**inputs).logits
    save_file({"logits": logits.contiguous()}, f"{case}/{d}.logits.safetensors")
model = transformers.AutoModelForCausalLM.from_pretrained(f"{case}/single", dtype=torch.float32)
model.save_pretrained(f"{case}/saved_pretrained", max_shard_size="40KB")
torch.manual_seed(0)
save_file({"f32": torch.randn(3, 5), "bf16": torch.randn(4).to(torch.bfloat16), "f16": torch.randn(2, 2).half(),
           "i64": torch.arange(6).view(2, 3), "i32": torch.arange(4, dtype=torch.int32), "empty": torch.zeros(0, 3),
           "scalar": torch.tensor(2.5)},
          f"{case}/assorted.safetensors", metadata={"format": "pt", "note": "save_file"})
shards = len(glob.glob(f"{case}/saved_pretrained/*.safetensors"))
print(f"[ reference ] safetensors {safetensors.__version__}, transformers {transformers.__version__}: read lethe's "
      f"single and sharded output, wrote save_pretrained ({shards} shards) and save_file")
