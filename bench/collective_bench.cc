// collective_bench: times gradflow's collectives (distributed/comm/communicator.h) over a sweep of sizes,
// as nccl-tests times NCCL's, and prints the same columns. Runs as one rank of a job (under mpirun, gfrun
// or srun); the job comes from the launcher's environment through cluster::resolve_job.
//
//   mpirun -np 2 build/bin/collective_bench --backend mpi --op all_reduce --min-bytes 8 --max-bytes 64M
//   collective_bench --backend mpi|gloo|nccl --op all_reduce|all_gather|reduce_scatter|broadcast
//       [--min-bytes 8] [--max-bytes 64M] [--iters 20] [--warmup 5] [--iters-bytes B]
//       [--dtype f32|f64|f16|bf16|i32|i64] [--json] [--store-dir DIR] [--in-place yes|no|blocking]
//
// --store-dir: a directory every rank can reach, for the FileStore (rendezvous and failure notices);
// required for gloo and nccl, optional for mpi. nccl uses the GPU cluster::JobInfo::gpu names.
// --iters-bytes: fewer timed ops for big sizes (collective_sweep.h, repeats_for).
// --in-place yes: all_reduce with AllReduceOptions::in_place (the result overwrites the input, as a
// gradient bucket's does; the sums then grow every op, which does not change the time).
// --in-place blocking: Communicator::all_reduce_in_place, the blocking call without a Work.
//
// Sizes (nccl-tests' convention): sizes double from --min-bytes to --max-bytes; for a size of B bytes and
// elements of E bytes on n ranks:
//   all_reduce, broadcast  the input (= output) holds B / E elements; size(B) = its bytes, count = B / E
//   all_gather             each rank's input holds B / E / n elements (rounded down); size(B) = the
//                          output's bytes (n inputs), count = the per-rank input's elements
//   reduce_scatter         the input holds n * (B / E / n) elements; size(B) = the input's bytes,
//                          count = each rank's output elements
// A size too small to give every rank an element is skipped. Reductions are sums; broadcast's root is 0.
//
// Timing: first untimed ops at the largest size, then at the smallest, as nccl-tests does. Then per size:
// `warmup` untimed ops, a barrier, then `iters` ops back to back, each one's result() waited before the
// next is called (as a training step does); the time per op is the average over the timed ops, and the
// number reported is the largest over ranks (one all_reduce max through the same communicator, after the
// timed region). The input is made once per size with full() and passed to every op: tensors are values,
// so each op returns a new output and leaves the input as it was.
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "bench/collective_sweep.h"
#include "cluster/environment.h"
#include "core/tensor/creation.h"
#include "distributed/comm/communicator.h"
#include "distributed/store/file_store.h"

