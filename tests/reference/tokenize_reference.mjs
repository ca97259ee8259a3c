// Reference encodings from Hugging Face's own JS tokenizers (@huggingface/tokenizers).
// usage: node tokenize_reference.mjs TOKENIZER_DIR TEXTS.json OUT.json
// TEXTS.json is an array of strings; OUT.json gets, per string, the ids without and with the
// post-processor's special tokens and the decoding of the plain ids.
import fs from "fs";
import { Tokenizer } from "@huggingface/tokenizers";

const [dir, inputPath, outPath] = process.argv.slice(2);
const tokenizerJson = JSON.parse(fs.readFileSync(`${dir}/tokenizer.json`, "utf8"));
const configPath = `${dir}/tokenizer_config.json`;
const config = fs.existsSync(configPath) ? JSON.parse(fs.readFileSync(configPath, "utf8")) : {};
const tok = new Tokenizer(tokenizerJson, config);
const texts = JSON.parse(fs.readFileSync(inputPath, "utf8"));
const out = texts.map((t) => {
  const plain = tok.encode(t, { add_special_tokens: false }).ids;
  return {
    plain,
    special: tok.encode(t, { add_special_tokens: true }).ids,
    decoded: plain.length ? tok.decode(plain, { skip_special_tokens: false, clean_up_tokenization_spaces: false }) : "",
  };
});
fs.writeFileSync(outPath, JSON.stringify(out));
