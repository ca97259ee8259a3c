#!/usr/bin/env bash
# End-to-end checks of the `lethe` executable: every bad input gets one clear message naming
# what is wrong and exit code 2 (never a crash or hang), nothing on disk is overwritten, and a
# tiny synth -> init -> finetune -> unlearn -> eval -> convert pipeline works.
# usage: test_cli.sh LETHE_BINARY SOURCE_DIR
set -u
LETHE=$1
SRC=$2
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# expect_error NEEDLE CMD...: exit code 2, one stderr line containing NEEDLE.
expect_error() {
  local needle=$1; shift
  timeout 120 "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  if [ $rc -ne 2 ]; then bad "exit $rc (want 2): $*"; cat "$T/err"; return; fi
  if ! grep -qF -- "$needle" "$T/err"; then bad "message lacks '$needle': $*"; cat "$T/err"; return; fi
  ok
}
expect_ok() {
  timeout 600 "$@" >"$T/out" 2>"$T/err" || { bad "failed: $*"; cat "$T/err"; return 1; }
  ok
}

# ---- usage errors ----
expect_error "unknown command 'frobnicate'" "$LETHE" frobnicate
expect_error "unrecognised option '--bogus'" "$LETHE" synth --out "$T/x" --bogus 1
expect_error "missing required option --out" "$LETHE" synth
expect_error "--people" "$LETHE" synth --out "$T/x" --people abc
"$LETHE" finetune --help | grep -q -- "--lora-rank" && ok || bad "finetune --help lacks --lora-rank"
"$LETHE" unlearn --help | grep -q -- "gd.retain-weight" && ok || bad "unlearn --help lacks method options"

# ---- a tiny pipeline ----
expect_ok "$LETHE" synth --out "$T/data" --people 2 --books 1 --seed 5
expect_ok "$LETHE" init --model-config "$SRC/configs/models/tiny-llama.json" --train-tokenizer "$T/data/train.jsonl" \
  --vocab-size 300 --out "$T/base"
D=$T/data
COMMON=(--batch-size 4 --lr 1e-3 --log-every 1 --threads 1)
expect_ok "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/ft" --steps 3 "${COMMON[@]}"
grep -q "step 3/3" "$T/err" && ok || bad "no progress line"
expect_ok "$LETHE" unlearn --method gd --model "$T/ft" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" \
  --out "$T/gd" --steps 2 --eval-forget "$D/forget.jsonl" --eval-retain "$D/retain.jsonl" --eval-every 1 "${COMMON[@]}"
grep -q "eval @ step 2" "$T/err" && ok || bad "no in-training evaluation"
expect_ok "$LETHE" unlearn --method ga --model "$T/ft" --forget "$D/forget.jsonl" --out "$T/ga" --steps 2 --lora-rank 4 "${COMMON[@]}"
expect_ok "$LETHE" eval --model "$T/gd" --forget "$D/forget.jsonl" --retain "$D/retain.jsonl" --out "$T/ev" --per-item \
  --max-new-tokens 8
grep -q "Unlearn Success" "$T/ev/report.md" && ok || bad "report.md lacks scores"
[ "$(wc -l <"$T/ev/per_item.jsonl")" -eq "$(($(wc -l <"$D/forget.jsonl") + $(wc -l <"$D/retain.jsonl")))" ] && ok || bad "per-item lines"
/usr/bin/python3 -c "import json,sys; j=json.load(open('$T/ev/report.json')); assert 0 <= j['knowundo']['average_success'] <= 100" \
  && ok || bad "report.json"

# convert native -> hf (sharded) -> native gives the same evaluation
expect_ok "$LETHE" convert --in "$T/gd" --out "$T/gd_hf" --to hf --max-shard-size 1MB
[ -f "$T/gd_hf/model.safetensors.index.json" ] && [ -f "$T/gd_hf/tokenizer.json" ] && ok || bad "sharded hf output"
expect_ok "$LETHE" convert --in "$T/gd_hf" --out "$T/gd_back" --to native
for m in gd gd_hf gd_back; do
  "$LETHE" eval --model "$T/$m" --forget "$D/forget.jsonl" --no-generate --out "$T/ev_$m" 2>/dev/null >/dev/null
