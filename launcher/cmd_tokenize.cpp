#include <iostream>
#include <sstream>

#include "common/error.h"
#include "data/tokenizer.h"
#include "launcher/options.h"

namespace lethe {

void add_tokenize_options(po::options_description& d) {
  d.add_options()("tokenizer", po::value<std::string>(), "tokenizer.json")(
      "no-special", po::bool_switch()->default_value(false), "do not add the post-processor's special tokens")(
      "decode", po::bool_switch()->default_value(false), "read lines of ids and print the decoded text instead");
}

int run_tokenize(const po::variables_map& vm, const json&) {
  Tokenizer tok = Tokenizer::from_file(require_string(vm, "tokenizer"));
  bool add_special = !vm["no-special"].as<bool>();
  std::string line;
  for (int64_t n = 1; std::getline(std::cin, line); ++n) {
    if (vm["decode"].as<bool>()) {
      std::istringstream in(line);
      std::vector<int64_t> ids;
      std::string w;
      while (in >> w) {
        try {
          size_t used = 0;
          ids.push_back(std::stoll(w, &used));
          if (used != w.size()) throw std::invalid_argument(w);
        } catch (const std::exception&) {
          throw InputError("stdin line " + std::to_string(n) + ": '" + w + "' is not a token id");
        }
      }
      std::cout << tok.decode(ids) << "\n";
      continue;
    }
    auto ids = tok.encode(line, add_special);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    std::cout << "\n";
  }
  return 0;
}

}  // namespace lethe