namespace gradflow::distributed {
namespace {

using Clock = std::chrono::steady_clock;
using gradflow_bench::Repeats;
using gradflow_bench::SweepFlags;

constexpr char kProgram[] = "collective_bench";

enum class Op { kAllReduce, kAllGather, kReduceScatter, kBroadcast };
constexpr const char* kOpNames[] = {"all_reduce", "all_gather", "reduce_scatter", "broadcast"};

// One size of the sweep in nccl-tests' terms (see the top comment).
struct OpSize {
  int64_t count;           // the count column
  int64_t size;            // the size(B) column
  int64_t input_elements;  // what each rank passes in
};

OpSize op_size(Op op, int64_t bytes, int64_t element, int ranks) {
  int64_t elements = bytes / element;
  if (op == Op::kAllGather || op == Op::kReduceScatter) {
    int64_t per_rank = elements / ranks;
    return {per_rank, per_rank * ranks * element, op == Op::kAllGather ? per_rank : per_rank * ranks};
  }
  return {elements, elements * element, elements};
}

enum class InPlace { kNo, kYes, kBlocking };

// One op, waited for.
void run_once(Communicator& comm, Op op, const Tensor& input, InPlace in_place) {
  switch (op) {
    case Op::kAllReduce:
      if (in_place == InPlace::kBlocking) return comm.all_reduce_in_place(input);
      comm.all_reduce({input}, {.in_place = in_place == InPlace::kYes})->result();
      return;
    case Op::kAllGather: comm.all_gather(input)->result(); return;
    case Op::kReduceScatter: comm.reduce_scatter(input)->result(); return;
    case Op::kBroadcast: comm.broadcast({input})->result(); return;
  }
}

// The slowest rank's average microseconds per op.
double time_op(Communicator& comm, Op op, const Tensor& input, InPlace in_place, Repeats repeats, Device device) {
  for (int i = 0; i < repeats.warmup; ++i) run_once(comm, op, input, in_place);
  comm.barrier()->wait();
  Clock::time_point start = Clock::now();
  for (int i = 0; i < repeats.iters; ++i) run_once(comm, op, input, in_place);
  double mine = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / repeats.iters;
  Tensor slowest = comm.all_reduce({full({1}, mine, kF64, device)}, {.op = ReduceOp::kMax})->result()[0];
  return slowest.item<double>();
}

struct Settings {
  Backend backend = Backend::kMpi;
  Op op = Op::kAllReduce;
  DType dtype = kF32;
  std::string store_dir;
  InPlace in_place = InPlace::kNo;
};

bool bad_flag(const std::string& message) {
  std::fprintf(stderr, "%s: %s\n", kProgram, message.c_str());
  return false;
}

// The program's own flags, checked; false (after a message naming the flag) when one is wrong.
bool parse_settings(const SweepFlags& flags, Settings* settings) {
  auto get = [&](const char* name, const char* fallback) {
    auto it = flags.extra.find(name);
    return it == flags.extra.end() ? std::string(fallback) : it->second;
  };
  std::string backend = get("--backend", "mpi"), op = get("--op", "all_reduce"), dtype = get("--dtype", "f32");
  if (backend == "mpi") settings->backend = Backend::kMpi;
  else if (backend == "gloo") settings->backend = Backend::kGloo;
  else if (backend == "nccl") settings->backend = Backend::kNccl;
  else return bad_flag("--backend: expected mpi, gloo or nccl, got \"" + backend + "\"");
  bool found = false;
  for (int i = 0; i < 4; ++i) {
    if (op == kOpNames[i]) settings->op = static_cast<Op>(i), found = true;
  }
  if (!found) return bad_flag("--op: expected all_reduce, all_gather, reduce_scatter or broadcast, got \"" + op + "\"");
  found = false;
  for (DType d : {kF32, kF64, kF16, kBF16, kI32, kI64}) {
    if (dtype == dtype_name(d)) settings->dtype = d, found = true;
  }
  if (!found) return bad_flag("--dtype: expected f32, f64, f16, bf16, i32 or i64, got \"" + dtype + "\"");
  std::string in_place = get("--in-place", "no");
  if (in_place != "yes" && in_place != "no" && in_place != "blocking") {
    return bad_flag("--in-place: expected yes, no or blocking, got \"" + in_place + "\"");
  }
  settings->in_place = in_place == "yes" ? InPlace::kYes : in_place == "blocking" ? InPlace::kBlocking : InPlace::kNo;
  if (settings->in_place != InPlace::kNo && settings->op != Op::kAllReduce) {
    return bad_flag("--in-place " + in_place + ": only with --op all_reduce");
  }
  settings->store_dir = get("--store-dir", "");
  if (settings->store_dir.empty() && settings->backend != Backend::kMpi) {
    return bad_flag("--store-dir: required for --backend " + backend + " (its rendezvous goes through a FileStore)");
  }
  return true;
}

// Runs the sweep; rank 0 prints.
void sweep(Communicator& comm, const SweepFlags& flags, const Settings& settings, Device device) {
  const int64_t element = static_cast<int64_t>(dtype_size(settings.dtype));
  for (int64_t bytes : gradflow_bench::settle_sizes(flags)) {
    OpSize s = op_size(settings.op, bytes, element, comm.size());
    if (s.count == 0) continue;
    Tensor input = full({s.input_elements}, 1.0, settings.dtype, device);
    int warmup = gradflow_bench::repeats_for(flags, s.size).warmup;
    for (int i = 0; i < warmup; ++i) run_once(comm, settings.op, input, settings.in_place);
  }
  bool header = false;
  for (int64_t bytes : gradflow_bench::sweep_sizes(flags)) {
    OpSize s = op_size(settings.op, bytes, element, comm.size());
    if (s.count == 0) continue;
    Repeats repeats = gradflow_bench::repeats_for(flags, s.size);
    Tensor input = full({s.input_elements}, 1.0, settings.dtype, device);
    double time_us = time_op(comm, settings.op, input, settings.in_place, repeats, device);
    gradflow_bench::Row row{.program = kProgram,
                            .backend = std::string(backend_name(settings.backend)),
                            .op = kOpNames[static_cast<int>(settings.op)],
                            .ranks = comm.size(),
                            .size = s.size,
                            .count = s.count,
                            .type = std::string(dtype_name(settings.dtype)),
                            .warmup = repeats.warmup,
                            .iters = repeats.iters,
                            .time_us = time_us};
    if (comm.rank() != 0) continue;
    if (!header) gradflow_bench::print_header(flags, row), header = true;
    gradflow_bench::print_row(flags, row);
  }
}

int run(int argc, char** argv) {
  SweepFlags flags;
  Settings settings;
  if (!gradflow_bench::parse_sweep_flags(argc, argv, kProgram, {"--backend", "--op", "--dtype", "--store-dir", "--in-place"},
                                         &flags) ||
      !parse_settings(flags, &settings)) {
    return 2;
  }
  absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(cluster::current_environment());
  if (!job.ok()) {
    std::fprintf(stderr, "%s: %s\n", kProgram, job.status().ToString().c_str());
    return 2;
  }
  Device device = kCPU;
  if (settings.backend == Backend::kNccl) {
    if (job->gpu < 0) {
      std::fprintf(stderr, "%s: --backend nccl: rank %d has no GPU (cluster::JobInfo::gpu is %d: "
                   "CUDA_VISIBLE_DEVICES hides every device)\n", kProgram, job->rank, job->gpu);
      return 2;
    }
    device = Device::cuda(job->gpu);
  }
  std::shared_ptr<Store> store;
  if (!settings.store_dir.empty()) {
    auto file_store = FileStore::create({.path = settings.store_dir, .timeout = std::chrono::seconds(120)});
    if (!file_store.ok()) {
      std::fprintf(stderr, "%s: --store-dir %s: %s\n", kProgram, settings.store_dir.c_str(),
                   file_store.status().ToString().c_str());
      return 2;
    }
    store = std::move(*file_store);
  }
  bool mpi_launched = job->source == cluster::JobSource::kOpenMpi || job->source == cluster::JobSource::kPmix ||
                      job->source == cluster::JobSource::kSlurm;
  bool one_node = job->local_size == job->world_size;  // Gloo then stays on the loopback interface
  std::unique_ptr<Communicator> comm = create_communicator({.backend = settings.backend,
                                                            .rank = job->rank,
                                                            .size = job->world_size,
                                                            .store = std::move(store),
                                                            .timeout = std::chrono::minutes(2),
                                                            .mpi_launched = mpi_launched,
                                                            .mpi_thread_single = job->mpi_thread_single,
                                                            .gloo_loop_batch = job->gloo_loop_batch,
                                                            .shared_memory = job->shared_memory,
                                                            .cuda_device = job->gpu,
                                                            .address = one_node ? "127.0.0.1" : ""});
  if (comm->rank() == 0) std::fprintf(stderr, "%s: transport %s\n", kProgram, comm->transport().c_str());
  sweep(*comm, flags, settings, device);
  comm->barrier()->wait();  // nobody tears down while a peer still reads its last result
  return 0;
}

}  // namespace
}  // namespace gradflow::distributed

int main(int argc, char** argv) {
  try {
    return gradflow::distributed::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", gradflow::distributed::kProgram, e.what());
    return 1;
  }
}
