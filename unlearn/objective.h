// The Objective seam: one class per method, one file each. The training loop calls
// compute() and never branches on method names. Each method declares its own options (with
// the defaults of docs/METHODS.md) so `lethe unlearn --help` lists them.
#pragma once
#include <boost/program_options.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/batching.h"
#include "model/llama.h"

namespace lethe {

namespace po = boost::program_options;

struct ObjectiveResult {
  torch::Tensor loss;                    // scalar to minimise
  std::map<std::string, double> parts;  // logged components (forget_nll, retain_nll, ...)
};

class Objective {
 public:
  virtual ~Objective() = default;
  // forget: the primary batch (the data to forget; for finetuning, the data to learn).
  // retain: a retain batch when uses_retain(), else nullptr.
  virtual ObjectiveResult compute(CausalLM& model, const Batch& forget, const Batch* retain) = 0;
  virtual bool uses_retain() const { return false; }
};

struct ObjectiveSpec {
  std::string name;
  std::string summary;
  std::function<void(po::options_description&)> add_options;
  std::function<std::unique_ptr<Objective>(const po::variables_map&)> make;
};

// Every method, in the order `--help` lists them.
const std::vector<ObjectiveSpec>& objective_registry();
const ObjectiveSpec& find_objective(const std::string& name);

// Declared here, defined one per file.
ObjectiveSpec nll_objective_spec();
ObjectiveSpec ga_objective_spec();
ObjectiveSpec gd_objective_spec();

// Mean over items of the mean answer-token NLL (each item weighs the same).
torch::Tensor mean_item_nll(CausalLM& model, const Batch& b);

}  // namespace lethe
