// The communicator with N ranks as N threads in one process, over Gloo (TCP between the threads) with a
// TcpStore or a FileStore for the rendezvous: every op, dtype, reduce op and size, then the failure cases
// (a rank that never calls, mismatched collectives in debug mode), which must end fast with the error
// the issue describes on every rank.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <functional>
#include <thread>

#include "distributed/comm/communicator.h"
#include "distributed/comm/job.h"
#include "distributed/comm/routing_communicator.h"
#include "distributed/store/file_store.h"
#include "distributed/store/tcp_store.h"
#include "tests/distributed/collective_checks.h"

namespace gradflow::distributed {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

enum class StoreKind { kTcp, kFile };

class World {
 public:
  World(int size, StoreKind kind) : size_(size) {
    std::string pattern = (std::filesystem::temp_directory_path() / "gradflow_comm_XXXXXX").string();
    EXPECT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    for (int rank = 0; rank < size; ++rank) {
      if (kind == StoreKind::kFile) {
        stores_.push_back(*FileStore::create({.path = dir_, .timeout = 30s, .poll_interval = 2ms}));
      } else {
        auto store = TcpStore::create({.port = port_, .is_server = rank == 0, .job_token = "t", .timeout = 30s});
        EXPECT_TRUE(store.ok()) << store.status();
        if (rank == 0) port_ = (*store)->port();
        stores_.push_back(std::move(*store));
      }
    }
  }
  ~World() { std::filesystem::remove_all(dir_); }

  // Runs body(comm) on one thread per rank, each with its own Gloo communicator.
  std::unique_ptr<Communicator> make(int rank, CommunicatorOptions o = {.timeout = 60s}) {
    o.backend = Backend::kGloo;
    o.rank = rank;
    o.size = size_;
    o.store = stores_[rank];
    o.address = "127.0.0.1";
    return create_communicator(o);
  }

  // Runs body(rank) on one thread per rank.
  void run_ranks(const std::function<void(int)>& body) {
    std::vector<std::thread> threads;
    for (int rank = 0; rank < size_; ++rank) {
      threads.emplace_back([&, rank] {
        try {
          body(rank);
        } catch (const std::exception& e) {
          ADD_FAILURE() << "rank " << rank << ": " << e.what();
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }

  // A rank that fails an assertion stops calling; the others then fail at the timeout instead of hanging.
  void run(const std::function<void(Communicator&)>& body, CommunicatorOptions base = {.timeout = 60s}) {
    std::vector<std::thread> threads;
    for (int rank = 0; rank < size_; ++rank) {
      threads.emplace_back([&, rank] {
        CommunicatorOptions o = base;
        o.backend = Backend::kGloo;
        o.rank = rank;
        o.size = size_;
        o.store = stores_[rank];
        o.address = "127.0.0.1";
        try {
          std::unique_ptr<Communicator> comm = create_communicator(o);
          body(*comm);
        } catch (const std::exception& e) {
          ADD_FAILURE() << "rank " << rank << ": " << e.what();
        }
      });
    }
    for (std::thread& t : threads) t.join();
  }

 private:
  int size_;
  uint16_t port_ = 0;
  std::string dir_;
  std::vector<std::shared_ptr<Store>> stores_;
};

// (ranks, store, all-reduce through shared memory): the ranks are threads of one process, which shm/
// treats like processes of one host; without shared memory, Gloo does the all-reduces too.
class GlooThreads : public ::testing::TestWithParam<std::tuple<int, StoreKind, bool>> {};

TEST_P(GlooThreads, EveryOpDtypeReduceOpAndSize) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  auto [size, kind, shared_memory] = GetParam();
  World world(size, kind);
  world.run(
      [&](Communicator& comm) {
        EXPECT_EQ(comm.transport(), size > 1 && shared_memory ? "gloo + shared memory" : "gloo");
        testing::check_everything(comm);
      },
      {.timeout = 60s, .shared_memory = shared_memory});
}

INSTANTIATE_TEST_SUITE_P(Sizes, GlooThreads,
                         ::testing::Values(std::make_tuple(1, StoreKind::kFile, true),
                                           std::make_tuple(2, StoreKind::kTcp, true),
                                           std::make_tuple(2, StoreKind::kTcp, false),
                                           std::make_tuple(3, StoreKind::kFile, true),
                                           std::make_tuple(4, StoreKind::kTcp, true),
                                           std::make_tuple(4, StoreKind::kTcp, false)),
                         [](const auto& info) {
                           return str_cat(std::get<0>(info.param), "Ranks",
                                          std::get<1>(info.param) == StoreKind::kTcp ? "Tcp" : "File",
                                          std::get<2>(info.param) ? "" : "NoSharedMemory");
                         });

TEST(GlooThreadsLarge, AllReduce64MiBAndOddSizes) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    testing::check_all_reduce_large(comm, (int64_t{1} << 20) + 3);
    testing::check_all_reduce_large(comm, int64_t{16} << 20);  // 64 MiB of f32
  });
}

// Every part of a shared-memory sum is combined in rank order, whichever rank combines it, so float
// results are bit-identical on every rank and equal ((x0 + x1) + x2) + x3; 600,000 f32 values also cross
// the 1 MiB slot (three pieces).
TEST(SharedMemory, FloatSumsAreInRankOrderAndBitIdenticalOnEveryRank) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  constexpr int kRanks = 4;
  constexpr int64_t kCount = 600'000;
  auto value = [](int rank, int64_t i) {
    uint32_t h = static_cast<uint32_t>(i * 2654435761u) ^ static_cast<uint32_t>(rank * 40503u + 17u);
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    // Built from bits, not arithmetic, so that the compiler cannot fuse it into the sums below: a random
    // sign and mantissa, exponents 2^-8 to 2^-1.
    const uint32_t bits = (h & 0x807fffffu) | ((119u + (h >> 23) % 8u) << 23);
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  };
  World world(kRanks, StoreKind::kTcp);
  world.run([&](Communicator& comm) {
    ASSERT_EQ(comm.transport(), "gloo + shared memory");
    std::vector<float> mine(kCount), expected(kCount);
    for (int64_t i = 0; i < kCount; ++i) {
      mine[i] = value(comm.rank(), i);
      float sum = value(0, i);
      for (int r = 1; r < kRanks; ++r) sum += value(r, i);
      expected[i] = sum;
    }
    Tensor blocking = from_vector<float>(mine, {kCount});
    comm.all_reduce_in_place(blocking);
    Tensor through_work = comm.all_reduce({from_vector<float>(mine, {kCount})})->result()[0];
    for (const Tensor& got : {blocking, through_work}) {
      std::vector<float> v = got.to_vector<float>();
      int64_t first = std::mismatch(v.begin(), v.end(), expected.begin()).first - v.begin();
      ASSERT_EQ(first, kCount) << "rank " << comm.rank() << " got " << v[first] << " for " << expected[first];
    }
  });
}

