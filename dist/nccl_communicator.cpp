// NCCL implementation of the Communicator seam (built when NCCL is found). The unique id
// travels over the MPI bootstrap communicator; collectives run on a communication stream
// ordered against the compute stream with events, inside ncclGroupStart/End; the
// communicator is non-blocking so a deadline can abort it (ncclCommAbort) instead of hanging.
#include <cuda_runtime.h>
#include <nccl.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "common/error.h"
#include "dist/collectives.h"
#include "dist/dtype_codes.h"
#include "dist/mpi_env.h"

#ifdef LETHE_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

namespace lethe {

std::string nccl_version_string() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown";
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

namespace {

#define CUDA_CHECK(expr)                                                                                            \
  do {                                                                                                              \
    cudaError_t _e = (expr);                                                                                        \
    if (_e != cudaSuccess)                                                                                          \
      throw InternalError(std::string("CUDA call `" #expr "` failed at " __FILE__ ":") + std::to_string(__LINE__) + \
                          ": " + cudaGetErrorString(_e));                                                           \
  } while (0)

#define NCCL_CHECK(expr)                                                                                            \
  do {                                                                                                              \
    ncclResult_t _r = (expr);                                                                                       \
    if (_r != ncclSuccess && _r != ncclInProgress)                                                                  \
      throw InternalError(std::string("NCCL call `" #expr "` failed at " __FILE__ ":") + std::to_string(__LINE__) + \
                          ": " + ncclGetErrorString(_r));                                                           \
  } while (0)

ncclDataType_t nccl_type(const torch::Tensor& t) {
  // f32, bf16, f16, f64, i64, i32, u8
  DtypeCodes<ncclDataType_t> codes{ncclFloat32, ncclBfloat16, ncclFloat16, ncclFloat64,
                                   ncclInt64,   ncclInt32,    ncclUint8};
  return dtype_code(t, codes, "NCCL");
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(Communicator& bootstrap, int device, std::string name)
      : name_(std::move(name)), rank_(bootstrap.rank()), size_(bootstrap.size()), device_(device) {
    if (mpi_active()) MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
    CUDA_CHECK(cudaSetDevice(device_));
    ncclUniqueId id;
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    auto buf = torch::from_blob(&id, {int64_t(sizeof id)}, torch::kByte).clone();
    bootstrap.broadcast(buf, 0);
    std::memcpy(&id, buf.data_ptr(), sizeof id);
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    NCCL_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config));
    wait_ready("ncclCommInitRankConfig");
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  // A communicator made by ncclCommSplit: takes ownership of `comm`.
  NcclCommunicator(ncclComm_t comm, int device, std::string name)
      : name_(std::move(name)), device_(device), comm_(comm) {
    if (mpi_active()) MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_));
    CUDA_CHECK(cudaSetDevice(device_));
    wait_ready("ncclCommSplit");
    NCCL_CHECK(ncclCommUserRank(comm_, &rank_));
    NCCL_CHECK(ncclCommCount(comm_, &size_));
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  }
  ~NcclCommunicator() override {
    if (comm_) ncclCommDestroy(comm_);
    if (stream_) cudaStreamDestroy(stream_);
    if (ready_) cudaEventDestroy(ready_);
    if (done_) cudaEventDestroy(done_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::string& name() const override { return name_; }
  torch::Device device() const override { return torch::Device(torch::kCUDA, int8_t(device_)); }

  void all_reduce(torch::Tensor& t, ReduceOp op) override {
    run("all_reduce", t, [&] {
      NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t), red(op), comm_, stream_));
    });
  }
  void reduce_scatter(const torch::Tensor& in, torch::Tensor& out, ReduceOp op) override {
    LETHE_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input must hold size() blocks");
    run("reduce_scatter", out, [&] {
      NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(in), red(op), comm_,
                                   stream_));
    });
  }
  void all_gather(const torch::Tensor& in, torch::Tensor& out) override {
    LETHE_CHECK(out.numel() == in.numel() * size_, "all_gather: output must hold size() blocks");
    run("all_gather", out, [&] {
      NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.numel()), nccl_type(in), comm_, stream_));
    });
  }
  // Started collectives are issued on the communication stream after the compute stream's work
  // so far; wait() orders the compute stream after them and polls them like any collective, so
  // they run while the GPU computes what was queued in between.
  std::unique_ptr<PendingCollective> start_all_gather(const torch::Tensor& in, torch::Tensor& out) override {
    LETHE_CHECK(out.numel() == in.numel() * size_, "all_gather: output must hold size() blocks");
    return start(in, out, [&] {
      NCCL_CHECK(ncclAllGather(in.data_ptr(), out.data_ptr(), size_t(in.numel()), nccl_type(in), comm_, stream_));
    });
  }
  std::unique_ptr<PendingCollective> start_reduce_scatter(const torch::Tensor& in, torch::Tensor& out,
                                                          ReduceOp op) override {
    LETHE_CHECK(in.numel() == out.numel() * size_, "reduce_scatter: input must hold size() blocks");
    return start(in, out, [&] {
      NCCL_CHECK(ncclReduceScatter(in.data_ptr(), out.data_ptr(), size_t(out.numel()), nccl_type(in), red(op), comm_,
                                   stream_));
    });
  }
  bool overlaps_compute() const override { return true; }

  void broadcast(torch::Tensor& t, int root) override {
    run("broadcast", t, [&] {
      NCCL_CHECK(ncclBroadcast(t.data_ptr(), t.data_ptr(), size_t(t.numel()), nccl_type(t), root, comm_, stream_));
    });
  }
  void barrier() override {
    auto t = torch::zeros({1}, torch::TensorOptions().device(torch::kCUDA, device_));
    all_reduce(t, ReduceOp::Sum);
  }
  std::unique_ptr<Communicator> split(int color, int key, const std::string& name) override {
#if defined(NCCL_VERSION_CODE) && NCCL_VERSION_CODE >= NCCL_VERSION(2, 18, 0)
    ncclComm_t sub = nullptr;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    NCCL_CHECK(ncclCommSplit(comm_, color, key, &sub, &config));
    return std::unique_ptr<Communicator>(new NcclCommunicator(sub, device_, name));
#else
    (void)color;
    (void)key;
    throw InternalError("NCCL communicator '" + name + "': splitting needs NCCL >= 2.18 (ncclCommSplit)");
#endif
  }
  [[noreturn]] void abort(const std::string& why) override {
    spdlog::critical("rank {}: {}; aborting the NCCL communicator and the job", world_rank_, why);
    spdlog::default_logger()->flush();
    if (comm_) ncclCommAbort(comm_);
    comm_ = nullptr;
    abort_job(3);
  }

 private:
  static ncclRedOp_t red(ReduceOp op) { return op == ReduceOp::Sum ? ncclSum : ncclAvg; }

  cudaStream_t compute_stream() const {
#ifdef LETHE_TORCH_CUDA
    return c10::cuda::getCurrentCUDAStream(device_).stream();
#else
    return cudaStreamPerThread;
#endif
  }

  template <typename F>
  std::unique_ptr<PendingCollective> start(const torch::Tensor& in, torch::Tensor& out, F&& issue) {
    LETHE_CHECK(in.is_cuda() && out.is_cuda() && in.is_contiguous() && out.is_contiguous(),
                "NCCL communicator needs contiguous CUDA tensors");
    auto p = std::make_unique<Pending>(*this, in, out);
    CUDA_CHECK(cudaEventCreateWithFlags(&p->event, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventRecord(ready_, compute_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    NCCL_CHECK(ncclGroupStart());
    issue();
    NCCL_CHECK(ncclGroupEnd());
    wait_ready("enqueueing a collective");  // non-blocking: on the stream only once the state is ncclSuccess
    CUDA_CHECK(cudaEventRecord(p->event, stream_));
    p->started = true;
    return p;
  }

  template <typename F>
  void run(const char* what, const torch::Tensor& t, F&& issue) {
    LETHE_CHECK(t.is_cuda() && t.is_contiguous(), "NCCL communicator needs contiguous CUDA tensors");
    CUDA_CHECK(cudaEventRecord(ready_, compute_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    NCCL_CHECK(ncclGroupStart());
    issue();
    NCCL_CHECK(ncclGroupEnd());
    wait_ready(what);  // non-blocking: on the stream only once the state is ncclSuccess
    CUDA_CHECK(cudaEventRecord(done_, stream_));
    CUDA_CHECK(cudaStreamWaitEvent(compute_stream(), done_, 0));
    wait_done(what);
  }

  void wait_ready(const char* what) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t st;
      NCCL_CHECK(ncclCommGetAsyncError(comm_, &st));
      if (st == ncclSuccess) return;
      if (st != ncclInProgress) abort(std::string(what) + " failed: " + ncclGetErrorString(st));
      check_deadline(t0, what);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  void wait_done(const char* what) { wait_event(done_, what); }

  void wait_event(cudaEvent_t event, const char* what) {
    auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      cudaError_t q = cudaEventQuery(event);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) abort(std::string(what) + ": " + cudaGetErrorString(q));
      ncclResult_t st;
      NCCL_CHECK(ncclCommGetAsyncError(comm_, &st));
      if (st != ncclSuccess && st != ncclInProgress) abort(std::string(what) + " failed: " + ncclGetErrorString(st));
      check_deadline(t0, what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  void check_deadline(std::chrono::steady_clock::time_point t0, const char* what) {
    double limit = process_deadline().seconds();
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > limit)
      abort("collective " + std::string(what) + " on NCCL communicator '" + name_ + "' did not complete within " +
            fmt::format("{:g}", limit) + " s");
  }

  // A started collective: the event recorded after it on the communication stream, and the
  // tensors it reads and writes.
  struct Pending : PendingCollective {
    Pending(NcclCommunicator& c, torch::Tensor i, torch::Tensor o) : comm(c), in(std::move(i)), out(std::move(o)) {}
    ~Pending() override {
      try {
        wait();
      } catch (...) {  // CUDA failed: the job is going down; never throw from a destructor
      }
      if (event) cudaEventDestroy(event);
    }
    void wait() override {
      if (!started) return;
      started = false;
      CUDA_CHECK(cudaStreamWaitEvent(comm.compute_stream(), event, 0));
      comm.wait_event(event, "collective started early");
    }
    NcclCommunicator& comm;
    torch::Tensor in, out;
    cudaEvent_t event = nullptr;
    bool started = false;
  };

  std::string name_;
  int rank_ = 0, size_ = 1, device_ = 0, world_rank_ = 0;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr, done_ = nullptr;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& bootstrap, int device, const std::string& name) {
  return std::make_unique<NcclCommunicator>(bootstrap, device, name);
}

}  // namespace lethe
