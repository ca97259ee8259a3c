// Collectives over host values that several modules share, generic over any Communicator:
// small tensors copied to the communicator's device and back, "did any rank ...", one error
// agreed on by every rank, and strings gathered from every rank. Each is a collective: every
// rank of `comm` must call it.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "dist/communicator.h"

namespace lethe {

void all_reduce_host(Communicator& comm, torch::Tensor& t, ReduceOp op);
void all_gather_host(Communicator& comm, const torch::Tensor& in, torch::Tensor& out);
void broadcast_host(Communicator& comm, torch::Tensor& t, int root);

// True on every rank when `mine` is true on at least one.
bool any_rank(Communicator& comm, bool mine);
// Rank groups that worked independently (SPUNGE's subsets, a sweep's configurations) meet again
// over `world`: they arrive as far apart as their work differs, so the wait runs under the join
// deadline (--join-timeout) instead of the collective one. A dead peer still ends the job.
void join_groups(Communicator& world);
// Rank 0 runs `check` ("" when fine, else an error message) and every rank throws the same
// InputError, so a bad input seen by one rank never leaves the others waiting.
void agree_on_error(Communicator& comm, const std::function<std::string()>& check);
// Every rank's strings, gathered on all ranks in rank order.
std::vector<std::string> all_gather_strings(Communicator& comm, const std::vector<std::string>& mine);
// The same when rank r holds items r, r + N, r + 2N, ... of one list: the whole list, in order.
std::vector<std::string> all_gather_strided_strings(Communicator& comm, const std::vector<std::string>& mine);
// One value per rank, gathered on all ranks in rank order.
std::vector<int64_t> all_gather_int(Communicator& comm, int64_t mine);
// Every rank's tensor (any dtype and shape; undefined: none), gathered on all ranks in rank
// order as contiguous CPU tensors.
std::vector<torch::Tensor> all_gather_tensors(Communicator& comm, const torch::Tensor& mine);

}  // namespace lethe