done
cmp -s <(grep -v '"model"' "$T/ev_gd/report.json" | grep -v '"out"') <(grep -v '"model"' "$T/ev_gd_back/report.json" | grep -v '"out"') \
  && ok || bad "native -> hf -> native changed the evaluation"

# tokenize and decode round trip
echo "What is the email address of someone?" | "$LETHE" tokenize --tokenizer "$T/base/tokenizer.json" >"$T/ids"
[ "$("$LETHE" tokenize --tokenizer "$T/base/tokenizer.json" --decode <"$T/ids")" = "What is the email address of someone?" ] \
  && ok || bad "tokenize/decode round trip"
expect_error "'x1' is not a token id" bash -c "echo '1 x1' | '$LETHE' tokenize --tokenizer '$T/base/tokenizer.json' --decode"

# ---- bad input ----
expect_error "$T/nope.jsonl: no such file" "$LETHE" finetune --model "$T/ft" --data "$T/nope.jsonl" --out "$T/o1"
printf '{"prompt": "a", "response": "b"}\n{"prompt": "a", \n' >"$T/broken.jsonl"
expect_error "broken.jsonl:2: malformed JSON" "$LETHE" finetune --model "$T/ft" --data "$T/broken.jsonl" --out "$T/o2"
expect_error "--lr must be positive" "$LETHE" finetune --model "$T/ft" --data "$D/train.jsonl" --out "$T/o3" --lr -1
expect_error "--steps must be positive" "$LETHE" finetune --model "$T/ft" --data "$D/train.jsonl" --out "$T/o3" --steps 0
expect_error "unknown chat template 'bogus'" "$LETHE" finetune --model "$T/ft" --data "$D/train.jsonl" --out "$T/o3" --template bogus
expect_error "unknown unlearning method 'bogus'" "$LETHE" unlearn --method bogus --model "$T/ft" --forget "$D/forget.jsonl" --out "$T/o4"
expect_error "needs --retain" "$LETHE" unlearn --method gd --model "$T/ft" --forget "$D/forget.jsonl" --out "$T/o4"
expect_error "no record matches" "$LETHE" unlearn --method ga --model "$T/ft" --forget "$D/forget.jsonl" --forget-filter scope=nothing --out "$T/o4"
echo '{"model_type": "llama", "vocab_size": 10' >"$T/badcfg.json"
expect_error "badcfg.json: malformed JSON" "$LETHE" init --model-config "$T/badcfg.json" --out "$T/o5"
echo '{"model_type": "llama", "hidden_size": 4e999}' >"$T/bigcfg.json"  # a number past double (fuzzing)
expect_error "bigcfg.json: malformed JSON" "$LETHE" init --model-config "$T/bigcfg.json" --out "$T/o5"
echo '{"model_type": "bert"}' >"$T/bert.json"
expect_error "model_type 'bert' is not supported" "$LETHE" init --model-config "$T/bert.json" --out "$T/o5"
expect_error "no such directory" "$LETHE" eval --model "$T/missing" --forget "$D/forget.jsonl"

# wrong shape: an HF directory whose config disagrees with its weights
cp -r "$T/gd_hf" "$T/shape"
/usr/bin/python3 - "$T/shape/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["intermediate_size"] += 8; json.dump(c, open(p, "w"))
PY
expect_error "has shape" "$LETHE" eval --model "$T/shape" --forget "$D/forget.jsonl" --no-generate

# corrupt native checkpoints: truncated, bit-flipped, incomplete
cp -r "$T/gd" "$T/trunc"; truncate -s $(($(stat -c %s "$T/trunc/model.h5") / 2)) "$T/trunc/model.h5"
expect_error "model.h5" "$LETHE" eval --model "$T/trunc" --forget "$D/forget.jsonl" --no-generate
cp -r "$T/gd" "$T/flip"
size=$(stat -c %s "$T/flip/model.h5")
/usr/bin/python3 - "$T/flip/model.h5" $((size * 3 / 5)) <<'PY'
import sys
p, pos = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[pos] ^= 0x01; open(p, "wb").write(b)
PY
expect_error "checksum" "$LETHE" eval --model "$T/flip" --forget "$D/forget.jsonl" --no-generate
cp -r "$T/gd" "$T/incomplete"; rm "$T/incomplete/COMPLETE"
expect_error "incomplete" "$LETHE" eval --model "$T/incomplete" --forget "$D/forget.jsonl" --no-generate
# corrupt safetensors
cp -r "$T/base" "$T/badst"; truncate -s 100 "$T/badst/model.safetensors"
expect_error "model.safetensors" "$LETHE" eval --model "$T/badst" --forget "$D/forget.jsonl" --no-generate

