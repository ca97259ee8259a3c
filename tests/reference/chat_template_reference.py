"""transformers' apply_chat_template, with the model's own Jinja template from
tokenizer_config.json, as the reference for lethe's llama3 and qwen3 templates.
usage: chat_template_reference.py TOKENIZER_DIR CASES.json OUT.json
CASES.json: [{"system": str or "", "question": str, "answer": str}, ...]. OUT.json: per case the
ids of the whole conversation (user + assistant turn) and of the prompt (with the generation
prompt: what the model sees before it answers), both from the rendered template tokenised
without extra special tokens, as apply_chat_template(tokenize=True) does. The Llama-3 template
always ends with an assistant header (it ignores add_generation_prompt): the header after the
answer is checked and cut, since no model is trained on it."""
import json
import sys

import transformers

transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

directory, cases_path, out_path = sys.argv[1:4]
tok = transformers.AutoTokenizer.from_pretrained(directory)
cases = json.load(open(cases_path, encoding="utf-8"))
llama3_tail = "<|start_header_id|>assistant<|end_header_id|>\n\n"
out = []
for c in cases:
    msgs = ([{"role": "system", "content": c["system"]}] if c["system"] else []) + [
        {"role": "user", "content": c["question"]}]
    kwargs = {"enable_thinking": False} if "qwen" in directory else {}
    prompt = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True, **kwargs)
    full = tok.apply_chat_template(msgs + [{"role": "assistant", "content": c["answer"]}], tokenize=False, **kwargs)
    if "<|start_header_id|>" in full:
        assert full.endswith(llama3_tail), full[-80:]
        full = full[: -len(llama3_tail)]
    ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    out.append({"full": ids(full), "prompt": ids(prompt), "text": full})
json.dump(out, open(out_path, "w", encoding="utf-8"), ensure_ascii=False)
print(f"[ reference ] transformers {transformers.__version__} apply_chat_template: {len(cases)} conversations, "
      f"{directory}")