// Buffers from allocate_for_all_reduce are reduced where they are: whole, a slice, several times, in
// every dtype shared memory combines itself; they start zero-filled. Without shared memory they are
// ordinary tensors and reduce the same.
TEST(SharedMemory, BuffersForAllReduceAreReducedInPlace) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  for (bool shared_memory : {true, false}) {
    SCOPED_TRACE(shared_memory ? "shared memory" : "gloo alone");
    World world(3, StoreKind::kTcp);
    world.run(
        [](Communicator& comm) {
          for (DType dtype : {kF32, kF64, kBF16, kI32}) {
            Tensor buffer = comm.allocate_for_all_reduce({1001}, dtype);
            EXPECT_EQ(testing::host_values(buffer), std::vector<double>(1001, 0.0));
            Tensor mine = testing::rank_tensor(comm.rank(), {1001}, dtype);
            for (int round = 0; round < 2; ++round) {
              copy_into(buffer, mine);
              comm.all_reduce_in_place(buffer);
              std::vector<double> got = testing::host_values(buffer);
              for (int64_t i = 0; i < 1001; ++i) {
                ASSERT_EQ(got[i], testing::expected_reduction(comm.size(), i, ReduceOp::kSum, dtype))
                    << dtype_name(dtype) << " i=" << i;
              }
            }
            // A slice, through a Work, with max.
            copy_into(buffer, mine);
            Tensor slice = buffer.slice(0, 64, 960);
            comm.all_reduce({slice}, {.op = ReduceOp::kMax, .in_place = true})->wait();
            std::vector<double> got = testing::host_values(buffer);
            for (int64_t i = 0; i < 1001; ++i) {
              const double expected = i >= 64 && i < 960 ? testing::expected_reduction(comm.size(), i, ReduceOp::kMax, dtype)
                                                         : testing::value(comm.rank(), i);
              ASSERT_EQ(got[i], expected) << dtype_name(dtype) << " i=" << i;
            }
          }
        },
        {.timeout = 60s, .shared_memory = shared_memory});
  }
}

// A rank that reduces an ordinary tensor while the others reduce their shared buffer would combine the
// wrong bytes: every rank fails instead, saying so.
TEST(SharedMemory, RanksPassingBuffersInDifferentPlacesAllFail) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    Tensor shared = comm.allocate_for_all_reduce({256}, kF32);
    Tensor ordinary = zeros({256});
    try {
      comm.all_reduce_in_place(comm.rank() == 0 ? shared : ordinary);
      ADD_FAILURE() << "rank " << comm.rank() << ": the all_reduce should fail";
    } catch (const CollectiveError& e) {
      EXPECT_NE(std::string(e.what()).find("ranks passed buffers in different places"), std::string::npos) << e.what();
    }
  });
}

