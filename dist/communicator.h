// The Communicator seam: collectives over one group of ranks. Two implementations: MPI on CPU
// tensors (what CI exercises) and NCCL on CUDA tensors. Tensors must be contiguous; fp32 and
// bf16 are supported (MPI reduces bf16 in fp32). Every collective runs under a deadline: a
// collective that does not finish in time aborts the job with a message naming the rank, the
// communicator and the collective, instead of hanging.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

namespace lethe {

enum class ReduceOp { Sum, Average };

// Deadline policy shared by a process's communicators: long until the first training step
// completes (start-up, first compilation of kernels), shorter afterwards; `join_s` while rank
// groups that worked independently meet again (join_groups in dist/collectives.h).
struct Deadline {
  double first_step_s = 300.0;
  double after_s = 100.0;
  double join_s = 86400.0;
  bool first_step_done = false;
  bool joining = false;
  double seconds() const { return joining ? join_s : first_step_done ? after_s : first_step_s; }
};
Deadline& process_deadline();

// A collective in flight (Communicator::start_all_gather), finished by wait() under the
// deadline; the destructor waits for one never waited on, so its buffers are never freed while
// it runs. Every rank must start its collectives, in flight or not, in the same order.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const std::string& name() const = 0;
  virtual torch::Device device() const { return torch::kCPU; }  // where its tensors must live
  virtual void all_reduce(torch::Tensor& t, ReduceOp op) = 0;
  // in: size() * n elements; out: n elements (this rank's block, reduced).
  virtual void reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op) = 0;
  // in: n elements; out: size() * n elements, rank r's block at r * n.
  virtual void all_gather(const torch::Tensor& in, torch::Tensor& out) = 0;
  // all_gather started now and finished by the returned object's wait(): `in` and `out` must
  // stay alive and unchanged until then. The default runs it at once.
  virtual std::unique_ptr<PendingCollective> start_all_gather(const torch::Tensor& in, torch::Tensor& out) {
    all_gather(in, out);
    struct Done : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  // reduce_scatter started now and finished by wait() (the average taken there), with the same
  // rules. The default runs it at once.
  virtual std::unique_ptr<PendingCollective> start_reduce_scatter(const torch::Tensor& in, torch::Tensor& out,
                                                                  ReduceOp op) {
    reduce_scatter(in, out, op);
    struct Done : PendingCollective {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  // Whether a started collective runs while this rank computes: NCCL's run on their own
  // stream; MPI's progress mostly inside MPI calls, so starting them early gains little there.
  virtual bool overlaps_compute() const { return false; }
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  virtual void barrier() = 0;
  // Ends the job from this rank with `why` (used by deadlines and fatal errors).
  [[noreturn]] virtual void abort(const std::string& why) = 0;
  // Collective over this communicator: a new one joining the ranks that pass the same color,
  // ordered by key (MPI_Comm_split; ncclCommSplit on NCCL >= 2.18).
  virtual std::unique_ptr<Communicator> split(int color, int key, const std::string& name) = 0;
};

// Host-value collectives over any communicator: dist/collectives.h.

// MPI over MPI_COMM_WORLD, on CPU tensors (dist/mpi_communicator.h builds others).
std::unique_ptr<Communicator> make_world_communicator();
// A communicator of one rank: every collective is the identity. Lets the training loop run
// the same code in a process without MPI (unit tests, tools).
std::unique_ptr<Communicator> make_self_communicator();
// The world communicator for tensors on `device`: MPI on the CPU, NCCL (bootstrapped over
// MPI) on CUDA. Collective over MPI_COMM_WORLD.
std::unique_ptr<Communicator> make_device_communicator(torch::Device device);

#ifdef LETHE_HAVE_NCCL
// NCCL on CUDA tensors; the unique id is broadcast over the MPI communicator `bootstrap`.
std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device, const std::string& name);
#endif

}  // namespace lethe