# ---- reliability regressions: each was once a crash, a hang or a silent wrong result ----
# a signal stops every command, not only the training loop (128 + SIGTERM)
"$LETHE" tokenize --tokenizer "$T/base/tokenizer.json" < <(sleep 60) >/dev/null 2>"$T/err" &
tp=$!
sleep 2
kill -TERM $tp
wait $tp
rc=$?
[ $rc -eq 143 ] && grep -q "stopped by signal 15" "$T/err" && ok || bad "tokenize ignored SIGTERM (exit $rc)"
# tokenization is linear in the line length: a 4 MB line (once ~5 minutes) well within the limit
/usr/bin/python3 -c "print('word ' * 800000)" >"$T/long.txt"
timeout 120 "$LETHE" tokenize --tokenizer "$T/base/tokenizer.json" <"$T/long.txt" >"$T/long.ids" && ok || bad "4 MB line"
# hostile tokenizer.json: a negative id, a Sequence nested 100000 deep
/usr/bin/python3 - "$T/base/tokenizer.json" "$T" <<'PY'
import json, sys
tok = json.load(open(sys.argv[1]))
neg = dict(tok); neg["added_tokens"] = [dict(tok["added_tokens"][0], id=-1)]
json.dump(neg, open(sys.argv[2] + "/neg_tok.json", "w"))
inner = '{"type": "Lowercase"}'
deep = '{"type": "Sequence", "normalizers": [' * 100000 + inner + ']}' * 100000
text = json.dumps(dict(tok, normalizer=None)).replace('"normalizer": null', '"normalizer": ' + deep)
open(sys.argv[2] + "/deep_tok.json", "w").write(text)
PY
expect_error "is not in [0, 2^24)" "$LETHE" tokenize --tokenizer "$T/neg_tok.json" </dev/null
expect_error "nested more than 256 deep" "$LETHE" tokenize --tokenizer "$T/deep_tok.json" </dev/null
# a NaN weight is refused with its name, never scored as a model
cp -r "$T/base" "$T/nan"
/usr/bin/python3 - "$T/nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
name = next(k for k, v in h.items() if k != "__metadata__" and v["dtype"] == "F32")
b[8 + n + h[name]["data_offsets"][0]:8 + n + h[name]["data_offsets"][0] + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
print(name)
PY
expect_error "holds NaN or Inf values" "$LETHE" eval --model "$T/nan" --forget "$D/forget.jsonl" --no-generate
# numbers that once passed: an infinite learning rate, NaN decay, no answer token left
expect_error "--threads must be in [0, 1024]" "$LETHE" tokenize --tokenizer "$T/base/tokenizer.json" --threads 100000 </dev/null
expect_error "--lr must be positive" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" --lr inf
expect_error "--weight-decay must be in" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" \
  --weight-decay nan
expect_error "--max-len must be at least 2" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" \
  --max-len 1
expect_error "--min-lr-ratio must be in" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" \
  --min-lr-ratio -3
expect_error "--momentum must be in" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" --momentum nan
expect_error "--max-grad-norm must be" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" \
  --max-grad-norm nan
# text options go into JSON (the effective configuration): bytes that are not UTF-8 (fuzzing
# found it in an INI file) are refused, on the command line and in --config
expect_error "--out is not valid UTF-8 text" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" \
  --out "$T/o$(printf '\337')"
printf 'out = %s/o\337\n' "$T" >"$T/bad_utf8.ini"
expect_error "--out is not valid UTF-8 text" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" \
  --config "$T/bad_utf8.ini"
# a data attribute nested 1e6 deep, a tokenizer id of 1e8
/usr/bin/python3 -c "print('{\"prompt\": \"q\", \"response\": \"a\", \"x\": ' + '[' * 1000000 + ']' * 1000000 + '}')" >"$T/deep.jsonl"
timeout 120 "$LETHE" eval --model "$T/base" --forget "$T/deep.jsonl" --no-generate >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] || [ $rc -eq 2 ] && ! grep -q "internal error" "$T/err" && ok || bad "deeply nested data: exit $rc"
/usr/bin/python3 - "$T/base/tokenizer.json" "$T/big_tok.json" <<'PY'
import json, sys
tok = json.load(open(sys.argv[1])); tok["added_tokens"][0]["id"] = 100000000
json.dump(tok, open(sys.argv[2], "w"))
PY
expect_error "is not in [0, 2^24)" "$LETHE" tokenize --tokenizer "$T/big_tok.json" </dev/null
# a damaged native checkpoint (a changed dtype attribute, a flipped bit) is refused by the
# checksum its marker records, before libhdf5 reads it
expect_ok "$LETHE" convert --in "$T/base" --out "$T/nat" --to native
/usr/bin/python3 - "$T/nat/model.h5" <<'PY'
import sys
p = sys.argv[1]; b = bytearray(open(p, "rb").read())
i = b.find(b"float32"); b[i:i + 7] = b"int32\0\0"
open(p, "wb").write(b)
PY
expect_error "its checksum differs from the one" "$LETHE" eval --model "$T/nat" --forget "$D/forget.jsonl" --no-generate
# outputs checked against each other and the inputs before any work
expect_error "must be separate directories" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" \
  --checkpoint-dir "$T/o"
