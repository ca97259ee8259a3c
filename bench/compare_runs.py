"""Prints alternating benchmark runs side by side: each run, the medians of `step_s`, the ratio
(peer time / lethe time) and, where lethe reports them, MFU and peak memory.
usage: compare_runs.py LETHE_JSON... -- PEER_JSON...
"""
import json
import statistics
import sys


def main():
    args = sys.argv[1:]
    cut = args.index("--")
    ours = [json.loads(x) for x in args[:cut]]
    peer = [json.loads(x) for x in args[cut + 1:]]
    o, p = ours[0], peer[0]
    mo = statistics.median(r["step_s"] for r in ours)
    mp = statistics.median(r["step_s"] for r in peer)
    print(f"{o['model_config']} ({o['params']:,} params, {o.get('trainable', o['params']):,} trained), method {o['method']},"
          f" batch {o['batch_size']} x {o['seq_len']}, {o['device']} {o['dtype']}, {o['threads']} threads,"
          f" {len(ours)} alternating runs")
    print("runs (s/step): lethe " + " ".join(f"{r['step_s']:.4f}" for r in ours)
          + " | peer " + " ".join(f"{r['step_s']:.4f}" for r in peer))
    tok_o = o["tokens_per_s"] * o["step_s"] / mo  # tokens per step / median step time
    tok_p = p["tokens_per_s"] * p["step_s"] / mp
    print(f"lethe {mo * 1000:9.1f} ms/step {tok_o:10.0f} tokens/s  MFU {statistics.median(r['mfu'] for r in ours):.1%}"
          f" of {o['peak_flops'] / 1e9:.0f} GFLOP/s ({o['peak_flops_source']}), peak memory {max(o['peak_memory_mib'])} MiB")
    print(f"{p['impl']:5s} {mp * 1000:9.1f} ms/step {tok_p:10.0f} tokens/s  peak memory {max(p['peak_memory_mib'])} MiB")
    print(f"ratio (peer time / lethe time): {mp / mo:.2f}x")


if __name__ == "__main__":
    main()
