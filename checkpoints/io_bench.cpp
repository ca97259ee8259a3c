#include "checkpoints/io_bench.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "common/error.h"
#include "common/perf.h"
#include "dist/collectives.h"
#include "merge/merge_io.h"

namespace fs = std::filesystem;

namespace lethe {

namespace {

template <class F>
void for_each_file(const std::string& path, F f) {
  if (fs::is_regular_file(path)) {
    f(path);
    return;
  }
  for (auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) f(e.path().string());
}

double seconds_of(const std::function<void()>& fn) {
  auto t0 = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string scratch_path(const std::string& dir, const std::string& what, int64_t i) {
  if (!fs::is_directory(dir)) throw InputError("--dir '" + dir + "' is not an existing directory");
  return (fs::path(dir) / (".lethe-bench-" + what + "-" + std::to_string(::getpid()) + "-" + std::to_string(i)))
      .string();
}

double mb_per_s(uint64_t bytes, double s) { return double(bytes) / 1e6 / std::max(s, 1e-12); }

}  // namespace

uint64_t bytes_on_disk(const std::string& path) {
  uint64_t n = 0;
  for_each_file(path, [&](const std::string& f) { n += fs::file_size(f); });
  return n;
}

void evict_page_cache(const std::string& path) {
  for_each_file(path, [](const std::string& f) {
    int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) return;
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  });
}

json bench_checkpoint(const CheckpointBenchOptions& o) {
  if (o.repeats <= 0) throw InputError("--repeats must be positive");
  ModelConfig c = ModelConfig::from_json(read_json_file(o.model_config), o.model_config);
  const std::string dtype = o.dtype.empty() ? c.torch_dtype : o.dtype;
  c.torch_dtype = dtype;
  CausalLM model(c);
  model->init_weights(0);
  model->to(parse_dtype(dtype, "--dtype"));
  std::vector<double> write_s, cold_s, warm_s;
  uint64_t bytes = 0;
  for (int64_t r = 0; r < o.repeats; ++r) {
    const std::string path = scratch_path(o.dir, "checkpoint", r);
    try {
      write_s.push_back(seconds_of([&] { save_model(model, path, o.format, json::object(), "", o.max_shard_bytes); }));
      bytes = bytes_on_disk(path);
      evict_page_cache(path);
      cold_s.push_back(seconds_of([&] { load_model(path, dtype); }));
      warm_s.push_back(seconds_of([&] { load_model(path, dtype); }));
    } catch (...) {
      fs::remove_all(path);
      throw;
    }
    fs::remove_all(path);
  }
  const double w = median(write_s), rc = median(cold_s), rw = median(warm_s);
  return {{"bench", "checkpoint"},
          {"impl", "lethe"},
          {"format", format_name(o.format)},
          {"dtype", dtype},
          {"params", c.num_parameters()},
          {"bytes", bytes},
          {"repeats", o.repeats},
          {"write_s", w},
          {"write_MBps", mb_per_s(bytes, w)},
          {"read_cold_s", rc},
          {"read_cold_MBps", mb_per_s(bytes, rc)},
          {"read_warm_s", rw},
          {"read_warm_MBps", mb_per_s(bytes, rw)},
          {"write_s_all", write_s},
          {"read_cold_s_all", cold_s}};
}

json bench_merge(const MergeBenchOptions& o, Communicator& comm) {
  if (o.repeats <= 0) throw InputError("--repeats must be positive");
  uint64_t in_bytes = bytes_on_disk(o.base);
  for (auto& m : o.models) in_bytes += bytes_on_disk(m);
  std::vector<double> merge_s;
  uint64_t out_bytes = 0;
  for (int64_t r = 0; r < o.repeats; ++r) {
    // Rank 0 names the scratch output (its PID) for every rank.
    std::string path = scratch_path(o.dir, "merge", r);
    path = all_gather_strings(comm, {path})[0];
    OutputOptions out;
    out.out = path;
    out.format = o.format;
    out.max_shard_bytes = o.max_shard_bytes;
    if (o.cold) {
      evict_page_cache(o.base);
      for (auto& m : o.models) evict_page_cache(m);
    }
    comm.barrier();
    try {
      merge_s.push_back(seconds_of([&] {
        merge_checkpoints(o.base, o.models, o.merge, out, comm);
        comm.barrier();
      }));
      out_bytes = bytes_on_disk(path);
    } catch (...) {
      if (comm.rank() == 0) fs::remove_all(path);
      throw;
    }
    comm.barrier();
    if (comm.rank() == 0) fs::remove_all(path);
  }
  const double m = median(merge_s);
  return {{"bench", "merge"},
          {"impl", "lethe"},
          {"rule", describe(o.merge)},
          {"models", o.models.size()},
          {"ranks", comm.size()},
          {"format", format_name(o.format)},
          {"repeats", o.repeats},
          {"cold_inputs", o.cold},
          {"input_bytes", in_bytes},
          {"output_bytes", out_bytes},
          {"merge_s", m},
          {"merge_s_all", merge_s},
          {"output_MBps", mb_per_s(out_bytes, m)}};
}

}  // namespace lethe