// Small all-reduces are one-shot (each rank reads every slot after one barrier, the slots' two small
// areas used by turns), larger ones two-shot, and symmetric buffers reduced where they are; broadcasts
// go through root's slot the same two ways, and barriers are one wait. A rank that lags must never see
// its data, or where its peers said theirs is, overwritten by a peer that has moved on: many ops of every
// kind in a row, with new values each time and one rank dawdling now and then.
TEST(SharedMemory, OneShotTwoShotSymmetricAndBroadcastOpsInARowKeepEachResult) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(3, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    ASSERT_EQ(comm.transport(), "gloo + shared memory");
    Tensor symmetric = comm.allocate_for_all_reduce({300}, kF64);
    for (int op = 0; op < 600; ++op) {
      const int kind = op % 4 == 3 ? 2 : op % 5 == 4 ? 1 : 0;  // one-shot, two-shot, symmetric
      const int64_t n = kind == 0 ? 1 + op % 50 : kind == 1 ? 5000 : 1 + op % 300;  // 8-400 B, 40 KB
      if (comm.rank() == op % 3 && op % 7 == 0) std::this_thread::sleep_for(1ms);
      const double mine = static_cast<double>(op * 10 + comm.rank());
      if (op % 6 == 5) {  // a broadcast from a rank that changes, small or large, then a barrier
        const int root = op % 3;
        Tensor got = comm.broadcast({full({n}, mine, kF64)}, {.root = root})->result()[0];
        ASSERT_EQ(got.to_vector<double>(), std::vector<double>(n, op * 10.0 + root)) << "op " << op;
        comm.barrier()->wait();
        continue;
      }
      Tensor t = kind == 2 ? symmetric.slice(0, 0, n) : full({n}, mine, kF64);
      if (kind == 2) copy_into(t, full({n}, mine, kF64));
      comm.all_reduce_in_place(t);
      const double expected = 3.0 * op * 10 + 0 + 1 + 2;
      ASSERT_EQ(t.to_vector<double>(), std::vector<double>(n, expected)) << "op " << op << " rank " << comm.rank();
    }
  });
}

// Ranks on several hosts (named here: threads of one process standing for a host of two ranks and two of
// one; four ranks, so that the checks' values stay exact): all-reduces become hierarchical (shared memory within each host, Gloo between the hosts'
// first ranks, shared memory again to hand the result out); every op still gives every rank the same
// result, splits included.
TEST(SharedMemory, RanksOnSeveralHostsReduceHierarchically) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  const std::vector<std::string> host = {"a", "b", "a", "c"};
  World world(4, StoreKind::kTcp);
  world.run_ranks([&](int rank) {
    std::unique_ptr<Communicator> comm = world.make(rank, {.timeout = 60s, .shared_memory_host = host[rank]});
    EXPECT_EQ(comm->transport(), "gloo + shared memory within each of 3 hosts");
    testing::check_everything(*comm);
    testing::check_all_reduce_large(*comm, (int64_t{1} << 20) + 3);
  });
}

// The same hosts under one name each: one host, plain shared memory; every rank a host of its own: Gloo.
TEST(SharedMemory, OneRankPerHostIsPlainBackend) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(3, StoreKind::kFile);
  world.run_ranks([&](int rank) {
    std::unique_ptr<Communicator> comm = world.make(rank, {.timeout = 60s, .shared_memory_host = str_cat("h", rank)});
    EXPECT_EQ(comm->transport(), "gloo");
    comm->all_reduce_in_place(full({4}, 1.0));
  });
}

// A broadcast larger than a slot goes through it in pieces (5 MiB over 1 MiB slots).
TEST(SharedMemory, BroadcastsLargerThanASlot) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(3, StoreKind::kFile);
  world.run([](Communicator& comm) {
    ASSERT_EQ(comm.transport(), "gloo + shared memory");
    const int64_t n = (int64_t{5} << 20) / 8 + 3;  // f64
    std::vector<double> values(n);
    for (int64_t i = 0; i < n; ++i) values[i] = static_cast<double>(i % 1000) + 0.5 * comm.rank();
    Tensor got = comm.broadcast({from_vector<double>(values, {n})}, {.root = 2})->result()[0];
    std::vector<double> v = got.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(v[i], static_cast<double>(i % 1000) + 1.0) << "i=" << i;
  });
}

// Ranks that call different ops, or one op with different sizes (a bug debug mode would name), would
// pair up the wrong barriers and read each other's data as theirs: through shared memory every rank
// fails at the first barrier instead, saying so.
TEST(SharedMemory, RanksCallingDifferentOpsAllFail) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  for (int variant : {0, 1, 2}) {
    SCOPED_TRACE(variant == 0 ? "sizes" : variant == 1 ? "all_reduce against broadcast" : "roots");
    World world(2, StoreKind::kTcp);
    world.run([variant](Communicator& comm) {
      try {
        if (variant == 0) {
          comm.all_reduce_in_place(full({comm.rank() == 0 ? 100 : 300000}, 1.0));
        } else if (variant == 1 && comm.rank() == 0) {
          comm.all_reduce_in_place(full({64}, 1.0));
        } else {
          comm.broadcast({full({64}, 1.0)}, {.root = variant == 2 ? comm.rank() : 0})->wait();
        }
        ADD_FAILURE() << "rank " << comm.rank() << ": the op should fail";
      } catch (const CollectiveError& e) {
        EXPECT_NE(std::string(e.what()).find("called another op"), std::string::npos) << e.what();
      }
    });
  }
}

