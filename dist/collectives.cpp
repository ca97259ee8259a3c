#include "dist/collectives.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "common/json_io.h"

namespace lethe {

void all_reduce_host(Communicator& comm, torch::Tensor& t, ReduceOp op) {
  if (comm.device().is_cpu()) return comm.all_reduce(t, op);
  auto d = t.to(comm.device());
  comm.all_reduce(d, op);
  t.copy_(d.cpu());
}

void all_gather_host(Communicator& comm, const torch::Tensor& in, torch::Tensor& out) {
  if (comm.device().is_cpu()) return comm.all_gather(in, out);
  auto o = out.to(comm.device());
  comm.all_gather(in.to(comm.device()), o);
  out.copy_(o.cpu());
}

void broadcast_host(Communicator& comm, torch::Tensor& t, int root) {
  if (comm.device().is_cpu()) return comm.broadcast(t, root);
  auto d = t.to(comm.device());
  comm.broadcast(d, root);
  t.copy_(d.cpu());
}

void join_groups(Communicator& world) {
  Deadline& d = process_deadline();
  struct Joining {
    Deadline& d;
    explicit Joining(Deadline& deadline) : d(deadline) { d.joining = true; }
    ~Joining() { d.joining = false; }
  } joining(d);
  spdlog::debug("waiting up to {:.0f} s for the other rank groups", d.join_s);
  world.barrier();
}

bool any_rank(Communicator& comm, bool mine) {
  auto flag = torch::tensor({mine ? 1.0 : 0.0}, torch::kDouble);
  all_reduce_host(comm, flag, ReduceOp::Sum);
  return flag.item<double>() > 0;
}

void agree_on_error(Communicator& comm, const std::function<std::string()>& check) {
  std::string err = comm.rank() == 0 ? check() : "";
  auto buf = torch::zeros({1024}, torch::kByte);
  std::memcpy(buf.data_ptr(), err.data(), std::min<size_t>(err.size(), 1023));
  broadcast_host(comm, buf, 0);
  std::string msg(static_cast<const char*>(buf.data_ptr()));
  if (!msg.empty()) throw InputError(msg);
}

std::vector<int64_t> all_gather_int(Communicator& comm, int64_t mine) {
  auto in = torch::tensor({mine}, torch::kLong);
  auto all = torch::zeros({comm.size()}, torch::kLong);
  all_gather_host(comm, in, all);
  return std::vector<int64_t>(all.data_ptr<int64_t>(), all.data_ptr<int64_t>() + all.numel());
}

std::vector<std::string> all_gather_strings(Communicator& comm, const std::vector<std::string>& mine) {
  std::string blob = json_text(json(mine));
  auto lens = all_gather_int(comm, int64_t(blob.size()));
  int64_t max_len = *std::max_element(lens.begin(), lens.end());
  auto buf = torch::zeros({max_len}, torch::kByte);
  std::memcpy(buf.data_ptr(), blob.data(), blob.size());
  auto all = torch::zeros({max_len * comm.size()}, torch::kByte);
  all_gather_host(comm, buf, all);
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r) {
    std::string part(static_cast<const char*>(all.data_ptr()) + r * max_len, size_t(lens[size_t(r)]));
    for (auto& s : json::parse(part)) out.push_back(s.get<std::string>());
  }
  return out;
}

std::vector<std::string> all_gather_strided_strings(Communicator& comm, const std::vector<std::string>& mine) {
  std::vector<std::string> all = all_gather_strings(comm, mine);
  // Rank r's part starts after the parts of ranks 0..r-1; rank r holds items r, r + N, ...
  const size_t W = size_t(comm.size()), n = all.size();
  std::vector<std::string> out(n);
  size_t start = 0;
  for (size_t r = 0; r < W; ++r) {
    const size_t count = r < n ? (n - r + W - 1) / W : 0;
    for (size_t k = 0; k < count; ++k) out[r + k * W] = std::move(all[start + k]);
    start += count;
  }
  return out;
}

std::vector<torch::Tensor> all_gather_tensors(Communicator& comm, const torch::Tensor& mine) {
  torch::Tensor host = mine.defined() ? mine.to(torch::kCPU).contiguous() : torch::Tensor();
  const json head =
      host.defined() ? json{{"dtype", int(host.scalar_type())}, {"shape", host.sizes().vec()}} : json(nullptr);
  const std::vector<std::string> heads = all_gather_strings(comm, {json_text(head)});
  std::vector<torch::Tensor> out(size_t(comm.size()));  // allocated from the headers
  int64_t max_len = 1;
  for (int r = 0; r < comm.size(); ++r) {
    const json h = json::parse(heads[size_t(r)]);
    if (h.is_null()) continue;
    out[size_t(r)] = torch::empty(h["shape"].get<std::vector<int64_t>>(),
                                  torch::TensorOptions().dtype(torch::ScalarType(h["dtype"].get<int>())));
    max_len = std::max<int64_t>(max_len, int64_t(out[size_t(r)].nbytes()));
  }
  auto buf = torch::zeros({max_len}, torch::kByte);
  if (host.defined()) std::memcpy(buf.data_ptr(), host.data_ptr(), host.nbytes());
  auto all = torch::empty({max_len * comm.size()}, torch::kByte);
  all_gather_host(comm, buf, all);
  for (int r = 0; r < comm.size(); ++r)
    if (out[size_t(r)].defined())
      std::memcpy(out[size_t(r)].data_ptr(), static_cast<const char*>(all.data_ptr()) + r * max_len,
                  out[size_t(r)].nbytes());
  return out;
}

}  // namespace lethe
