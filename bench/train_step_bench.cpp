// Training-step throughput of lethe's decoder: forward + answer-masked loss + backward +
// AdamW step on random tokens, for an HF config. Prints one JSON line; bench/run_train_step.sh
// runs it next to the PyTorch peer (bench/peer_train_step.py) and prints the ratio.
// usage: lethe_bench_step CONFIG.json BATCH SEQ STEPS THREADS [DEVICE cpu|cuda] [DTYPE float32|bfloat16]
#include <chrono>
#include <iostream>

#include "common/json_io.h"
#include "model/llama.h"
#include "optim/optimizer.h"

int main(int argc, char** argv) {
  using namespace lethe;
  if (argc < 6 || argc > 8) {
    std::cerr
        << "usage: lethe_bench_step CONFIG.json BATCH SEQ STEPS THREADS [DEVICE cpu|cuda] [DTYPE float32|bfloat16]\n";
    return 2;
  }
  ModelConfig c = ModelConfig::from_json(read_json_file(argv[1]), argv[1]);
  const int64_t B = std::stoll(argv[2]), T = std::stoll(argv[3]), steps = std::stoll(argv[4]);
  torch::set_num_threads(std::stoi(argv[5]));
  const torch::Device device(argc > 6 ? std::string(argv[6]) : std::string("cpu"));
  const torch::ScalarType dtype = parse_dtype(argc > 7 ? argv[7] : "float32", "DTYPE");
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index() < 0 ? 0 : device.index());
  };
  CausalLM model(c);
  model->init_weights(0);
  model->to(device, dtype);
  std::vector<std::pair<std::string, torch::Tensor>> params = model->named_weights();
  Optimizer opt(params, OptimizerOptions{});
  torch::manual_seed(0);
  auto ids = torch::randint(0, c.vocab_size, {B, T}, torch::kLong).to(device);
  auto labels = ids.clone();
  labels.narrow(1, 0, T / 2).fill_(-100);  // half prompt, half answer
  auto step = [&] {
    opt.zero_grad();
    pooled_mean_nll(token_loss(model->forward(ids), labels)).backward();
    opt.step(1e-4);
  };
  step();  // warm-up
  sync();
  auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) step();
  sync();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << json{{"impl", "lethe"},
                    {"params", c.num_parameters()},
                    {"device", device.str()},
                    {"dtype", std::string(c10::toString(dtype))},
                    {"step_s", secs / double(steps)},
                    {"tokens_per_s", double(B * T * steps) / secs}}
                   .dump()
            << "\n";
  return 0;
}