// Reduce-scatters and all-gathers between the ranks of one host go through shared memory too: parts
// larger than a slot (three pieces), uneven (one rank without rows for all_gather_v), float sums in rank
// order bit for bit, an input in a buffer of allocate_for_all_reduce read where it is.
float bits_value(int rank, int64_t i) {  // built from bits, not arithmetic: the compiler cannot fuse it into sums
  const uint32_t h = static_cast<uint32_t>(i * 2654435761u) ^ static_cast<uint32_t>(rank * 40503u + 17u);
  const uint32_t bits = (h & 0x807fffffu) | ((119u + (h >> 23) % 8u) << 23);
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

TEST(SharedMemory, ReduceScattersAndAllGathersAcrossPieces) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  constexpr int kRanks = 3;
  constexpr int64_t kTotal = 600'001;  // reduce_scatter's parts: 200,001, 200,000 and 200,000 elements
  World world(kRanks, StoreKind::kTcp);
  world.run([&](Communicator& comm) {
    ASSERT_EQ(comm.transport(), "gloo + shared memory");
    const int rank = comm.rank();
    std::vector<float> mine(kTotal);
    for (int64_t i = 0; i < kTotal; ++i) mine[i] = bits_value(rank, i);
    Tensor ordinary = from_vector<float>(mine, {kTotal});
    Tensor symmetric = comm.allocate_for_all_reduce({kTotal}, kF32);
    copy_into(symmetric, ordinary);
    const int64_t lo = rank == 0 ? 0 : 200'001 + (rank - 1) * 200'000;
    const int64_t part = rank == 0 ? 200'001 : 200'000;
    for (const Tensor& in : {ordinary, symmetric}) {
      std::vector<float> got = comm.reduce_scatter(in)->result()[0].to_vector<float>();
      ASSERT_EQ(static_cast<int64_t>(got.size()), part);
      for (int64_t i = 0; i < part; ++i) {
        float sum = bits_value(0, lo + i);
        for (int r = 1; r < kRanks; ++r) sum += bits_value(r, lo + i);
        ASSERT_EQ(got[i], sum) << "rank " << rank << " element " << i;
      }
    }
    // all_gather_v: 250,000, 0 and 350,001 rows of one element.
    const std::vector<int64_t> rows{250'000, 0, 350'001};
    const int64_t first = rank == 0 ? 0 : rows[0] + (rank == 2 ? rows[1] : 0);
    Tensor mine_rows = ordinary.slice(0, first, first + rows[rank]).reshape({rows[rank], 1});
    std::vector<float> gathered = comm.all_gather_v(mine_rows)->result()[0].to_vector<float>();
    ASSERT_EQ(static_cast<int64_t>(gathered.size()), kTotal);
    for (int64_t i = 0; i < kTotal; ++i) {
      const int owner = i < rows[0] ? 0 : 2;
      ASSERT_EQ(gathered[i], bits_value(owner, i)) << "element " << i;
    }
  });
}

// allocate_shared: one copy that every rank of the host reads and writes. all_gather_in_place: each
// rank's part (as reduce_scatter splits rows: 4, 3 and 3 of 10) copied into every other rank's tensor, in
// symmetric memory straight into the others' buffers, elsewhere through all_gather_v.
TEST(SharedMemory, OneSharedCopyAndGathersInPlace) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(3, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    const int rank = comm.rank();
    Tensor shared = comm.allocate_shared(4096);
    ASSERT_TRUE(shared.defined());
    ASSERT_EQ(shared.numel(), 4096);
    auto* bytes = static_cast<uint8_t*>(shared.raw_data());
    EXPECT_EQ(bytes[4095], 0);  // zeroed
    if (rank == 1) bytes[100] = 42;
    comm.barrier()->wait();
    EXPECT_EQ(bytes[100], 42) << "rank " << rank << " sees rank 1's write";
    comm.barrier()->wait();
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE(symmetric ? "symmetric" : "ordinary");
      Tensor t = symmetric ? comm.allocate_for_all_reduce({10, 2}, kF64) : zeros({10, 2}, kF64);
      const int64_t lo = rank == 0 ? 0 : 4 + 3 * (rank - 1), hi = rank == 0 ? 4 : lo + 3;
      // Each rank knows only its rows; the rest is its own junk until the gather.
      std::vector<double> mine(20, -1.0 - rank);
      for (int64_t i = 2 * lo; i < 2 * hi; ++i) mine[i] = 100.0 * rank + static_cast<double>(i);
      copy_into(t, from_vector<double>(mine, {10, 2}));
      comm.all_gather_in_place(t);
      std::vector<double> got = t.to_vector<double>();
      for (int64_t i = 0; i < 20; ++i) {
        const int owner = i < 8 ? 0 : i < 14 ? 1 : 2;
        ASSERT_EQ(got[i], 100.0 * owner + static_cast<double>(i)) << "rank " << rank << " element " << i;
      }
    }
  });
}