expect_error "lies inside the input" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/o" \
  --checkpoint-dir "$T/base/ckpt"
[ ! -e "$T/o" ] && [ ! -e "$T/base/ckpt" ] && ok || bad "a refused run left files"
# --resume is checked: another run's checkpoint (here another --lr) or an edited manifest is refused
expect_ok "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/r1" --checkpoint-dir "$T/r.ckpt" --steps 2 \
  --checkpoint-every 1 "${COMMON[@]}"
expect_error "belongs to another run (training.lr 0.001 -> 0.002)" "$LETHE" finetune --model "$T/base" \
  --data "$D/train.jsonl" --out "$T/r2" --checkpoint-dir "$T/r.ckpt" --steps 3 --resume --batch-size 4 --lr 2e-3 \
  --threads 1
expect_error "belongs to another run (data" "$LETHE" finetune --model "$T/base" --data "$D/forget.jsonl" --out "$T/r2" \
  --checkpoint-dir "$T/r.ckpt" --steps 3 --resume "${COMMON[@]}"
expect_ok "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/r3" --checkpoint-dir "$T/r.ckpt" --steps 3 \
  --resume "${COMMON[@]}"
grep -q "resumed from" "$T/err" && ok || bad "the same run did not resume"
last=$(ls -d "$T/r.ckpt"/step-* | tail -1)
sed -i 's/"tokens":/"tokens": 1, "x":/' "$last/manifest.json"
expect_error "checksum mismatch" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/r4" \
  --checkpoint-dir "$T/r.ckpt" --steps 4 --resume "${COMMON[@]}"
# --out with a trailing slash writes that directory (once hidden in dir/..tmp.PID)
expect_ok "$LETHE" convert --in "$T/base" --out "$T/slash/" --to native
[ -f "$T/slash/COMPLETE" ] && [ -z "$(ls -A "$T/slash" | grep tmp)" ] && ok || bad "trailing-slash output"

# nothing existing is overwritten
before=$(find "$T/ft" -type f -exec sha256sum {} + | sort)
expect_error "already exists" "$LETHE" finetune --model "$T/base" --data "$D/train.jsonl" --out "$T/ft" --steps 1
expect_error "already exists" "$LETHE" convert --in "$T/base" --out "$T/ft" --to native
expect_error "not empty" "$LETHE" convert --in "$T/ft" --out "$T/base" --to hf
expect_error "not empty" "$LETHE" synth --out "$T/data"
after=$(find "$T/ft" -type f -exec sha256sum {} + | sort)
[ "$before" = "$after" ] && ok || bad "an existing checkpoint changed"

echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
