// MPI implementation of the Communicator seam. Collectives are issued non-blocking and polled
// against the process deadline, so a dead or stuck peer turns into an abort naming the rank
// and the collective instead of a hang. bf16 is reduced in fp32 (MPI has no bf16 type).
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "common/error.h"
#include "dist/dtype_codes.h"
#include "dist/mpi_communicator.h"
#include "dist/mpi_env.h"

namespace lethe {

Deadline& process_deadline() {
  static Deadline d;
  return d;
}

namespace {

MPI_Datatype mpi_type(const torch::Tensor& t) {
  // f32, bf16, f16 (raw bits: only for data movement), f64, i64, i32, u8
  DtypeCodes<MPI_Datatype> codes{MPI_FLOAT,   MPI_UINT16_T, MPI_UINT16_T, MPI_DOUBLE,
                                 MPI_INT64_T, MPI_INT32_T,  MPI_UINT8_T};
  return dtype_code(t, codes, "MPI");
}

bool is_16bit_float(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 || t.scalar_type() == torch::kHalf;
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator(MPI_Comm comm, std::string name) : comm_(comm), name_(std::move(name)) {
    MPI_CHECK(MPI_Comm_rank(comm_, &rank_));
    MPI_CHECK(MPI_Comm_size(comm_, &size_));
    MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
  }
  ~MpiCommunicator() override {
    if (comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL && mpi_active()) MPI_Comm_free(&comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
    MPI_Comm sub;
    MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub));
    return std::make_unique<MpiCommunicator>(sub, name);
  }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    check(t);
    if (is_16bit_float(t)) {  // reduce in fp32, write back
      auto f = t.to(torch::kFloat);
      all_reduce(f, op);
      t.copy_(f);
      return;
    }
    MPI_Request req;
    MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), int(t.numel()), mpi_type(t), MPI_SUM, comm_, &req));
    wait(req, "all_reduce");
    if (op == ReduceOp::Average) t.div_(size_);
  }

  void reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op) override {
    check(in);
    check(out);
    LETHE_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input must hold size() blocks of the output");
    if (is_16bit_float(in)) {
      auto fo = torch::empty({out.numel()}, out.options().dtype(torch::kFloat));
      reduce_scatter(in.to(torch::kFloat), fo, op);
      out.copy_(fo.view(out.sizes()));
      return;
    }
    MPI_Request req;
    MPI_CHECK(
        MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), int(out.numel()), mpi_type(in), MPI_SUM, comm_, &req));
    wait(req, "reduce_scatter");
    if (op == ReduceOp::Average) out.div_(size_);
  }

  void all_gather(const torch::Tensor& in, torch::Tensor& out) override {
    check(in);
    check(out);
    LETHE_CHECK(out.numel() == in.numel() * size_, "all_gather: output must hold size() blocks of the input");
    MPI_Request req;
    MPI_CHECK(MPI_Iallgather(in.data_ptr(), int(in.numel()), mpi_type(in), out.data_ptr(), int(in.numel()),
                             mpi_type(out), comm_, &req));
    wait(req, "all_gather");
  }

  std::unique_ptr<PendingCollective> start_all_gather(const torch::Tensor& in, torch::Tensor& out) override {
    check(in);
    check(out);
    LETHE_CHECK(out.numel() == in.numel() * size_, "all_gather: output must hold size() blocks of the input");
    auto p = std::make_unique<Pending>(*this, in, out);
    MPI_CHECK(MPI_Iallgather(in.data_ptr(), int(in.numel()), mpi_type(in), out.data_ptr(), int(in.numel()),
                             mpi_type(out), comm_, &p->req));
    p->started = true;
    return p;
  }

  // 16-bit floats are reduced in fp32 at once, as reduce_scatter does.
  std::unique_ptr<PendingCollective> start_reduce_scatter(const torch::Tensor& in, torch::Tensor& out,
                                                          ReduceOp op) override {
    if (is_16bit_float(in)) return Communicator::start_reduce_scatter(in, out, op);
    check(in);
    check(out);
    LETHE_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input must hold size() blocks of the output");
    auto p = std::make_unique<Pending>(*this, in, out);
    if (op == ReduceOp::Average) p->divide_by = size_;
    MPI_CHECK(MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), int(out.numel()), mpi_type(in), MPI_SUM, comm_,
                                        &p->req));
    p->started = true;
    return p;
  }

  void broadcast(torch::Tensor& t, int root) override {
    check(t);
    MPI_Request req;
    MPI_CHECK(MPI_Ibcast(t.data_ptr(), int(t.numel()), mpi_type(t), root, comm_, &req));
    wait(req, "broadcast");
  }

  void barrier() override {
    MPI_Request req;
    MPI_CHECK(MPI_Ibarrier(comm_, &req));
    wait(req, "barrier");
  }

  [[noreturn]] void abort(const std::string& why) override {
    spdlog::critical("rank {}: {}; aborting the job", world_rank_, why);
    spdlog::default_logger()->flush();
    abort_job(3);
  }

 private:
  void check(const torch::Tensor& t) const {
    LETHE_CHECK(t.device().is_cpu(), "MPI communicator '" + name_ + "' needs CPU tensors");
    LETHE_CHECK(t.is_contiguous(), "MPI communicator '" + name_ + "' needs contiguous tensors");
    LETHE_CHECK(t.numel() < (int64_t(1) << 31), "MPI communicator: message too large for one call");
  }

  // Polls the request until done or past the deadline; sleeps grow to 1 ms so oversubscribed
  // ranks do not starve each other.
  void wait(MPI_Request& req, const char* what) {
    auto t0 = std::chrono::steady_clock::now();
    const double limit = process_deadline().seconds();
    int done = 0, spins = 0;
    for (;;) {
      MPI_CHECK(MPI_Test(&req, &done, MPI_STATUS_IGNORE));
      if (done) return;
      double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (waited > limit)
        abort("collective " + std::string(what) + " on communicator '" + name_ + "' did not complete within " +
              fmt::format("{:g}", limit) + " s (a peer rank died or hangs)");
      if (++spins > 100) std::this_thread::sleep_for(std::chrono::microseconds(std::min(1000, spins)));
    }
  }

  // A started collective: its request, the tensors it reads and writes, and the divisor of an
  // average (applied in wait()).
  struct Pending : PendingCollective {
    Pending(MpiCommunicator& c, torch::Tensor i, torch::Tensor o) : comm(c), in(std::move(i)), out(std::move(o)) {}
    ~Pending() override {
      try {
        if (started) comm.wait(req, "collective started early");
      } catch (...) {  // MPI failed: the job is going down; never throw from a destructor
      }
    }
    void wait() override {
      if (!started) return;
      comm.wait(req, "collective started early");
      started = false;
      if (divide_by > 1) out.div_(divide_by);
    }
    MpiCommunicator& comm;
    torch::Tensor in, out;
    MPI_Request req = MPI_REQUEST_NULL;
    int divide_by = 1;
    bool started = false;
  };

  MPI_Comm comm_;
  std::string name_;
  int rank_ = 0, size_ = 1, world_rank_ = 0;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(MPI_Comm comm, const std::string& name) {
  return std::make_unique<MpiCommunicator>(comm, name);
}

std::unique_ptr<Communicator> make_world_communicator() {
  if (!mpi_active()) return make_self_communicator();  // one process that no launcher started
  return make_mpi_communicator(MPI_COMM_WORLD, "world");
}

}  // namespace lethe
