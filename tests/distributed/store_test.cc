// Rendezvous stores: N threads act as N ranks over one TcpStore (rank 0 serves) or one FileStore directory.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "distributed/store/file_store.h"
#include "distributed/store/prefix_store.h"
#include "distributed/store/store_exchange.h"
#include "distributed/store/tcp_store.h"
#include "distributed/store/wire.h"

namespace gradflow::distributed {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr char kToken[] = "test-job-token";

enum class Kind { kTcp, kFile };

std::string kind_name(const ::testing::TestParamInfo<Kind>& info) {
  return info.param == Kind::kTcp ? "Tcp" : "File";
}

// Runs body(rank) on n threads and joins them.
template <typename Body>
void run_ranks(int n, Body body) {
  std::vector<std::thread> threads;
  for (int rank = 0; rank < n; ++rank) threads.emplace_back([&body, rank] { body(rank); });
  for (std::thread& t : threads) t.join();
}

class StoreTest : public ::testing::TestWithParam<Kind> {
 protected:
  void SetUp() override {
    std::string pattern = (std::filesystem::temp_directory_path() / "gradflow_store_XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // One store per rank; for TCP, rank 0 runs the server.
  std::vector<std::shared_ptr<Store>> make_world(int n, Store::Timeout timeout = 10s) {
    std::vector<std::shared_ptr<Store>> stores;
    uint16_t port = 0;
    for (int rank = 0; rank < n; ++rank) {
      if (GetParam() == Kind::kTcp) {
        auto store = TcpStore::create(
            {.port = port, .is_server = rank == 0, .job_token = kToken, .timeout = timeout});
        EXPECT_TRUE(store.ok()) << store.status();
        if (!store.ok()) return {};
        port = (*store)->port();
        stores.push_back(std::move(*store));
      } else {
        auto store = FileStore::create({.path = dir_, .timeout = timeout});
        EXPECT_TRUE(store.ok()) << store.status();
        if (!store.ok()) return {};
        stores.push_back(std::move(*store));
      }
    }
    return stores;
  }

  std::string dir_;
};

TEST_P(StoreTest, EveryRankSeesEveryRanksKey) {
  constexpr int kRanks = 4;
  auto world = make_world(kRanks);
  ASSERT_EQ(world.size(), kRanks);
  std::atomic<int> failures{0};
  run_ranks(kRanks, [&](int rank) {
    if (!world[rank]->set("addr/" + std::to_string(rank), "host" + std::to_string(rank)).ok()) ++failures;
    for (int peer = 0; peer < kRanks; ++peer) {
      absl::StatusOr<std::string> value = world[rank]->get("addr/" + std::to_string(peer));
      if (!value.ok() || *value != "host" + std::to_string(peer)) ++failures;
    }
  });
  EXPECT_EQ(failures.load(), 0);
}

TEST_P(StoreTest, GetWaitsForALaterSetAndSetReplaces) {
  auto world = make_world(2);
  ASSERT_EQ(world.size(), 2u);
  std::thread setter([&] {
    std::this_thread::sleep_for(100ms);
    EXPECT_TRUE(world[1]->set("late", "first").ok());
  });
  absl::StatusOr<std::string> value = world[0]->get("late", 5s);
  setter.join();
  ASSERT_TRUE(value.ok()) << value.status();
  EXPECT_EQ(*value, "first");
  ASSERT_TRUE(world[1]->set("late", std::string("sec\0ond", 7)).ok());
  EXPECT_EQ(*world[0]->get("late"), std::string("sec\0ond", 7));
}

TEST_P(StoreTest, ConcurrentAddsFromEightRanksGiveExactTotal) {
  constexpr int kRanks = 8;
  constexpr int kAdds = 50;
  auto world = make_world(kRanks);
  ASSERT_EQ(world.size(), kRanks);
  std::atomic<int> failures{0};
  run_ranks(kRanks, [&](int rank) {
    for (int i = 0; i < kAdds; ++i) {
      if (!world[rank]->add("counter", rank + 1).ok()) ++failures;
    }
  });
  EXPECT_EQ(failures.load(), 0);
  // sum over ranks of (rank + 1) * kAdds
  EXPECT_EQ(*world[0]->add("counter", 0), kAdds * kRanks * (kRanks + 1) / 2);
  EXPECT_EQ(*world[3]->get("counter"), std::to_string(kAdds * kRanks * (kRanks + 1) / 2));
  EXPECT_EQ(*world[1]->add("fresh", -5), -5);
}

TEST_P(StoreTest, AddOnAValueThatIsNotANumberIsInvalidArgument) {
  auto world = make_world(1);
  ASSERT_EQ(world.size(), 1u);
  ASSERT_TRUE(world[0]->set("word", "hello").ok());
  absl::StatusOr<int64_t> sum = world[0]->add("word", 1);
  EXPECT_EQ(sum.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(sum.status().message().find("hello"), std::string::npos) << sum.status();
}

TEST_P(StoreTest, WaitAndCheck) {
  auto world = make_world(2);
  ASSERT_EQ(world.size(), 2u);
  EXPECT_FALSE(*world[0]->check({"a", "b"}));
  absl::Status waited = world[0]->wait({"a", "b"}, 100ms);
  EXPECT_EQ(waited.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(waited.message().find("\"a\", \"b\""), std::string::npos) << waited;
  std::thread setter([&] {
    EXPECT_TRUE(world[1]->set("a", "1").ok());
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(world[1]->set("b", "2").ok());
  });
  EXPECT_TRUE(world[0]->wait({"a", "b"}, 5s).ok());
  setter.join();
  EXPECT_TRUE(*world[0]->check({"a", "b"}));
  EXPECT_TRUE(*world[1]->delete_key("a"));
  EXPECT_FALSE(*world[1]->delete_key("a"));
  EXPECT_FALSE(*world[0]->check({"a", "b"}));
}

TEST_P(StoreTest, CompareSet) {
  auto world = make_world(2);
  ASSERT_EQ(world.size(), 2u);
  // Missing key, non-empty expected: nothing set, expected returned.
  EXPECT_EQ(*world[0]->compare_set("k", "x", "y"), "x");
  EXPECT_FALSE(*world[0]->check({"k"}));
  // Missing key, empty expected: set.
  EXPECT_EQ(*world[0]->compare_set("k", "", "v1"), "v1");
  // Wrong expected: current value returned, unchanged.
  EXPECT_EQ(*world[1]->compare_set("k", "nope", "v2"), "v1");
  EXPECT_EQ(*world[1]->get("k"), "v1");
  // Right expected: swapped.
  EXPECT_EQ(*world[1]->compare_set("k", "v1", "v2"), "v2");
  EXPECT_EQ(*world[0]->get("k"), "v2");
}

TEST_P(StoreTest, CompareSetElectsExactlyOneLeader) {
  constexpr int kRanks = 6;
  auto world = make_world(kRanks);
  ASSERT_EQ(world.size(), kRanks);
  std::atomic<int> leaders{0};
  run_ranks(kRanks, [&](int rank) {
    absl::StatusOr<std::string> won = world[rank]->compare_set("leader", "", std::to_string(rank));
    if (won.ok() && *won == std::to_string(rank)) ++leaders;
  });
  EXPECT_EQ(leaders.load(), 1);
}

TEST_P(StoreTest, GetOfAMissingKeyTimesOutWithinItsTimeout) {
  auto world = make_world(1, 250ms);
  ASSERT_EQ(world.size(), 1u);
  Clock::time_point start = Clock::now();
  absl::StatusOr<std::string> value = world[0]->get("never");  // the store's default timeout
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(value.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(value.status().message().find("\"never\""), std::string::npos) << value.status();
  EXPECT_NE(value.status().message().find("250 ms"), std::string::npos) << value.status();
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 750ms);
  // The store still works after a timeout.
  EXPECT_TRUE(world[0]->set("never", "now").ok());
  EXPECT_EQ(*world[0]->get("never", 100ms), "now");
}

TEST_P(StoreTest, PrefixStoresDoNotSeeEachOther) {
  auto world = make_world(2);
  ASSERT_EQ(world.size(), 2u);
  PrefixStore a("groupA", world[0]);
  PrefixStore b("groupB", world[1]);
  ASSERT_TRUE(a.set("ready", "A").ok());
  EXPECT_FALSE(*b.check({"ready"}));
  EXPECT_EQ(b.get("ready", 50ms).status().code(), absl::StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(b.set("ready", "B").ok());
  EXPECT_EQ(*a.get("ready"), "A");
  EXPECT_EQ(*b.get("ready"), "B");
  EXPECT_EQ(*world[1]->get("groupA/ready"), "A");
  EXPECT_EQ(*a.add("n", 2), 2);
  EXPECT_EQ(*b.add("n", 5), 5);
  PrefixStore a_again("groupA", world[1]);
  EXPECT_EQ(*a_again.get("n"), "2");
}

TEST_P(StoreTest, ExchangeGivesEveryRankEveryValueAndLeavesNoKeys) {
  constexpr int kRanks = 4;
  auto world = make_world(kRanks);
  ASSERT_EQ(world.size(), kRanks);
  std::vector<std::vector<std::string>> seen(kRanks);
  std::atomic<int> failures{0};
  run_ranks(kRanks, [&](int rank) {
    for (int round = 0; round < 3; ++round) {  // one tag per round, as a checkpoint's barriers use them
      std::string mine(static_cast<size_t>(rank + round), static_cast<char>('a' + rank));
      auto all = exchange_through_store(*world[rank], "x/" + std::to_string(round), rank, kRanks, mine, 10s);
      if (!all.ok()) {
        ++failures;
        continue;
      }
      if (round == 2) seen[rank] = *all;
    }
  });
  EXPECT_EQ(failures.load(), 0);
  std::vector<std::string> expected;
  for (int r = 0; r < kRanks; ++r) expected.emplace_back(static_cast<size_t>(r + 2), static_cast<char>('a' + r));
  for (int r = 0; r < kRanks; ++r) EXPECT_EQ(seen[r], expected) << "rank " << r;
  for (int round = 0; round < 3; ++round) {
    std::string tag = "x/" + std::to_string(round);
    for (const std::string& key : {tag + "/0", tag + "/3", tag + "/read"}) {
      EXPECT_FALSE(*world[0]->check({key})) << key << " is left in the store";
    }
  }
}

TEST_P(StoreTest, ExchangeNamesTheRanksThatDidNotArrive) {
  auto world = make_world(3);
  ASSERT_EQ(world.size(), 3u);
  absl::StatusOr<std::vector<std::string>> all;
  run_ranks(2, [&](int rank) {  // rank 2 never comes
    auto mine = exchange_through_store(*world[rank], "late", rank, 3, "v", 300ms);
    if (rank == 0) all = mine;
  });
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(std::string(all.status().message()).find("\"late\": rank(s) 2 did not arrive"), std::string::npos)
      << all.status();
}

TEST_P(StoreTest, ExchangeGivesUpWhenTheJobFails) {
  auto world = make_world(2);
  ASSERT_EQ(world.size(), 2u);
  std::atomic<bool> failed{false};
  std::thread failure([&] {
    std::this_thread::sleep_for(100ms);
    failed = true;  // rank 1 never comes; the job's failure notice arrives instead
  });
  auto start = std::chrono::steady_clock::now();
  auto all = exchange_through_store(*world[0], "doomed", 0, 2, "a", 30s,
                                    [&] { return failed ? std::string("rank 1 died") : std::string(); });
  failure.join();
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), absl::StatusCode::kAborted);
  EXPECT_NE(std::string(all.status().message()).find("rank 1 died"), std::string::npos) << all.status();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_P(StoreTest, ExchangeDoesNotHoldTheStoreWhileItWaits) {
  // One store object shared by an exchange that waits and by a heartbeat (as the communicator's watchdog
  // shares it): the heartbeat's calls go through while the exchange waits for a late rank.
  auto world = make_world(2);
  ASSERT_EQ(world.size(), 2u);
  std::atomic<bool> done{false};
  std::thread waiting([&] {
    EXPECT_TRUE(exchange_through_store(*world[0], "slow", 0, 2, "a", 10s).ok());
    done = true;
  });
  int beats = 0;
  auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < 300ms) {
    if (world[0]->set("heartbeat", std::to_string(beats)).ok()) ++beats;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(done.load());
  EXPECT_GE(beats, 5) << "the exchange blocked the shared store";
  EXPECT_TRUE(exchange_through_store(*world[1], "slow", 1, 2, "b", 10s).ok());
  waiting.join();
}

INSTANTIATE_TEST_SUITE_P(Stores, StoreTest, ::testing::Values(Kind::kTcp, Kind::kFile), kind_name);

TEST(TcpStoreTest, WrongTokenIsRefusedNamingTheServer) {
  auto server = TcpStore::create({.is_server = true, .job_token = kToken});
  ASSERT_TRUE(server.ok()) << server.status();
  uint16_t port = (*server)->port();
  auto intruder = TcpStore::create({.port = port, .job_token = "guess"});
  EXPECT_EQ(intruder.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(intruder.status().message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << intruder.status();
  auto anonymous = TcpStore::create({.port = port});
  EXPECT_EQ(anonymous.status().code(), absl::StatusCode::kPermissionDenied);
  // The server keeps serving the rightful clients.
  auto friend_store = TcpStore::create({.port = port, .job_token = kToken});
  ASSERT_TRUE(friend_store.ok()) << friend_store.status();
  EXPECT_TRUE((*friend_store)->set("k", "v").ok());
  EXPECT_EQ(*(*server)->get("k"), "v");
}

// A raw connection to 127.0.0.1:port, for speaking the protocol wrongly on purpose.
int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

TEST(TcpStoreTest, RequestsBeforeTheHandshakeAreRefusedAndClosed) {
  auto server = TcpStore::create({.is_server = true, .job_token = kToken, .timeout = 2s});
  ASSERT_TRUE(server.ok()) << server.status();
  auto deadline = Clock::now() + 2s;
  // A set without a handshake: refused, then the connection closes.
  int fd = raw_connect((*server)->port());
  std::string set = wire::Writer().u8(static_cast<uint8_t>(wire::Op::kSet)).str("k").str("v").frame();
  ASSERT_TRUE(wire::send_all(fd, set, deadline, "raw").ok());
  absl::StatusOr<std::string> reply = wire::recv_frame(fd, deadline, "raw");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(static_cast<uint8_t>((*reply)[0]), static_cast<uint8_t>(wire::Reply::kRefused));
  EXPECT_EQ(wire::recv_frame(fd, deadline, "raw").status().code(), absl::StatusCode::kUnavailable);
  ::close(fd);
  // A huge first frame: closed without reading it.
  fd = raw_connect((*server)->port());
  std::string huge_header = wire::Writer().frame();
  huge_header[2] = 0x10;  // 1 MiB announced
  ASSERT_TRUE(wire::send_all(fd, huge_header, deadline, "raw").ok());
  EXPECT_EQ(wire::recv_frame(fd, deadline, "raw").status().code(), absl::StatusCode::kUnavailable);
  ::close(fd);
  EXPECT_FALSE(*(*server)->check({"k"}));
}

TEST(TcpStoreTest, ServerGoingAwayFailsAWaitingClientQuickly) {
  auto server = TcpStore::create({.is_server = true, .job_token = kToken});
  ASSERT_TRUE(server.ok()) << server.status();
  auto client = TcpStore::create({.port = (*server)->port(), .job_token = kToken});
  ASSERT_TRUE(client.ok()) << client.status();
  std::thread killer([&] {
    std::this_thread::sleep_for(200ms);
    server->reset();
  });
  Clock::time_point start = Clock::now();
  absl::StatusOr<std::string> value = (*client)->get("never", 60s);
  auto elapsed = Clock::now() - start;
  killer.join();
  EXPECT_EQ(value.status().code(), absl::StatusCode::kUnavailable) << value.status();
  EXPECT_LT(elapsed, 2s);
  // Later calls fail at once too.
  EXPECT_EQ((*client)->set("k", "v").code(), absl::StatusCode::kUnavailable);
}

TEST(TcpStoreTest, ClientRetriesUntilTheServerComesUp) {
  uint16_t port = 0;
  {
    auto probe = TcpStore::create({.is_server = true, .job_token = kToken});
    ASSERT_TRUE(probe.ok()) << probe.status();
    port = (*probe)->port();
  }
  absl::StatusOr<std::unique_ptr<TcpStore>> client = absl::UnavailableError("not started");
  std::thread connecting([&] {
    client = TcpStore::create({.port = port, .job_token = kToken, .connect_timeout = 5s});
  });
  std::this_thread::sleep_for(300ms);
  auto server = TcpStore::create({.port = port, .is_server = true, .job_token = kToken});
  connecting.join();
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_TRUE((*client)->set("hello", "world").ok());
  EXPECT_EQ(*(*server)->get("hello"), "world");
}

TEST(TcpStoreTest, ConnectGivesUpAtTheConnectTimeout) {
  uint16_t port = 0;
  {
    auto probe = TcpStore::create({.is_server = true, .job_token = kToken});
    ASSERT_TRUE(probe.ok()) << probe.status();
    port = (*probe)->port();
  }
  Clock::time_point start = Clock::now();
  auto client = TcpStore::create({.port = port, .job_token = kToken, .connect_timeout = 300ms});
  auto elapsed = Clock::now() - start;
  EXPECT_EQ(client.status().code(), absl::StatusCode::kDeadlineExceeded) << client.status();
  EXPECT_NE(client.status().message().find(std::to_string(port)), std::string::npos) << client.status();
  EXPECT_LT(elapsed, 1500ms);
}

TEST(TcpStoreTest, ServerAddressInUseIsUnavailable) {
  auto first = TcpStore::create({.is_server = true, .job_token = kToken});
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = TcpStore::create({.port = (*first)->port(), .is_server = true, .job_token = kToken});
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable) << second.status();
}

TEST(FileStoreTest, KeysWithSlashesStayInTheDirectory) {
  std::string pattern = (std::filesystem::temp_directory_path() / "gradflow_store_XXXXXX").string();
  ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
  {
    auto store = FileStore::create({.path = pattern + "/nested/dir"});
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->set("../escape/../../x", "v").ok());
    EXPECT_EQ(*(*store)->get("../escape/../../x", 100ms), "v");
    EXPECT_FALSE(std::filesystem::exists(pattern + "/x"));
    EXPECT_EQ((*store)->set(std::string(300, 'k'), "v").code(), absl::StatusCode::kInvalidArgument);
  }
  std::filesystem::remove_all(pattern);
}

}  // namespace
}  // namespace gradflow::distributed
