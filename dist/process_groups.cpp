#include "dist/process_groups.h"

#include <numeric>

#include "common/error.h"
#include "common/text.h"

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

std::vector<int> parse_group_sizes(const std::string& s) {
  std::vector<int> out;
  for (auto& item : split_commas(s)) {
    try {
      size_t used = 0;
      int v = std::stoi(item, &used);
      if (used != item.size() || v <= 0) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      throw InputError("--group-sizes: '" + item + "' is not a positive rank count");
    }
  }
  return out;
}

std::vector<int> plan_group_sizes(const std::vector<int64_t>& subset_sizes, const GroupOptions& o, int world_size) {
  const size_t K = subset_sizes.size();
  std::vector<int> sizes;
  if (!o.sizes.empty()) {
    sizes = o.sizes;
  } else if (o.groups > 0 && size_t(o.groups) < K) {
    if (world_size % o.groups)
      throw InputError("--groups " + std::to_string(o.groups) + " does not divide the " + std::to_string(world_size) +
                       " ranks");
    sizes.assign(size_t(o.groups), world_size / o.groups);
  } else {
    if (size_t(world_size) < K)
      throw InputError(std::to_string(K) + " subsets need at least " + std::to_string(K) +
                       " ranks for one group each (" + std::to_string(world_size) +
                       " given); use --groups G to queue them on G groups");
    sizes = proportional_group_sizes(subset_sizes, world_size);
  }
  if (sizes.size() > K)
    throw InputError(std::to_string(sizes.size()) + " rank groups for " + std::to_string(K) +
                     " subsets: at most one group per subset");
  return sizes;
}

ProcessGroups make_process_groups(const std::vector<int>& group_sizes, Communicator& world_comm) {
  ProcessGroups pg;
  pg.world = world_comm.split(0, world_comm.rank(), world_comm.name());
  const int world = pg.world->size(), rank = pg.world->rank();
  int total = 0;
  for (int s : group_sizes) {
    if (s <= 0) throw InputError("every rank group needs at least one rank");
    total += s;
  }
  if (total != world)
    throw InputError("rank group sizes add up to " + std::to_string(total) + " but the world has " +
                     std::to_string(world) + " ranks");
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

torch::Device select_device(const std::string& want, const RankInfo& r) {
  if (want != "auto" && want != "cpu" && want != "cuda")
    throw InputError("--device: unknown device '" + want + "' (auto, cpu, cuda)");
  const bool have_cuda = torch::cuda::is_available();
  if (want == "cuda" && !have_cuda)
    throw InputError("--device cuda: this LibTorch has no CUDA support or no GPU is visible");
  if (want == "cpu" || !have_cuda) return torch::kCPU;
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

}  // namespace lethe
