// A communication library's type code for a tensor's dtype: each library gives its codes for
// the dtypes communicators carry (16-bit floats may travel as raw 16-bit integers when only
// moved); any other dtype is an InternalError naming the library.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>

#include "common/error.h"

namespace lethe {

template <class Code>
struct DtypeCodes {
  Code f32, bf16, f16, f64, i64, i32, u8;
};

template <class Code>
Code dtype_code(const torch::Tensor& t, const DtypeCodes<Code>& codes, const char* library) {
  const std::pair<torch::ScalarType, Code> table[] = {{torch::kFloat, codes.f32}, {torch::kBFloat16, codes.bf16},
                                                      {torch::kHalf, codes.f16},  {torch::kDouble, codes.f64},
                                                      {torch::kLong, codes.i64},  {torch::kInt, codes.i32},
                                                      {torch::kByte, codes.u8}};
  for (auto& [dtype, code] : table)
    if (dtype == t.scalar_type()) return code;
  throw InternalError(std::string(library) + " communicator: unsupported dtype " + c10::toString(t.scalar_type()));
}

}  // namespace lethe