TEST(SharedMemory, RanksDisagreeingOnAReduceScatterOrAllGatherAllFail) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  for (bool gather : {false, true}) {
    SCOPED_TRACE(gather ? "all_gather sizes" : "reduce_scatter reductions");
    World world(2, StoreKind::kTcp);
    world.run([gather](Communicator& comm) {
      try {
        if (gather) {
          comm.all_gather(full({comm.rank() == 0 ? 10 : 30}, 1.0))->wait();
        } else {
          comm.reduce_scatter(full({64}, 1.0), {.op = comm.rank() == 0 ? ReduceOp::kSum : ReduceOp::kMax})->wait();
        }
        ADD_FAILURE() << "rank " << comm.rank() << ": the op should fail";
      } catch (const CollectiveError& e) {
        EXPECT_NE(std::string(e.what()).find("called another op"), std::string::npos) << e.what();
      }
    });
  }
}

// The segment's name is removed once every rank has mapped it: a job leaves nothing in /dev/shm, even
// when it is killed.
TEST(SharedMemory, NothingIsLeftInDevShm) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  const std::string prefix = str_cat("gradflow-", ::getpid(), "-");
  auto leftovers = [&] {
    int n = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      n += entry.path().filename().string().rfind(prefix, 0) == 0;
    }
    return n;
  };
  World world(2, StoreKind::kFile);
  world.run([&](Communicator& comm) {
    ASSERT_EQ(comm.transport(), "gloo + shared memory");
    comm.barrier()->wait();
    EXPECT_EQ(leftovers(), 0);
    comm.all_reduce_in_place(full({3}, 1.0));
  });
  EXPECT_EQ(leftovers(), 0);
}

TEST(GlooThreadsFailure, RankThatNeverCallsIsNamedAndEveryRankFailsFast) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(3, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    comm.barrier()->wait();
    Clock::time_point start = Clock::now();
    if (comm.rank() == 2) {
      // Never calls the all_reduce; learns of the failure through the store.
      std::this_thread::sleep_for(2500ms);
      try {
        comm.barrier()->wait();
        ADD_FAILURE() << "rank 2's next op should fail";
      } catch (const CollectiveError& e) {
        EXPECT_NE(std::string(e.what()).find("ranks that did not arrive: 2 (last started #1 barrier)"), std::string::npos)
            << e.what();
      }
      return;
    }
    try {
      // Rank 1 makes the blocking call, which has no Work: it fails the same way.
      if (comm.rank() == 1) {
        comm.all_reduce_in_place(full({4}, 1.0), ReduceOp::kSum, 1000ms);
      } else {
        comm.all_reduce({full({4}, 1.0)}, {.timeout = 1000ms})->wait();
      }
      ADD_FAILURE() << "rank " << comm.rank() << ": the all_reduce should time out";
    } catch (const CollectiveError& e) {
      std::string what = e.what();
      EXPECT_NE(what.find("all_reduce([4] f32, sum) #2"), std::string::npos) << what;
      EXPECT_NE(what.find("ranks that did not arrive: 2 (last started #1 barrier)"), std::string::npos) << what;
      EXPECT_LT(Clock::now() - start, 10s) << what;  // the 1 s timeout plus a heartbeat, with room for a busy CI
    }
  });
}

// Also with the blocking all_reduce_in_place on rank 0: it is checked like a submitted op, under the same
// signature.
TEST(GlooThreadsFailure, DebugModeReportsMismatchedCollectivesOnEveryRank) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  for (bool blocking : {false, true}) {
    SCOPED_TRACE(blocking ? "blocking on rank 0" : "Work on both ranks");
    World world(2, StoreKind::kFile);
    world.run(
        [blocking](Communicator& comm) {
          // Matching ops pass the check.
          if (blocking && comm.rank() == 0) {
            comm.all_reduce_in_place(full({2}, 1.0));
          } else {
            comm.all_reduce({full({2}, 1.0)})->wait();
          }
          try {
            if (comm.rank() == 0 && blocking) {
              comm.all_reduce_in_place(zeros({128, 10}));
            } else if (comm.rank() == 0) {
              comm.all_reduce({zeros({128, 10})})->wait();
            } else {
              comm.broadcast({zeros({784, 128})})->wait();
            }
            ADD_FAILURE() << "rank " << comm.rank() << ": the mismatch should be reported";
          } catch (const CollectiveError& e) {
            EXPECT_EQ(e.kind(), CollectiveFailure::kMismatch) << e.what();
            EXPECT_NE(std::string(e.what()).find("rank 1 called broadcast([784,128] f32, root 0) while rank 0 called "
                                                 "all_reduce([128,10] f32, sum)"),
                      std::string::npos)
                << e.what();
          }
        },
        {.timeout = 20s, .debug = true});
  }
}

