// Process groups: the world; K unlearning groups as contiguous blocks of ranks (sizes given,
// or proportional to subset sizes with at least one rank each); and the cross-group merge
// communicators joining the ranks that hold the same shard (local index) in every group.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "dist/runtime.h"

namespace lethe {

struct ProcessGroups {
  std::unique_ptr<Communicator> world;
  std::vector<int> group_sizes;  // ranks per group, in world-rank order
  int group = 0;                 // this rank's group
  std::unique_ptr<Communicator> group_comm;
  std::unique_ptr<Communicator> merge_comm;  // local index i of every group that has one
};

// How SPUNGE places its subsets on rank groups (--group-sizes, --groups).
struct GroupOptions {
  std::vector<int> sizes;  // ranks per group, in world-rank order (empty: planned)
  int groups = 0;          // G equal groups that the subsets queue on (0: one group per subset)
};
// "2,2" -> {2, 2}; InputError naming --group-sizes.
std::vector<int> parse_group_sizes(const std::string& s);
// Given sizes; or G equal groups that the subsets queue on (subset k on group k mod G); or one
// group per subset, sized in proportion to the subsets. InputError when they cannot fit.
std::vector<int> plan_group_sizes(const std::vector<int64_t>& subset_sizes, const GroupOptions& o, int world_size);

// Largest-remainder apportionment of `world_size` ranks to subsets, at least one each.
std::vector<int> proportional_group_sizes(const std::vector<int64_t>& subset_sizes, int world_size);
// Collective over `world` (split from it: MPI on CPU, NCCL on GPUs). InputError when the
// sizes do not add up to the world.
ProcessGroups make_process_groups(const std::vector<int>& group_sizes, Communicator& world);

// --device auto|cpu|cuda: auto picks CUDA when this LibTorch has it and a GPU is visible.
// On CUDA, rank r uses device (local rank % visible devices). No communication.
torch::Device select_device(const std::string& want, const RankInfo& rank);

}  // namespace lethe
