// A method's options parsed from command-line style arguments, for the objective tests.
#pragma once
#include <string>
#include <vector>

#include "unlearn/objective.h"

namespace lethe::test {

inline po::variables_map objective_options(const ObjectiveSpec& spec, const std::vector<std::string>& args) {
  po::options_description d;
  spec.add_options(d);
  po::variables_map vm;
  std::vector<const char*> argv = {"x"};
  for (auto& a : args) argv.push_back(a.c_str());
  po::store(po::parse_command_line(int(argv.size()), argv.data(), d), vm);
  po::notify(vm);
  return vm;
}

}  // namespace lethe::test
