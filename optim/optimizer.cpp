#include "optim/optimizer.h"

#include <cmath>

#include "common/error.h"

namespace lethe {

Optimizer::Optimizer(std::vector<std::pair<std::string, torch::Tensor>> params, const OptimizerOptions& opt)
    : opt_(opt) {
  if (opt_.name != "adamw" && opt_.name != "sgd")
    throw InputError("--optimizer: unknown optimizer '" + opt_.name + "' (adamw, sgd)");
  for (auto& [name, p] : params) {
    Slot s{name, p, {}, {}, {}};
    if (p.scalar_type() != torch::kFloat) s.master = p.detach().to(torch::kFloat).clone();
    auto like = torch::zeros_like(p, torch::kFloat);
    if (opt_.name == "adamw") {
      s.m = like;
      s.v = like.clone();
    } else if (opt_.momentum > 0) {
      s.m = like;
    }
    slots_.push_back(std::move(s));
  }
}

void Optimizer::zero_grad() {
  for (auto& s : slots_)
    if (s.param.grad().defined()) s.param.mutable_grad() = torch::Tensor();
}

void Optimizer::step(double lr) {
  std::vector<torch::Tensor> grads;
  for (auto& s : slots_) grads.push_back(s.param.grad());
  step(lr, grads);
}

void Optimizer::step(double lr, const std::vector<torch::Tensor>& grads) {
  torch::NoGradGuard ng;
  LETHE_CHECK(grads.size() == slots_.size(), "one gradient per parameter");
  ++step_;
  if (opt_.name == "adamw" && opt_.fused) return adamw_fused(lr, grads);
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    if (!grads[i].defined()) continue;
    auto g = grads[i].to(torch::kFloat);
    auto w = s.master.defined() ? s.master : s.param;
    if (opt_.weight_decay > 0) w.mul_(1.0 - lr * opt_.weight_decay);  // decoupled decay
    if (opt_.name == "adamw") {
      s.m.mul_(opt_.beta1).add_(g, 1.0 - opt_.beta1);
      s.v.mul_(opt_.beta2).addcmul_(g, g, 1.0 - opt_.beta2);
      double bc1 = 1.0 - std::pow(opt_.beta1, double(step_)), bc2 = 1.0 - std::pow(opt_.beta2, double(step_));
      auto denom = (s.v / bc2).sqrt_().add_(opt_.eps);
      w.addcdiv_(s.m, denom, -lr / bc1);
    } else {
      if (s.m.defined()) {
        s.m.mul_(opt_.momentum).add_(g);
        w.add_(s.m, -lr);
      } else {
        w.add_(g, -lr);
      }
    }
    if (s.master.defined()) s.param.copy_(s.master);
  }
}

// w <- w (1 - lr wd); m <- b1 m + (1 - b1) g; v <- b2 v + (1 - b2) g^2;
// w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps): the loop above, in one kernel
// call per device for every parameter with a gradient (fp32 masters for bf16 weights).
void Optimizer::adamw_fused(double lr, const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> w, g, m, v, steps;
  std::vector<size_t> with_master;
  auto step = torch::full({}, double(step_), torch::TensorOptions().dtype(torch::kFloat));
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& s = slots_[i];
    if (!grads[i].defined()) continue;
    w.push_back(s.master.defined() ? s.master : s.param);
    g.push_back(grads[i].to(torch::kFloat).contiguous().view(w.back().sizes()));
    m.push_back(s.m);
    v.push_back(s.v);
    if (s.master.defined()) with_master.push_back(i);
  }
  if (w.empty()) return;
  // One step tensor per parameter, on the parameters' device (the kernel reads it there).
  step = step.to(w[0].device());
  steps.assign(w.size(), step);
  at::_fused_adamw_(w, g, m, v, {}, steps, lr, opt_.beta1, opt_.beta2, opt_.weight_decay, opt_.eps,
                    /*amsgrad=*/false, /*maximize=*/false);
  for (size_t i : with_master) slots_[i].param.copy_(slots_[i].master);
}

std::map<std::string, torch::Tensor> Optimizer::state() const {
  std::map<std::string, torch::Tensor> out;
  for (auto& s : slots_) {
    if (s.m.defined()) out[s.name + "/exp_avg"] = s.m;
    if (s.v.defined()) out[s.name + "/exp_avg_sq"] = s.v;
    if (s.master.defined()) out[s.name + "/master"] = s.master;
  }
  out["step"] = torch::tensor({step_}, torch::kLong);
  return out;
}

void Optimizer::load_state(const std::map<std::string, torch::Tensor>& state, const std::string& source) {
  torch::NoGradGuard ng;
  auto get = [&](const std::string& key, torch::Tensor& dst) {
    if (!dst.defined()) return;
    auto it = state.find(key);
    if (it == state.end()) throw InputError(source + ": optimizer state lacks '" + key + "'");
    if (it->second.sizes() != dst.sizes())
      throw InputError(source + ": optimizer state '" + key + "' has the wrong shape");
    dst.copy_(it->second);
  };
  for (auto& s : slots_) {
    get(s.name + "/exp_avg", s.m);
    get(s.name + "/exp_avg_sq", s.v);
    get(s.name + "/master", s.master);
  }
  auto it = state.find("step");
  if (it == state.end()) throw InputError(source + ": optimizer state lacks 'step'");
  step_ = it->second.item<int64_t>();
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard ng;
  double sq = 0.0;
  for (auto& p : params)
    if (p.grad().defined()) sq += p.grad().to(torch::kFloat).pow(2).sum().item<double>();
  double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    double scale = max_norm / (norm + 1e-6);
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().mul_(scale);
  }
  return norm;
}

}  // namespace lethe
