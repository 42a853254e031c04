// One rank of a multi-process communicator test, started by tests/distributed/run_ranks.sh under real
// `mpirun -np N` (which only launches the processes when --backend gloo). The job's layout comes from
// the launcher's environment through cluster/, as in a real job.
//
//   comm_rank_test --backend mpi|gloo --store-dir DIR --expect-size N --scenario S [--no-store 1]
//                  [--hosts H]
// (--no-store 1: MPI builds its own store, as in a job started by plain mpirun. --hosts H: rank r says it
// is on host r % H, CommunicatorOptions::shared_memory_host, so all-reduces are hierarchical.)
//
// Scenarios:
//   ops           every op, dtype, reduce op and size (collective_checks.h), plus 64 MiB all-reduces
//   never-calls   the last rank never calls the all_reduce the others start with a 2 s timeout
//   dies          rank 1 exits (status 0, as if the program just ended) while the others all-reduce
//   mismatch      debug mode: rank 0 calls all_reduce, rank 1 broadcast, with other shapes
// Every rank prints "rank R: ..." and exits 0 when what it saw is what the scenario expects; the script
// checks exit codes, timing and the messages.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include "cluster/environment.h"
#include "distributed/comm/communicator.h"
#include "distributed/store/file_store.h"
#include "tests/distributed/collective_checks.h"

namespace gradflow::distributed {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Communicator> g_comm;
bool g_thread_single = false;  // GRADFLOW_MPI_THREAD_LEVEL=single on the MPI backend
bool g_shared_memory = true;   // GRADFLOW_SHARED_MEMORY is not 0
int g_hosts = 0;               // --hosts

TEST(MultiProcess, EveryOpDtypeReduceOpAndSize) { testing::check_everything(*g_comm); }
// At MPI_THREAD_SINGLE every op runs on the calling thread: an async one has completed on return.
TEST(MultiProcess, AsyncOpsRunInlineAtThreadSingle) {
  if (!g_thread_single) GTEST_SKIP() << "GRADFLOW_MPI_THREAD_LEVEL is not single";
  WorkPtr work = g_comm->all_reduce({full({5}, 1.0 + g_comm->rank(), kF32)}, {.async_op = true});
  EXPECT_TRUE(work->completed());
  double expected = g_comm->size() * (g_comm->size() + 1) / 2.0;
  EXPECT_EQ(work->result()[0].to_vector<float>(), std::vector<float>(5, static_cast<float>(expected)));
}

// All ranks run on this machine: all-reduces go through shared memory unless it was turned off.
// With --hosts, hierarchically.
TEST(MultiProcess, TransportIsSharedMemoryUnlessTurnedOff) {
  const bool shared = g_comm->transport().find("shared memory") != std::string::npos;
  EXPECT_EQ(shared, g_shared_memory) << g_comm->transport();
  const bool hierarchical = g_comm->transport().find(str_cat("within each of ", g_hosts, " hosts")) != std::string::npos;
  EXPECT_EQ(hierarchical, g_shared_memory && g_hosts > 1) << g_comm->transport();
}

TEST(MultiProcess, AllReduceLarge) {
  testing::check_all_reduce_large(*g_comm, (int64_t{1} << 20) + 3);
  testing::check_all_reduce_large(*g_comm, int64_t{16} << 20);  // 64 MiB of f32
}

// Runs op, which must fail with a CollectiveError whose message holds `expect`; returns 0 when it did.
template <typename Op>
int expect_failure(int rank, Op op, const std::string& expect, Timeout within) {
  Clock::time_point start = Clock::now();
  try {
    op();
  } catch (const CollectiveError& e) {
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    std::printf("rank %d: failed after %lld ms: %s\n", rank, static_cast<long long>(took.count()), e.what());
    std::fflush(stdout);
    if (std::string(e.what()).find(expect) == std::string::npos) {
      std::printf("rank %d: FAIL: the message lacks \"%s\"\n", rank, expect.c_str());
      return 1;
    }
    if (took > within) {
      std::printf("rank %d: FAIL: took longer than %lld ms\n", rank, static_cast<long long>(within.count()));
      return 1;
    }
    return 0;
  }
  std::printf("rank %d: FAIL: the op succeeded\n", rank);
  return 1;
}

int run_scenario(const std::string& scenario, Communicator& comm) {
  int rank = comm.rank(), last = comm.size() - 1;
  comm.barrier()->wait();
  if (scenario == "never-calls") {
    if (rank == last) {
      std::this_thread::sleep_for(4s);
      return expect_failure(rank, [&] { comm.barrier()->wait(); }, "did not arrive", 1s);
    }
    return expect_failure(rank, [&] { comm.all_reduce({full({4}, 1.0)}, {.timeout = 2s})->wait(); },
                          str_cat("ranks that did not arrive: ", last, " (last started #1 barrier)"), 10s);
  }
  if (scenario == "dies") {
    if (rank == 1) {
      std::this_thread::sleep_for(300ms);
      std::printf("rank 1: exiting mid-job\n");
      std::fflush(stdout);
      ::_exit(0);
    }
    // Through shared memory the waiting ranks see the process gone; otherwise rank 0 declares it dead
    // when its heartbeat stops (5 s).
    return expect_failure(rank, [&] { comm.all_reduce({full({1 << 16}, 1.0)}, {.timeout = 60s})->wait(); },
                          "ranks that did not arrive: 1", g_shared_memory ? 3s : 15s);
  }
  if (scenario == "mismatch") {
    comm.all_reduce({full({2}, 1.0)})->wait();
    return expect_failure(
        rank,
        [&] {
          if (rank == 0) {
            comm.all_reduce({zeros({128, 10})})->wait();
          } else {
            comm.broadcast({zeros({784, 128})})->wait();
          }
        },
        "rank 1 called broadcast([784,128] f32, root 0) while rank 0 called all_reduce([128,10] f32, sum)", 10s);
  }
  std::printf("unknown scenario %s\n", scenario.c_str());
  return 2;
}

}  // namespace
}  // namespace gradflow::distributed