TEST(GlooThreadsFailure, AbortFailsTheOtherRanks) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    comm.barrier()->wait();
    if (comm.rank() == 0) {
      comm.abort("the user gave up");
    } else {
      std::this_thread::sleep_for(800ms);
    }
    try {
      comm.barrier({.timeout = 10s})->wait();
      ADD_FAILURE() << "rank " << comm.rank() << ": barrier after abort should fail";
    } catch (const CollectiveError& e) {
      EXPECT_NE(std::string(e.what()).find("aborted by rank 0: the user gave up"), std::string::npos) << e.what();
    }
  });
}

// A rank waiting inside a shared-memory all-reduce for a peer that aborts instead stops waiting within
// a heartbeat or two (the engine is interrupted), long before the op's timeout, and the process lives on
// (a stuck engine call would make the watchdog end it).
TEST(SharedMemory, AWaitingRankStopsWhenAPeerAborts) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    ASSERT_EQ(comm.transport(), "gloo + shared memory");
    comm.barrier()->wait();
    if (comm.rank() == 1) {
      std::this_thread::sleep_for(300ms);
      comm.abort("the user gave up");
      return;
    }
    Clock::time_point start = Clock::now();
    try {
      comm.all_reduce_in_place(full({1000}, 1.0), ReduceOp::kSum, 60s);
      ADD_FAILURE() << "the all_reduce should fail";
    } catch (const CollectiveError& e) {
      EXPECT_NE(std::string(e.what()).find("the user gave up"), std::string::npos) << e.what();
    }
    EXPECT_LT(Clock::now() - start, 5s);
  });
}

// failure_probe() says why the communicator failed, "" while it works, and keeps saying it (or "") after
// the communicator is gone: work beside the collectives polls it.
TEST(Communicator, FailureProbeOutlivesTheCommunicator) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(1, StoreKind::kFile);
  std::function<std::string()> healthy, failed;
  {
    std::unique_ptr<Communicator> a = world.make(0);
    healthy = a->failure_probe();
    EXPECT_EQ(healthy(), "");
  }
  EXPECT_EQ(healthy(), "") << "destroyed without a failure";
  {
    std::unique_ptr<Communicator> b = world.make(0);
    failed = b->failure_probe();
    b->abort("the user gave up");
    EXPECT_NE(failed().find("the user gave up"), std::string::npos) << failed();
  }
  EXPECT_NE(failed().find("the user gave up"), std::string::npos) << "kept after the communicator is gone";
}

// Small single-tensor all-reduces reuse one Work once its caller lets go of it: a Work still held keeps
// its own result while later ops run, and a reused one starts clean (in place or not, sum or avg, and
// after a failed op).
TEST(Communicator, ReusedWorkOfSmallAllReducesKeepsEachResult) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kFile);
  world.run([](Communicator& comm) {
    const double mine = comm.rank() + 1.0;  // the sum over both ranks is 3, the average 1.5
    WorkPtr held = comm.all_reduce({full({3}, mine)});
    for (int i = 0; i < 50; ++i) {
      Tensor input = full({2}, mine * i, kF64);
      bool in_place = i % 2 == 1;
      ReduceOp op = i % 3 == 0 ? ReduceOp::kAvg : ReduceOp::kSum;
      Tensor out = comm.all_reduce({input}, {.op = op, .in_place = in_place})->result()[0];
      double want = op == ReduceOp::kAvg ? 1.5 * i : 3.0 * i;
      ASSERT_EQ(out.to_vector<double>(), (std::vector<double>{want, want})) << "op " << i;
      EXPECT_EQ(input.to_vector<double>()[0], in_place ? want : mine * i) << "op " << i << ": the input";
    }
    EXPECT_EQ(held->result()[0].to_vector<float>(), (std::vector<float>{3, 3, 3})) << "held across 50 ops";
    // After a failure every op fails with it, through a reused Work or a new one.
    comm.abort("the test stops here");
    for (int i = 0; i < 2; ++i) {
      try {
        comm.all_reduce({full({1}, 1.0)}, {.in_place = true})->result();
        ADD_FAILURE() << "an op after abort() succeeded";
      } catch (const CollectiveError& e) {
        EXPECT_NE(std::string(e.what()).find("the test stops here"), std::string::npos) << e.what();
      }
    }
    try {
      comm.all_reduce_in_place(full({1}, 1.0));
      ADD_FAILURE() << "a blocking all_reduce after abort() succeeded";
    } catch (const CollectiveError& e) {
      EXPECT_NE(std::string(e.what()).find("the test stops here"), std::string::npos) << e.what();
    }
    EXPECT_EQ(held->result()[0].to_vector<float>(), (std::vector<float>{3, 3, 3})) << "and still after the failure";
  });
}

