// gfrun against real processes: the environment contract, output tagging, the failure matrix (a rank
// exits 3, a rank killed by SIGKILL, hung ranks while gfrun gets SIGTERM) with the time to tear down
// bounded, restarts, and real OpenMPI (gfrun delegating to mpirun, and plain mpirun) resolving the same
// layout. The ranks are tests/launcher/rank_probe.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

struct Result {
  int status = -1;  // wait status
  std::string output;
  std::chrono::milliseconds took{0};
  int exit_code() const { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
};

// Runs argv with extra environment variables, capturing stdout and stderr together; sends `signal` to it
// after `signal_after` when given.
Result run(std::vector<std::string> argv, const std::map<std::string, std::string>& env = {},
           std::optional<std::chrono::milliseconds> signal_after = std::nullopt, int signal = SIGTERM,
           const std::string& input = "") {
  int out[2], in[2];
  EXPECT_EQ(::pipe(out), 0);
  EXPECT_EQ(::pipe(in), 0);
  Clock::time_point start = Clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::close(out[0]);
    ::close(in[1]);
    ::dup2(in[0], 0);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(in[0]);
  if (!input.empty()) (void)!::write(in[1], input.data(), input.size());
  ::close(in[1]);
  Result r;
  bool signalled = false;
  char buffer[4096];
  while (true) {
    pollfd fd{out[0], POLLIN, 0};
    ::poll(&fd, 1, 20);
    if (fd.revents & (POLLIN | POLLHUP)) {
      ssize_t n = ::read(out[0], buffer, sizeof(buffer));
      if (n <= 0) break;
      r.output.append(buffer, static_cast<size_t>(n));
    }
    if (signal_after && !signalled && Clock::now() - start > *signal_after) {
      ::kill(pid, signal);
      signalled = true;
    }
  }
  ::waitpid(pid, &r.status, 0);
  ::close(out[0]);
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return r;
}

std::vector<std::string> gfrun(std::vector<std::string> args) {
  std::vector<std::string> argv{GFRUN_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(RANK_PROBE_PATH);
  return argv;
}

// The "probe ..." lines, keyed by rank, with the pid and the restart fields dropped.
std::map<int, std::string> layouts(const std::string& output) {
  std::map<int, std::string> by_rank;
  std::regex line(R"(probe rank=(\d+) (world=\S+ local=\S+ node=\S+) source=\S+ token=\S+ restart=\S+ pid=\d+ )");
  for (std::sregex_iterator it(output.begin(), output.end(), line), end; it != end; ++it) {
    by_rank[std::stoi((*it)[1])] = (*it)[2];
  }
  return by_rank;
}

bool process_exists(int pid) { return ::kill(pid, 0) == 0; }

std::vector<int> probe_pids(const std::string& output) {
  std::vector<int> pids;
  std::regex pid(R"(probe rank=\d+ .* pid=(\d+))");
  for (std::sregex_iterator it(output.begin(), output.end(), pid), end; it != end; ++it) pids.push_back(std::stoi((*it)[1]));
  return pids;
}

TEST(Gfrun, EveryRankGetsTheEnvironmentContract) {
  Result r = run(gfrun({"-np", "3", "--oversubscribe"}));
  ASSERT_EQ(r.exit_code(), 0) << r.output;
  std::map<int, std::string> got = layouts(r.output);
  ASSERT_EQ(got.size(), 3u) << r.output;
  for (int rank = 0; rank < 3; ++rank) {
    EXPECT_EQ(got[rank], "world=3 local=" + std::to_string(rank) + "/3 node=0/1") << r.output;
  }
  EXPECT_NE(r.output.find("source=torchrun token=set restart=0"), std::string::npos) << r.output;
}

TEST(Gfrun, StdinGoesToRankZeroOnly) {
  Result r = run(gfrun({"-np", "2"}), {{"PROBE_READ_STDIN", "1"}}, std::nullopt, SIGTERM, "hello rank zero\n");
  ASSERT_EQ(r.exit_code(), 0) << r.output;
  EXPECT_NE(r.output.find("stdin rank=0: hello rank zero"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("stdin rank=1: <eof>"), std::string::npos) << r.output;
}

TEST(Gfrun, BindToCoreAndWorkingDirectory) {
  Result bound = run(gfrun({"-np", "2", "--bind-to", "core", "-wdir", "/tmp"}));
  ASSERT_EQ(bound.exit_code(), 0) << bound.output;
  EXPECT_EQ(layouts(bound.output).size(), 2u) << bound.output;
  std::regex bound_line(R"(probe rank=\d+ .* cpus=1 cwd=/tmp\n)");
  EXPECT_EQ(std::distance(std::sregex_iterator(bound.output.begin(), bound.output.end(), bound_line), std::sregex_iterator()), 2)
      << bound.output;
}

TEST(Gfrun, ItsRanksAreNotClaimedByAnOuterLauncher) {
  // gfrun started inside mpirun or an sbatch script sees those variables; its ranks must not.
  Result r = run(gfrun({"-np", "2"}), {{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "8"},
                                       {"SLURM_PROCID", "3"}, {"TF_CONFIG", "{bad json"}});
  ASSERT_EQ(r.exit_code(), 0) << r.output;
  EXPECT_EQ(layouts(r.output).size(), 2u) << r.output;
}

TEST(Gfrun, TaggedOutputIsNeverInterleavedMidLine) {
  Result r = run(gfrun({"-np", "2", "--tag-output"}), {{"PROBE_LINES", "2000"}});
  ASSERT_EQ(r.exit_code(), 0) << r.output.substr(0, 2000);
  std::istringstream lines(r.output);
  std::regex tagged(R"(\[1,(\d)\]<stdout>:(probe rank=\1 .*|line \d+ of rank \1 ([a-z])\3{199}))");
  int count = 0;
  for (std::string line; std::getline(lines, line);) {
    ASSERT_TRUE(std::regex_match(line, tagged)) << "mangled line: " << line.substr(0, 300);
    ++count;
  }
  EXPECT_EQ(count, 2 * 2001);
}

TEST(Gfrun, OutputFilenameWritesEachRanksFiles) {
  std::string dir = ::testing::TempDir() + "gfrun_output_" + std::to_string(::getpid());
  Result r = run(gfrun({"-np", "2", "--output-filename", dir}));
  ASSERT_EQ(r.exit_code(), 0) << r.output;
  for (int rank = 0; rank < 2; ++rank) {
    std::string path = dir + "/1/rank." + std::to_string(rank) + "/stdout";
    FILE* f = std::fopen(path.c_str(), "r");
    ASSERT_NE(f, nullptr) << path;
    char line[512] = {};
    ASSERT_NE(std::fgets(line, sizeof(line), f), nullptr);
    EXPECT_EQ(std::string(line).rfind("probe rank=" + std::to_string(rank), 0), 0u) << line;
    std::fclose(f);
  }
  std::system(("rm -rf " + dir).c_str());
}

TEST(GfrunFailure, ARankExitingWithThreeEndsTheJobWithThree) {
  Result r = run(gfrun({"-np", "3", "--oversubscribe", "--grace-period", "2"}),
                 {{"PROBE_FAIL", "1:3"}, {"PROBE_SLEEP_S", "60"}});
  EXPECT_EQ(r.exit_code(), 3) << r.output;
  EXPECT_NE(r.output.find("rank 1 (pid"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exited with status 3 first"), std::string::npos) << r.output;
  EXPECT_LT(r.took, 20s) << "the sleeping ranks must be stopped, not waited for";
  for (int pid : probe_pids(r.output)) EXPECT_FALSE(process_exists(pid)) << "rank pid " << pid << " left behind";
}

TEST(GfrunFailure, ARankKilledBySigkillEndsTheJobWith137) {
  Result r = run(gfrun({"-np", "2", "--grace-period", "2"}), {{"PROBE_KILL", "0"}, {"PROBE_SLEEP_S", "60"}});
  EXPECT_EQ(r.exit_code(), 128 + SIGKILL) << r.output;
  EXPECT_NE(r.output.find("rank 0 (pid"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("was killed by signal 9"), std::string::npos) << r.output;
  EXPECT_LT(r.took, 20s);
}

TEST(GfrunFailure, SigtermToGfrunEndsHungRanksAfterTheGracePeriod) {
  // The ranks ignore SIGTERM (hung): only the SIGKILL after the 1 s grace period ends them.
  Result r = run(gfrun({"-np", "2", "--grace-period", "1"}), {{"PROBE_IGNORE_TERM", "1"}, {"PROBE_SLEEP_S", "60"}},
                 1500ms, SIGTERM);
  EXPECT_EQ(r.exit_code(), 128 + SIGTERM) << r.output;
  EXPECT_NE(r.output.find("grace period over: sending SIGKILL"), std::string::npos) << r.output;
  EXPECT_LT(r.took, 15s) << r.output;
  std::vector<int> pids = probe_pids(r.output);
  EXPECT_EQ(pids.size(), 2u) << r.output;
  for (int pid : pids) EXPECT_FALSE(process_exists(pid)) << "rank pid " << pid << " left behind";
}

TEST(GfrunFailure, TimeoutEndsTheJobWith124) {
  Result r = run(gfrun({"-np", "1", "--timeout", "1", "--grace-period", "1"}), {{"PROBE_SLEEP_S", "60"}});
  EXPECT_EQ(r.exit_code(), 124) << r.output;
  EXPECT_NE(r.output.find("longer than --timeout 1 s"), std::string::npos) << r.output;
}

// A rank that fails at once while the others are still starting: gfrun stops them with SIGTERM, and a
// rank that had not yet dropped gfrun's inherited handlers used to write that signal into gfrun's own
// signal pipe, so gfrun reported being stopped itself ("got Terminated while stopping the job").
TEST(Gfrun, StoppingRanksThatAreStillStartingIsNotAStopOfGfrun) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    Result r = run(gfrun({"-np", "24", "--oversubscribe"}), {{"PROBE_FAIL", "0:9"}, {"PROBE_DELAY_MS", "0"}});
    EXPECT_EQ(r.exit_code(), 9) << r.output;
    EXPECT_EQ(r.output.find("while stopping the job"), std::string::npos) << r.output;
  }
}

TEST(Gfrun, MaxRestartsRelaunchesAFailedJobWithItsRestartCount) {
  Result r = run(gfrun({"-np", "2", "--max-restarts", "3"}), {{"PROBE_SUCCEED_ON_RESTART", "2"}});
  EXPECT_EQ(r.exit_code(), 0) << r.output;
  EXPECT_NE(r.output.find("restarting the job (restart 1 of 3)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("restart=2"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("restart=3"), std::string::npos) << r.output;

  Result out_of_tries = run(gfrun({"-np", "1", "--max-restarts", "1"}), {{"PROBE_SUCCEED_ON_RESTART", "5"}});
  EXPECT_EQ(out_of_tries.exit_code(), 9) << out_of_tries.output;
}

TEST(Gfrun, BadCommandLinesExitTwoNamingTheProblem) {
  Result r = run({GFRUN_PATH, "-np", "zero", "prog"});
  EXPECT_EQ(r.exit_code(), 2);
  EXPECT_NE(r.output.find("-np \"zero\": not an integer"), std::string::npos) << r.output;
  Result unknown = run({GFRUN_PATH, "--frobnicate", "prog"});
  EXPECT_EQ(unknown.exit_code(), 2);
  EXPECT_NE(unknown.output.find("--frobnicate"), std::string::npos) << unknown.output;
  Result missing = run({GFRUN_PATH, "-np", "1", "/nonexistent/program"});
  EXPECT_EQ(missing.exit_code(), 127) << missing.output;
  EXPECT_NE(missing.output.find("cannot start /nonexistent/program"), std::string::npos) << missing.output;
}

// Real OpenMPI: the same probe under gfrun (delegating), plain mpirun, gfrun's own launch and TF_CONFIG
// reports the same layout (srun's is checked by slurm_test.sh).
TEST(GfrunMpi, GfrunMpirunDelegationPlainMpirunAndTfConfigResolveTheSameLayout) {
  std::map<std::string, std::string> env{{"OMPI_MCA_btl", "self,vader"}, {"OMPI_ALLOW_RUN_AS_ROOT", "1"},
                                         {"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"}};
  Result delegated = run(gfrun({"--backend", "mpi", "-np", "2", "--oversubscribe"}), env);
  ASSERT_EQ(delegated.exit_code(), 0) << delegated.output;
  EXPECT_NE(delegated.output.find("source=openmpi token=set restart=0"), std::string::npos) << delegated.output;

  Result plain = run({"mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", RANK_PROBE_PATH}, env);
  ASSERT_EQ(plain.exit_code(), 0) << plain.output;
  Result own = run(gfrun({"-np", "2"}));
  ASSERT_EQ(own.exit_code(), 0) << own.output;

  // TF_CONFIG: two workers on this host, each process told its task.
  std::string tf_output;
  for (int index = 0; index < 2; ++index) {
    std::string config = R"({"cluster":{"worker":["localhost:12345","localhost:12346"]},"task":{"type":"worker","index":)" +
                         std::to_string(index) + "}}";
    Result tf = run({RANK_PROBE_PATH}, {{"TF_CONFIG", config}});
    ASSERT_EQ(tf.exit_code(), 0) << tf.output;
    EXPECT_NE(tf.output.find("source=tf_config"), std::string::npos) << tf.output;
    tf_output += tf.output;
  }

  EXPECT_EQ(layouts(delegated.output).size(), 2u);
  EXPECT_EQ(layouts(delegated.output), layouts(plain.output));
  EXPECT_EQ(layouts(plain.output), layouts(own.output));
  EXPECT_EQ(layouts(own.output), layouts(tf_output));

  Result failing = run(gfrun({"--backend", "mpi", "-np", "2", "--oversubscribe"}), [&] {
    auto e = env;
    e["PROBE_FAIL"] = "1:4";
    e["PROBE_SLEEP_S"] = "60";
    return e;
  }());
  EXPECT_NE(failing.exit_code(), 0) << failing.output;
  EXPECT_LT(failing.took, 30s) << failing.output;
}

}  // namespace
