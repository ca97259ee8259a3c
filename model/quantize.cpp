#include "model/quantize.h"

#include <cmath>

#include "common/error.h"

namespace lethe {

QuantFormat parse_quant_format(const std::string& name, const std::string& what) {
  if (name == "int8") return QuantFormat::kInt8;
  if (name == "nf4") return QuantFormat::kNf4;
  if (name == "fp4") return QuantFormat::kFp4;
  throw InputError(what + ": unknown quantization '" + name + "' (int8, nf4, fp4)");
}

std::string quant_format_name(QuantFormat f) {
  switch (f) {
    case QuantFormat::kInt8:
      return "int8";
    case QuantFormat::kNf4:
      return "nf4";
    case QuantFormat::kFp4:
      return "fp4";
  }
  return "?";
}

const std::array<float, 16>& nf4_code() {
  // The quantiles of N(0, 1) scaled to [-1, 1], with an exact 0 (QLoRA's NormalFloat4).
  static const std::array<float, 16> code = {-1.0f,
                                             -0.6961928009986877f,
                                             -0.5250730514526367f,
                                             -0.39491748809814453f,
                                             -0.28444138169288635f,
                                             -0.18477343022823334f,
                                             -0.09105003625154495f,
                                             0.0f,
                                             0.07958029955625534f,
                                             0.16093020141124725f,
                                             0.24611230194568634f,
                                             0.33791524171829224f,
                                             0.44070982933044434f,
                                             0.5626170039176941f,
                                             0.7229568362236023f,
                                             1.0f};
  return code;
}

const std::array<float, 16>& fp4_code() {
  // 1 sign, 2 exponent, 1 mantissa bits as bitsandbytes lays them out (0, 0.0625, 8, 12, 4, 6,
  // 2, 3 and their negatives), divided by 12.
  static const std::array<float, 16> code = [] {
    const float raw[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
    std::array<float, 16> c{};
    for (int i = 0; i < 8; ++i) {
      c[size_t(i)] = raw[i] / 12.0f;
      c[size_t(i + 8)] = -raw[i] / 12.0f;
    }
    return c;
  }();
  return code;
}

namespace {

torch::Tensor int8_rowwise(const torch::Tensor& w) {
  auto a = w.to(torch::kFloat).reshape({-1, w.size(-1)});
  auto absmax = std::get<0>(a.abs().max(1)).unsqueeze(1);
  auto q = torch::round(a * (127.0 / absmax)).nan_to_num(0).clamp(-127, 127);  // an all-zero row stays 0
  return (q * absmax * 7.874015718698502e-3).reshape(w.sizes());               // float32 1/127
}

torch::Tensor blockwise_4bit(const torch::Tensor& w, const std::array<float, 16>& code_values, int64_t block) {
  auto sorted = std::get<0>(torch::tensor(std::vector<float>(code_values.begin(), code_values.end())).sort());
  auto mid = (sorted.narrow(0, 0, 15) + sorted.narrow(0, 1, 15)) / 2;
  auto flat = w.to(torch::kFloat).reshape({-1});
  const int64_t n = flat.numel(), blocks = (n + block - 1) / block;
  // Zero padding leaves each block's absmax as it is; the padding is dropped again below.
  auto a = torch::constant_pad_nd(flat, {0, blocks * block - n}).reshape({blocks, block});
  auto absmax = std::get<0>(a.abs().max(1)).unsqueeze(1);
  auto scaled = (a * (1.0 / absmax.clamp_min(1e-38))).clamp(-1, 1);
  auto idx = torch::bucketize(scaled, mid);
  return (sorted.index({idx}) * absmax).reshape({-1}).narrow(0, 0, n).reshape(w.sizes());
}

}  // namespace

torch::Tensor fake_quantize(const torch::Tensor& w, QuantFormat format, int64_t block) {
  LETHE_CHECK(block > 0, "fake_quantize: block must be positive");
  if (w.numel() == 0) return w.clone();
  torch::NoGradGuard ng;
  torch::Tensor out;
  if (format == QuantFormat::kInt8)
    out = int8_rowwise(w);
  else
    out = blockwise_4bit(w, format == QuantFormat::kNf4 ? nf4_code() : fp4_code(), block);
  return out.to(w.scalar_type());
}

double QuantizeSummary::relative_error() const { return norm_sq > 0 ? std::sqrt(error_sq / norm_sq) : 0; }

QuantizeSummary& QuantizeSummary::operator+=(const QuantizeSummary& o) {
  tensors += o.tensors;
  elements += o.elements;
  error_sq += o.error_sq;
  norm_sq += o.norm_sq;
  return *this;
}

QuantizeSummary quantize_linear_weights(CausalLM& model, QuantFormat format, int64_t block, int64_t layer) {
  torch::NoGradGuard ng;
  QuantizeSummary s;
  for (auto& [name, lin] : model->linear_layers()) {
    const int64_t l = CausalLMImpl::parameter_block(name + ".weight").layer;
    if (l < 0 || (layer >= 0 && l != layer)) continue;  // lm_head; another layer
    torch::Tensor& w = lin->weight;
    const auto merged = lin->merged_weight();  // w itself without an adapter
    auto q = fake_quantize(merged, format, block);
    s.error_sq += (q.to(torch::kDouble) - merged.to(torch::kDouble)).pow(2).sum().item<double>();
    s.norm_sq += merged.to(torch::kDouble).pow(2).sum().item<double>();
    if (lin->has_lora())
      w.copy_(q.to(torch::kFloat) - (merged.to(torch::kFloat) - w.to(torch::kFloat)));
    else
      w.copy_(q);
    s.tensors += 1;
    s.elements += w.numel();
  }
  return s;
}

}  // namespace lethe