// A blocking all-reduce called while an earlier async op is still in flight (its peer is late) waits for
// it instead of running beside it: the two ops complete in order with their own sums.
TEST(Communicator, BlockingAllReduceBehindAnAsyncOpRunsAfterIt) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kTcp);
  world.run([](Communicator& comm) {
    const double mine = comm.rank() + 1.0;
    for (int round = 0; round < 3; ++round) {
      if (comm.rank() == 1) std::this_thread::sleep_for(300ms);  // rank 0's async op is still waiting for it
      WorkPtr early = comm.all_reduce({full({4}, mine)}, {.async_op = true});
      Tensor t = full({3}, 10 * mine);
      if (comm.rank() == 0) {
        ASSERT_FALSE(early->completed()) << "round " << round << ": the peer was not late";
      }
      comm.all_reduce_in_place(t);
      ASSERT_TRUE(early->completed()) << "round " << round;
      EXPECT_EQ(early->result()[0].to_vector<float>(), (std::vector<float>{3, 3, 3, 3})) << "round " << round;
      EXPECT_EQ(t.to_vector<float>(), (std::vector<float>{30, 30, 30})) << "round " << round;
    }
  });
}

// Gloo writes to a dead peer's socket raise SIGPIPE, whose default action killed a rank with signal 13
// before its op could fail naming the dead rank (seen in data_parallel_rank_dies_mid_fit under load): a
// Gloo communicator leaves SIGPIPE ignored, and keeps a handler the program set itself.
TEST(GlooThreads, SigpipeIsIgnoredUnlessTheProgramHandlesIt) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  auto disposition = [] {
    struct sigaction now {};
    ::sigaction(SIGPIPE, nullptr, &now);
    return now.sa_handler;
  };
  World world(1, StoreKind::kFile);
  ::signal(SIGPIPE, SIG_DFL);
  world.make(0);
  EXPECT_EQ(disposition(), SIG_IGN);
  auto own = +[](int) {};
  ::signal(SIGPIPE, own);
  world.make(0);
  EXPECT_EQ(disposition(), own);
  ::signal(SIGPIPE, SIG_DFL);
}

// The threads of this process at SCHED_BATCH.
int threads_at_sched_batch() {
  int count = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    if (::sched_getscheduler(std::stoi(task.path().filename().string())) == SCHED_BATCH) ++count;
  }
  return count;
}

// Gloo's event-loop threads run at SCHED_BATCH (distributed/gloo/loop_thread.h explains why), the
// threads that call the collectives keep their policy, and gloo_loop_batch = false leaves the loops alone.
TEST(GlooThreads, EventLoopThreadsRunAtSchedBatch) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  ASSERT_EQ(threads_at_sched_batch(), 0);
  for (bool batch : {true, false}) {
    World world(2, StoreKind::kFile);
    world.run(
        [&](Communicator& comm) {
          comm.barrier();  // both ranks' devices exist
          EXPECT_EQ(::sched_getscheduler(0), SCHED_OTHER);
          EXPECT_EQ(threads_at_sched_batch(), batch ? 2 : 0) << "gloo_loop_batch " << batch;
          EXPECT_EQ(comm.all_reduce({full({3}, 1)})->result()[0].to_vector<float>(), (std::vector<float>{2, 2, 2}));
          comm.barrier();
        },
        {.timeout = 60s, .gloo_loop_batch = batch});
  }
}

TEST(Communicator, BadArgumentsAreRejectedAtTheCall) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(1, StoreKind::kFile);
  world.run([](Communicator& comm) {
    EXPECT_THROW(comm.all_reduce({full({2}, 1, kI32)}, {.op = ReduceOp::kAvg}), ValueError);
    EXPECT_THROW(comm.broadcast({full({2}, 1)}, {.root = 1}), ValueError);
    EXPECT_THROW(comm.all_reduce({}), ValueError);
    EXPECT_THROW(comm.all_to_all(zeros({3}), {.input_splits = {2}}), ValueError);  // splits sum to 2, not 3
    EXPECT_THROW(comm.send(zeros({1}), 0), ValueError);                            // to itself
  });
}

TEST(Communicator, OptionsAreChecked) {
  EXPECT_THROW(create_communicator({.backend = Backend::kGloo, .rank = 2, .size = 2}), ValueError);
  EXPECT_THROW(create_communicator({.backend = Backend::kGloo, .rank = 0, .size = 1}), ValueError);  // no store
  EXPECT_EQ(parse_backend("nccl"), Backend::kNccl);
  EXPECT_THROW(parse_backend("tcp"), ValueError);
}

