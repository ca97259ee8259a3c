#include "dist/process_groups.h"

#include <numeric>

#include "common/error.h"
#include "dist/mpi_env.h"

namespace lethe {

std::vector<int> proportional_group_sizes(const std::vector<int64_t>& subset_sizes, int world_size) {
  const int K = int(subset_sizes.size());
  if (K == 0) throw InputError("no subsets to place on rank groups");
  if (K > world_size)
    throw InputError(std::to_string(K) + " subsets need at least " + std::to_string(K) + " ranks, the world has " +
                     std::to_string(world_size));
  int64_t total = 0;
  for (auto s : subset_sizes) {
    if (s <= 0) throw InputError("an empty subset cannot get a rank group");
    total += s;
  }
  std::vector<int> sizes(K, 1);
  std::vector<double> quota(K);
  for (int k = 0; k < K; ++k) quota[k] = double(world_size) * double(subset_sizes[k]) / double(total);
  int assigned = K;
  while (assigned < world_size) {  // give the next rank to the group furthest below its quota
    int best = 0;
    for (int k = 1; k < K; ++k)
      if (quota[k] - sizes[k] > quota[best] - sizes[best]) best = k;
    ++sizes[best];
    ++assigned;
  }
  return sizes;
}

ProcessGroups make_process_groups(const std::vector<int>& group_sizes, torch::Device device) {
  ProcessGroups pg;
  pg.world = make_device_communicator(device);
  const int world = pg.world->size(), rank = pg.world->rank();
  int total = 0;
  for (int s : group_sizes) {
    if (s <= 0) throw InputError("every rank group needs at least one rank");
    total += s;
  }
  if (total != world)
    throw InputError("rank group sizes add up to " + std::to_string(total) + " but the world has " + std::to_string(world) +
                     " ranks");
  pg.group_sizes = group_sizes;
  int first = 0;
  for (size_t g = 0; g < group_sizes.size(); ++g) {
    if (rank < first + group_sizes[g]) {
      pg.group = int(g);
      break;
    }
    first += group_sizes[g];
  }
  const int local = rank - first;
  // Split from the world communicator: MPI_Comm_split on CPU, ncclCommSplit on GPUs.
  pg.group_comm = pg.world->split(pg.group, rank, "group" + std::to_string(pg.group));
  pg.merge_comm = pg.world->split(local, rank, "merge" + std::to_string(local));
  return pg;
}

torch::Device select_device(const std::string& want) {
  if (want != "auto" && want != "cpu" && want != "cuda")
    throw InputError("--device: unknown device '" + want + "' (auto, cpu, cuda)");
  const bool have_cuda = torch::cuda::is_available();
  if (want == "cuda" && !have_cuda)
    throw InputError("--device cuda: this LibTorch has no CUDA support or no GPU is visible");
  if (want == "cpu" || !have_cuda) return torch::kCPU;
  RankInfo r = mpi_init(nullptr, nullptr);
  return torch::Device(torch::kCUDA, int8_t(r.local_rank % int(torch::cuda::device_count())));
}

std::unique_ptr<Communicator> make_device_communicator(torch::Device device) {
  if (device.is_cpu()) return make_world_communicator();
#ifdef LETHE_HAVE_NCCL
  auto bootstrap = make_world_communicator();
  return make_nccl_communicator(*bootstrap, device.index(), "world-nccl");
#else
  throw InputError("CUDA device selected but lethe was built without NCCL (configure with CUDA/NCCL present)");
#endif
}

namespace {
class SelfCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::string& name() const override { return name_; }
  void all_reduce(torch::Tensor&, ReduceOp) override {}
  void reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp) override { out.copy_(in.view(out.sizes())); }
  void all_gather(const torch::Tensor& in, torch::Tensor& out) override { out.copy_(in.view(out.sizes())); }
  void broadcast(torch::Tensor&, int) override {}
  void barrier() override {}
  [[noreturn]] void abort(const std::string& why) override { throw InternalError(why); }
  std::unique_ptr<Communicator> split(int, int, const std::string&) override {
    return std::make_unique<SelfCommunicator>();
  }

 private:
  std::string name_ = "self";
};
}  // namespace

std::unique_ptr<Communicator> make_self_communicator() { return std::make_unique<SelfCommunicator>(); }

}  // namespace lethe
