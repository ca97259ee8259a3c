"""The official safetensors library as the judge of files lethe accepted or wrote.
usage: safetensors_reload.py FILE [FILE ...]
For each FILE, loads it with safetensors.torch.load_file and writes FILE.ref (the same tensors,
re-saved by the library) or FILE.err (the library's error message)."""
import sys

import safetensors
from safetensors.torch import load_file, save_file

ok = 0
for path in sys.argv[1:]:
    try:
        tensors = load_file(path)
        save_file({k: v.contiguous() for k, v in tensors.items()}, path + ".ref")
        ok += 1
    except Exception as e:  # noqa: BLE001 - every refusal is recorded as such
        open(path + ".err", "w").write(f"{type(e).__name__}: {e}")
print(f"[ reference ] safetensors {safetensors.__version__}: loaded {ok} of {len(sys.argv) - 1} files")
