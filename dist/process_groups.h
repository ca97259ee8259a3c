// Process groups: the world; K unlearning groups as contiguous blocks of ranks (sizes given,
// or proportional to subset sizes with at least one rank each); and the cross-group merge
// communicators joining the ranks that hold the same shard (local index) in every group.
#pragma once
#include <memory>
#include <vector>

#include "dist/communicator.h"

namespace lethe {

struct ProcessGroups {
  std::unique_ptr<Communicator> world;
  std::vector<int> group_sizes;  // ranks per group, in world-rank order
  int group = 0;                 // this rank's group
  std::unique_ptr<Communicator> group_comm;
  std::unique_ptr<Communicator> merge_comm;  // local index i of every group that has one
};

// Largest-remainder apportionment of `world_size` ranks to subsets, at least one each.
std::vector<int> proportional_group_sizes(const std::vector<int64_t>& subset_sizes, int world_size);
// Collective over MPI_COMM_WORLD. InputError when the sizes do not add up to the world.
ProcessGroups make_process_groups(const std::vector<int>& group_sizes, torch::Device device = torch::kCPU);

// --device auto|cpu|cuda: auto picks CUDA when this LibTorch has it and a GPU is visible.
// On CUDA, rank r uses device (local rank % visible devices).
torch::Device select_device(const std::string& want);
// The world communicator for tensors on `device`: MPI on the CPU, NCCL (bootstrapped over
// MPI) on CUDA.
std::unique_ptr<Communicator> make_device_communicator(torch::Device device);

// A communicator of one rank: every collective is the identity. Lets the training loop run
// the same code in a process without MPI (unit tests, tools).
std::unique_ptr<Communicator> make_self_communicator();

}  // namespace lethe
