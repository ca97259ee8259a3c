"""Reference encodings from Hugging Face's `tokenizers` library (the Rust implementation).
usage: tokenize_reference.py TOKENIZER_DIR TEXTS.json OUT.json
TEXTS.json is an array of strings; OUT.json gets, per string, the ids without and with the
post-processor's special tokens and the decoding of the plain ids (special tokens kept)."""
import json
import sys

import tokenizers

directory, input_path, out_path = sys.argv[1:4]
tok = tokenizers.Tokenizer.from_file(f"{directory}/tokenizer.json")
texts = json.load(open(input_path, encoding="utf-8"))
out = []
for t in texts:
    plain = tok.encode(t, add_special_tokens=False).ids
    out.append({"plain": plain, "special": tok.encode(t, add_special_tokens=True).ids,
                "decoded": tok.decode(plain, skip_special_tokens=False) if plain else ""})
json.dump(out, open(out_path, "w", encoding="utf-8"), ensure_ascii=False)
print(f"[ reference ] tokenizers {tokenizers.__version__}: {len(texts)} strings with {directory}/tokenizer.json")