// A port nothing listens on now (the kernel's pick for a socket bound to port 0).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(CommunicatorForJob, TorchrunStyleJobGetsGlooOverTheJobsStoreWithItsKnobs) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  std::string port = std::to_string(free_port());
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < 3; ++rank) {
    ranks.emplace_back([&, rank] {
      absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job(
          {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "3"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port},
           {"GRADFLOW_JOB_TOKEN", "tok"}, {"GRADFLOW_DEBUG_COLLECTIVES", "1"}, {"GRADFLOW_COLLECTIVE_TIMEOUT", "42"},
           {"CUDA_VISIBLE_DEVICES", ""}});
      ASSERT_TRUE(job.ok()) << job.status();
      CommunicatorOptions o = communicator_options_for(*job, {});
      EXPECT_TRUE(o.debug);
      EXPECT_EQ(o.timeout, std::chrono::seconds(42));
      EXPECT_FALSE(o.mpi_launched);
      std::unique_ptr<Communicator> comm = communicator_for_job(*job);
      EXPECT_EQ(comm->backend(), Backend::kGloo);
      EXPECT_EQ(comm->rank(), rank);
      Tensor sum = comm->all_reduce({full({2}, rank + 1.0)})->result()[0];
      EXPECT_EQ(sum.to_vector<float>(), (std::vector<float>{6, 6}));
    });
  }
  for (std::thread& t : ranks) t.join();
}

TEST(CommunicatorForJob, ARankWithoutTheGpuClusterAssignedIsACpuJob) {
  // cluster/ assigns GPU = local rank when CUDA_VISIBLE_DEVICES is unset, whether or not a GPU exists.
  absl::StatusOr<cluster::JobInfo> job = cluster::resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "2"}});
  ASSERT_TRUE(job.ok());
  ASSERT_EQ(job->gpu, 1);
  CommunicatorOptions o = communicator_options_for(*job, {});
  if (cuda_device_count() > 1 && backend_built(Backend::kNccl)) {
    EXPECT_EQ(o.cuda_device, 1);
  } else {
    EXPECT_EQ(o.cuda_device, -1) << "no such GPU here (or no NCCL): the job must not ask for NCCL";
  }
}

TEST(CommunicatorForJob, MoreLocalRanksThanGpusIsACpuJobOnEveryRank) {
  // Two ranks on a node with one GPU: rank 0 has "its" GPU, rank 1 none. Both must make the same choice
  // (the CPU backends), or rank 0 would wait in NCCL's rendezvous for a rank that never joins.
  for (int rank : {0, 1}) {
    absl::StatusOr<cluster::JobInfo> job =
        cluster::resolve_job({{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", std::to_string(rank)},
                              {"LOCAL_WORLD_SIZE", "2"}});
    ASSERT_TRUE(job.ok());
    CommunicatorOptions o = communicator_options_for(*job, {});
    bool every_rank_has_a_gpu = cuda_device_count() >= 2 && backend_built(Backend::kNccl);
    EXPECT_EQ(o.cuda_device, every_rank_has_a_gpu ? rank : -1) << "rank " << rank;
  }
}

TEST(CommunicatorForJob, AWrongTokenIsRefusedNamingTheStore) {
  std::string port = std::to_string(free_port());
  auto job_for = [&](int rank, const char* token) {
    return *cluster::resolve_job({{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", port},
                                  {"GRADFLOW_JOB_TOKEN", token}, {"CUDA_VISIBLE_DEVICES", ""}});
  };
  std::thread server([&] {
    try {
      communicator_for_job(job_for(0, "right"), {.timeout = 3s});
    } catch (const CollectiveError&) {
      // rank 1 never joins: the rendezvous times out
    }
  });
  try {
    communicator_for_job(job_for(1, "wrong"), {.timeout = 3s, .connect_timeout = 10s});
    ADD_FAILURE() << "a wrong token must be refused";
  } catch (const CollectiveError& e) {
    EXPECT_NE(std::string(e.what()).find("the job's store at 127.0.0.1:" + port), std::string::npos) << e.what();
  }
  server.join();
}

TEST(RoutingCommunicator, EachOpTakesTheRouteOfItsTensorsDevice) {
  if (!backend_built(Backend::kGloo)) GTEST_SKIP() << "built without Gloo";
  World world(2, StoreKind::kTcp);
  world.run_ranks([&](int rank) {
    // No GPU here: a second Gloo communicator stands in for the CUDA route, aborted so that an op
    // wrongly routed to it fails.
    std::unique_ptr<Communicator> cpu = world.make(rank), cuda = world.make(rank);
    cuda->abort("the CUDA route must not be used for CPU tensors");
    RoutingCommunicator routed(std::move(cpu), std::move(cuda));
    EXPECT_EQ(routed.backend(), Backend::kAuto);
    Tensor sum = routed.all_reduce({full({3}, rank + 1.0)})->result()[0];
    EXPECT_EQ(sum.to_vector<float>(), (std::vector<float>{3, 3, 3}));
    EXPECT_EQ(routed.all_gather(full({1}, rank))->result()[0].to_vector<float>(), (std::vector<float>{0, 1}));
    routed.barrier()->wait();
    EXPECT_THROW(routed.cuda().barrier()->wait(), CollectiveError);
  });
}

}  // namespace
}  // namespace gradflow::distributed
