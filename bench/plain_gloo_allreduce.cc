// plain_gloo_allreduce: the baseline for collective_bench --backend gloo --op all_reduce. A plain Gloo
// program (no gradflow but, with --loop-sched batch, its helper that sets the policy of Gloo's
// event-loop thread, distributed/gloo/loop_thread.h) that times Gloo's ring all-reduce (f32 sum, separate input and output buffers)
// over the same sizes, with the same timing method and the same output (collective_sweep.h).
//
//   mpirun -np 2 build/bin/plain_gloo_allreduce --store-dir DIR --min-bytes 4 --max-bytes 64M
//       [--iters 20] [--warmup 5] [--iters-bytes B] [--json] [--loop-sched normal|batch]
//
// mpirun only launches the processes: the rank and size come from OMPI_COMM_WORLD_RANK and
// OMPI_COMM_WORLD_SIZE, the rendezvous goes through gloo::rendezvous::FileStore in DIR (a fresh directory
// per run), and the ranks talk over Gloo's TCP transport on 127.0.0.1 (one machine).
//
// First untimed all-reduces at the largest size, then at the smallest, as nccl-tests does. Per size:
// `warmup` untimed all-reduces, gloo::barrier, `iters` timed all-reduces back to back; the number reported
// is the largest over ranks of the average per call (a Gloo all-reduce max, after the timed region). The
// buffers are allocated once, for the largest size, and filled with ones.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/collective_sweep.h"
#include "distributed/gloo/loop_thread.h"
#include "gloo/allreduce.h"
#include "gloo/barrier.h"
#include "gloo/math.h"
#include "gloo/rendezvous/context.h"
#include "gloo/rendezvous/file_store.h"
#include "gloo/transport/tcp/device.h"

namespace {

using Clock = std::chrono::steady_clock;
using ReduceFn = void (*)(void*, const void*, const void*, size_t);
constexpr char kProgram[] = "plain_gloo_allreduce";

void allreduce_sum(const std::shared_ptr<gloo::Context>& context, float* in, float* out, size_t count) {
  gloo::AllreduceOptions opts(context);
  opts.setAlgorithm(gloo::AllreduceOptions::Algorithm::RING);
  opts.setInput(in, count);
  opts.setOutput(out, count);
  opts.setReduceFunction(static_cast<ReduceFn>(&gloo::sum<float>));
  gloo::allreduce(opts);
}

double slowest(const std::shared_ptr<gloo::Context>& context, double mine) {
  gloo::AllreduceOptions opts(context);
  opts.setOutput(&mine, 1);
  opts.setReduceFunction(static_cast<ReduceFn>(&gloo::max<double>));
  gloo::allreduce(opts);
  return mine;
}

double time_allreduce(const std::shared_ptr<gloo::Context>& context, float* in, float* out, size_t count,
                      gradflow_bench::Repeats repeats) {
  for (int i = 0; i < repeats.warmup; ++i) allreduce_sum(context, in, out, count);
  gloo::BarrierOptions barrier(context);
  gloo::barrier(barrier);
  Clock::time_point start = Clock::now();
  for (int i = 0; i < repeats.iters; ++i) allreduce_sum(context, in, out, count);
  double mine = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / repeats.iters;
  return slowest(context, mine);
}

// OMPI_COMM_WORLD_RANK / _SIZE; -1 when unset or malformed.
int env_int(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return -1;
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  return *end == '\0' && v >= 0 && v < (1 << 20) ? static_cast<int>(v) : -1;
}

int run(int argc, char** argv) {
  gradflow_bench::SweepFlags flags;
  if (!gradflow_bench::parse_sweep_flags(argc, argv, kProgram, {"--store-dir", "--loop-sched"}, &flags)) return 2;
  if (!flags.extra.contains("--store-dir")) {
    std::fprintf(stderr, "%s: --store-dir: required (the FileStore directory for the rendezvous)\n", kProgram);
    return 2;
  }
  int rank = env_int("OMPI_COMM_WORLD_RANK"), size = env_int("OMPI_COMM_WORLD_SIZE");
  if (rank < 0 || size < 1 || rank >= size) {
    std::fprintf(stderr, "%s: run under mpirun (OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE unset or invalid)\n",
                 kProgram);
    return 2;
  }
  std::filesystem::create_directories(flags.extra["--store-dir"]);
  gloo::rendezvous::FileStore store(flags.extra["--store-dir"]);
  gloo::transport::tcp::attr attr;
  attr.hostname = "127.0.0.1";
  std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
  auto context = std::make_shared<gloo::rendezvous::Context>(rank, size);
  context->setTimeout(std::chrono::minutes(2));
  context->connectFullMesh(store, device);
  // --loop-sched batch: Gloo's event-loop thread at SCHED_BATCH, as gradflow runs it (docs/distributed.md).
  std::string loop_sched = flags.extra.contains("--loop-sched") ? flags.extra["--loop-sched"] : "normal";
  if (loop_sched == "batch") {
    if (int error = gradflow::distributed::set_gloo_loop_thread_batch(*device, std::chrono::seconds(30))) {
      std::fprintf(stderr, "%s: --loop-sched batch: %s\n", kProgram, std::strerror(error));
      return 1;
    }
  } else if (loop_sched != "normal") {
    std::fprintf(stderr, "%s: --loop-sched \"%s\": must be batch or normal\n", kProgram, loop_sched.c_str());
    return 2;
  }

  std::vector<float> in(flags.max_bytes / 4, 1.0f), out(flags.max_bytes / 4);
  for (int64_t bytes : gradflow_bench::settle_sizes(flags)) {
    if (bytes / 4 == 0) continue;
    for (int i = 0; i < gradflow_bench::repeats_for(flags, bytes / 4 * 4).warmup; ++i) {
      allreduce_sum(context, in.data(), out.data(), bytes / 4);
    }
  }
  bool header = false;
  for (int64_t bytes : gradflow_bench::sweep_sizes(flags)) {
    int64_t count = bytes / 4;
    if (count == 0) continue;
    gradflow_bench::Repeats repeats = gradflow_bench::repeats_for(flags, count * 4);
    double time_us = time_allreduce(context, in.data(), out.data(), count, repeats);
    gradflow_bench::Row row{.program = kProgram,
                            .backend = "gloo",
                            .op = "all_reduce",
                            .ranks = size,
                            .size = count * 4,
                            .count = count,
                            .type = "f32",
                            .warmup = repeats.warmup,
                            .iters = repeats.iters,
                            .time_us = time_us};
    if (rank != 0) continue;
    if (!header) gradflow_bench::print_header(flags, row), header = true;
    gradflow_bench::print_row(flags, row);
  }
  gloo::BarrierOptions barrier(context);
  gloo::barrier(barrier);  // nobody closes its connections while a peer still reads the last result
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 1;
  }
}
