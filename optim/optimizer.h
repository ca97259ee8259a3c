// AdamW and SGD with decoupled weight decay over a list of parameters. Parameters stored in
// bf16/f16 get fp32 master copies, so small updates are not rounded away. State tensors are
// named after their parameters so a checkpoint can store and restore them.
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace lethe {

struct OptimizerOptions {
  std::string name = "adamw";  // adamw | sgd
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // AdamW
  double momentum = 0.0;                          // SGD
  // AdamW as one multi-tensor kernel over every parameter (LibTorch's fused AdamW, CPU and CUDA)
  // instead of a loop of element-wise operations per parameter; the same update.
  bool fused = true;
};

class Optimizer {
 public:
  Optimizer(std::vector<std::pair<std::string, torch::Tensor>> params, const OptimizerOptions& opt);
  void zero_grad();
  void step(double lr);  // uses each parameter's .grad
  // Uses grads[i] for the i-th parameter (undefined: skipped); for flat buffers and shards.
  void step(double lr, const std::vector<torch::Tensor>& grads);
  int64_t steps() const { return step_; }
  // name -> tensor, e.g. "model.norm.weight/exp_avg", plus "step".
  std::map<std::string, torch::Tensor> state() const;
  void load_state(const std::map<std::string, torch::Tensor>& state, const std::string& source);

 private:
  struct Slot {
    std::string name;
    torch::Tensor param, master, m, v;
  };
  void adamw_fused(double lr, const std::vector<torch::Tensor>& grads);
  std::vector<Slot> slots_;
  OptimizerOptions opt_;
  int64_t step_ = 0;
};

// Scales gradients so their global L2 norm is at most max_norm (<= 0: no clipping).
// Returns the norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace lethe
