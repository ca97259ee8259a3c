#include <iostream>
#include <sstream>

#include "common/error.h"
#include "data/tokenizer.h"
#include "launcher/command.h"

namespace lethe {

namespace {

struct TokenizeFlags {
  std::string tokenizer;
  bool no_special = false, decode = false;
};

int run_tokenize(const TokenizeFlags& f, const Runtime&, const json&) {
  Tokenizer tok = Tokenizer::from_file(f.tokenizer);
  bool add_special = !f.no_special;
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (f.decode) {
      std::cout << tok.decode(parse_token_ids(line, "stdin line " + std::to_string(n))) << "\n";
      continue;
    }
    auto ids = tok.encode(line, add_special);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
  }
  return 0;
}

void declare_tokenize(OptionSet& o, TokenizeFlags& f, const RuntimeOptions&) {
  o.group("tokenize", "Tokenize");
  o.require("tokenizer", &f.tokenizer, "tokenizer.json");
  o.add("no-special", &f.no_special, "do not add the post-processor's special tokens");
  o.add("decode", &f.decode, "read lines of ids and print the decoded text instead");
}

}  // namespace

Command tokenize_command() {
  return make_command<TokenizeFlags>("tokenize",
                                     "tokenizer.json + UTF-8 lines on stdin -> one line of token ids per input line",
                                     false, false, declare_tokenize, run_tokenize);
}

}  // namespace lethe