int main(int argc, char** argv) {
  using namespace gradflow::distributed;
  ::testing::InitGoogleTest(&argc, argv);
  std::string backend = "mpi", store_dir, scenario = "ops";
  int expect_size = -1;
  bool use_store = true;
  int hosts = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--backend") backend = argv[i + 1];
    else if (flag == "--store-dir") store_dir = argv[i + 1];
    else if (flag == "--expect-size") expect_size = std::atoi(argv[i + 1]);
    else if (flag == "--scenario") scenario = argv[i + 1];
    else if (flag == "--no-store") use_store = std::string(argv[i + 1]) != "1";
    else if (flag == "--hosts") hosts = std::atoi(argv[i + 1]);
    else {
      std::fprintf(stderr, "comm_rank_test: unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  absl::StatusOr<gradflow::cluster::JobInfo> job = gradflow::cluster::resolve_job(gradflow::cluster::current_environment());
  if (!job.ok()) {
    std::fprintf(stderr, "comm_rank_test: %s\n", job.status().ToString().c_str());
    return 2;
  }
  if (job->world_size != expect_size) {
    std::fprintf(stderr, "comm_rank_test: started as %d ranks, the test needs %d\n", job->world_size, expect_size);
    return 2;
  }
  auto store = FileStore::create({.path = store_dir, .timeout = std::chrono::seconds(60)});
  if (!store.ok()) {
    std::fprintf(stderr, "comm_rank_test: %s\n", store.status().ToString().c_str());
    return 2;
  }
  CommunicatorOptions options{.backend = parse_backend(backend),
                              .rank = job->rank,
                              .size = job->world_size,
                              .store = use_store ? std::shared_ptr<Store>(std::move(*store)) : nullptr,
                              .timeout = std::chrono::seconds(60),
                              .debug = scenario == "mismatch",
                              .mpi_thread_single = job->mpi_thread_single,
                              .shared_memory = job->shared_memory,
                              .shared_memory_host = hosts > 0 ? gradflow::str_cat("host", job->rank % hosts) : "",
                              .address = "127.0.0.1"};
  g_shared_memory = job->shared_memory;
  g_hosts = hosts;
  g_thread_single = job->mpi_thread_single && backend == "mpi";
  g_comm = create_communicator(options);
  int status = scenario == "ops" ? RUN_ALL_TESTS() : run_scenario(scenario, *g_comm);
  if (status == 0) g_comm.reset();  // a failed rank leaves at once: its peers may be stuck in an op
  std::printf("rank %d: exit %d\n", job->rank, status);
  std::fflush(stdout);
  if (status != 0) ::_exit(status);
  return 0;
}
