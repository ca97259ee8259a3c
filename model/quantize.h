// Weight quantization as the robustness probe uses it: a weight is rounded to a low-precision
// code and dequantized again (the model keeps its dtype), so every evaluation runs unchanged on
// what a user of the quantized model would get. Formats as bitsandbytes defines them:
//   int8: per output channel (row) absmax, q = round(w * 127 / absmax), w' = q * absmax / 127
//         (LLM.int8's vector-wise weight quantization, without the outlier decomposition);
//   nf4, fp4: blocks of `block` consecutive elements of the flattened tensor, each scaled by its
//         absmax (kept in float32, no second quantization of the scales) and rounded to the
//         nearest of 16 code values (a value on a midpoint goes to the lower one).
#pragma once
#include <array>
#include <string>
#include <vector>

#include "model/llama.h"

namespace lethe {

enum class QuantFormat { kInt8, kNf4, kFp4 };

QuantFormat parse_quant_format(const std::string& name, const std::string& what);
std::string quant_format_name(QuantFormat f);

// The 16 code values of NF4 (normal-float quantiles) and FP4 (bitsandbytes' e2m1 table divided
// by its largest magnitude), in code order.
const std::array<float, 16>& nf4_code();
const std::array<float, 16>& fp4_code();

// w rounded to `format` and back, in w's dtype and shape (float32 arithmetic).
torch::Tensor fake_quantize(const torch::Tensor& w, QuantFormat format, int64_t block = 64);

struct QuantizeSummary {
  int64_t tensors = 0, elements = 0;
  double error_sq = 0, norm_sq = 0;  // ||w' - w||^2 and ||w||^2 summed over the quantized tensors
  double relative_error() const;     // ||w' - w|| / ||w|| over all of them together
  QuantizeSummary& operator+=(const QuantizeSummary& o);
};
// Every weight matrix of the decoder layers' linear maps (attention and MLP projections), in
// place, as bitsandbytes' model loading converts them; embeddings, norms, biases and lm_head stay.
// layer >= 0: that decoder layer's only (a ZeRO 3 engine gathers one at a time). A linear with a
// LoRA adapter attached is quantized as merged: its base weight becomes Q(W + s B A) - s B A, so
// the layer computes what the merged and quantized weight would.
QuantizeSummary quantize_linear_weights(CausalLM& model, QuantFormat format, int64_t block = 64, int64_t layer = -1);

}  // namespace lethe
