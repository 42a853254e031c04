// plain_mpi_allreduce: the baseline for collective_bench --backend mpi --op all_reduce. A plain MPI program
// (no gradflow) that times MPI_Allreduce (f32 sum, separate send and receive buffers) over the same sizes,
// with the same timing method and the same output (collective_sweep.h).
//
//   mpirun -np 2 build/bin/plain_mpi_allreduce --min-bytes 4 --max-bytes 64M [--iters 20] [--warmup 5]
//       [--iters-bytes B] [--json] [--thread-level single|serialized] [--in-place yes|no]
//
// --thread-level: what MPI_Init_thread asks for (default single, a plain program's MPI_Init). gradflow's
// MPI engine runs at serialized (its progress thread may call MPI), which Open MPI makes slower for
// small messages by itself; the serialized baseline shows what the framework adds on top of that.
// --in-place yes: MPI_IN_PLACE (the receive buffer is also the input), the baseline for gradflow's
// in-place all-reduces.
//
// First untimed calls at the largest size, then at the smallest, as nccl-tests does. Per size: `warmup`
// untimed MPI_Allreduce calls, MPI_Barrier, `iters` timed calls back to back; the number reported is the
// largest over ranks of the average per call (MPI_Allreduce with MPI_MAX, after the timed region). The
// buffers are allocated once, for the largest size, and filled with ones.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/collective_sweep.h"

namespace {

using Clock = std::chrono::steady_clock;

// send is MPI_IN_PLACE for an in-place run.
double time_allreduce(const void* send, float* recv, int count, gradflow_bench::Repeats repeats) {
  for (int i = 0; i < repeats.warmup; ++i) MPI_Allreduce(send, recv, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Barrier(MPI_COMM_WORLD);
  Clock::time_point start = Clock::now();
  for (int i = 0; i < repeats.iters; ++i) MPI_Allreduce(send, recv, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  double mine = std::chrono::duration<double, std::micro>(Clock::now() - start).count() / repeats.iters;
  double slowest = 0;
  MPI_Allreduce(&mine, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest;
}

}  // namespace

int main(int argc, char** argv) {
  constexpr char kProgram[] = "plain_mpi_allreduce";
  gradflow_bench::SweepFlags flags;
  if (!gradflow_bench::parse_sweep_flags(argc, argv, kProgram, {"--thread-level", "--in-place"}, &flags)) return 2;
  const std::string level = flags.extra.count("--thread-level") ? flags.extra["--thread-level"] : "single";
  if (level != "single" && level != "serialized") {
    std::fprintf(stderr, "%s: --thread-level: expected single or serialized, got \"%s\"\n", kProgram, level.c_str());
    return 2;
  }
  const std::string in_place = flags.extra.count("--in-place") ? flags.extra["--in-place"] : "no";
  if (in_place != "yes" && in_place != "no") {
    std::fprintf(stderr, "%s: --in-place: expected yes or no, got \"%s\"\n", kProgram, in_place.c_str());
    return 2;
  }
  if (flags.max_bytes / 4 > (int64_t{1} << 30)) {
    std::fprintf(stderr, "%s: --max-bytes: at most 4G (MPI counts are ints)\n", kProgram);
    return 2;
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, level == "single" ? MPI_THREAD_SINGLE : MPI_THREAD_SERIALIZED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<float> send(flags.max_bytes / 4, 1.0f), recv(flags.max_bytes / 4);
  for (int64_t bytes : gradflow_bench::settle_sizes(flags)) {
    if (bytes / 4 == 0) continue;
    for (int i = 0; i < gradflow_bench::repeats_for(flags, bytes / 4 * 4).warmup; ++i) {
      MPI_Allreduce(send.data(), recv.data(), static_cast<int>(bytes / 4), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
  }
  bool header = false;
  for (int64_t bytes : gradflow_bench::sweep_sizes(flags)) {
    int count = static_cast<int>(bytes / 4);
    if (count == 0) continue;
    gradflow_bench::Repeats repeats = gradflow_bench::repeats_for(flags, int64_t{count} * 4);
    const void* input = in_place == "yes" ? MPI_IN_PLACE : static_cast<const void*>(send.data());
    double time_us = time_allreduce(input, recv.data(), count, repeats);
    gradflow_bench::Row row{.program = kProgram,
                            .backend = "mpi",
                            .op = "all_reduce",
                            .ranks = size,
                            .size = int64_t{count} * 4,
                            .count = count,
                            .type = "f32",
                            .warmup = repeats.warmup,
                            .iters = repeats.iters,
                            .time_us = time_us};
    if (rank != 0) continue;
    if (!header) gradflow_bench::print_header(flags, row), header = true;
    gradflow_bench::print_row(flags, row);
  }
  MPI_Finalize();
  return 0;
}
