"""Reference for lethe's weight quantization probe (model/quantize.h): bitsandbytes itself (its
PyTorch CPU kernels) quantizes and dequantizes every tensor of the input file to 8-bit
(vector-wise: one absmax per row) and to 4-bit NF4 and FP4 (blocks of 64, absmax scales kept in
float32: compress_statistics=False), and writes the dequantized tensors.

Each tensor goes in flattened: blockwise quantization runs over the flattened tensor either way
(the packed codes and scales of a 2-D input equal the flattened one's), but bitsandbytes 0.50.2's
CPU dequantization of a 2-D shape whose rows are not a multiple of the block scales some
elements with another block's absmax (seen on a [5, 96] tensor: every element of one block off),
so the flat shape is what it dequantizes correctly.

usage: quantize_reference.py IN.safetensors OUT.safetensors
"""
import os
import sys

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # bitsandbytes' CPU kernels try torch.compile: 30 s, no gain here

import bitsandbytes.functional as bnbf
import torch
from safetensors.torch import load_file, save_file


def main():
    out = {}
    for name, w in load_file(sys.argv[1]).items():
        w = w.float().contiguous()
        cb, scb, _ = bnbf.int8_vectorwise_quant(w.clone())
        out[name + ".int8"] = bnbf.int8_vectorwise_dequant(cb, scb)
        for kind in ("nf4", "fp4"):
            q, state = bnbf.quantize_4bit(w.reshape(-1), blocksize=64, quant_type=kind, compress_statistics=False)
            out[name + "." + kind] = bnbf.dequantize_4bit(q, state).reshape(w.shape)
    out["code.nf4"] = bnbf.get_4bit_type("nf4", device="cpu")
    out["code.fp4"] = bnbf.get_4bit_type("fp4", device="cpu")
    save_file({k: v.contiguous() for k, v in out.items()}, sys.argv[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())
