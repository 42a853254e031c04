// A rank for the launcher tests: resolves its job from the environment as every gradflow program does
// and prints one line with the layout, then behaves as PROBE_* variables say:
//   PROBE_FAIL=R:C       rank R exits with status C after PROBE_DELAY_MS (default 200)
//   PROBE_KILL=R         rank R kills itself with SIGKILL after the delay
//   PROBE_SLEEP_S=S      every other rank sleeps S seconds before exiting 0
//   PROBE_IGNORE_TERM=1  ignore SIGTERM (a hung rank: only SIGKILL ends it)
//   PROBE_LINES=N        print N long lines (output interleaving checks)
//   PROBE_SUCCEED_ON_RESTART=K  exit 9 unless GRADFLOW_RESTART_COUNT >= K
//   PROBE_READ_STDIN=1   read one line of stdin and print it ("stdin rank=R: <line>", or "<eof>")
// The first line also reports the working directory and how many CPUs the rank may run on.
// Links cluster/ only, like the launcher.
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "cluster/environment.h"

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v ? std::atoi(v) : fallback;
}

}  // namespace

int main() {
  using namespace gradflow::cluster;
  absl::StatusOr<JobInfo> job = resolve_job(current_environment());
  if (!job.ok()) {
    std::fprintf(stderr, "rank_probe: %s\n", job.status().ToString().c_str());
    return 2;
  }
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  ::sched_getaffinity(0, sizeof(cpus), &cpus);
  char cwd[4096] = {};
  if (::getcwd(cwd, sizeof(cwd) - 1) == nullptr) cwd[0] = '?';
  std::printf("probe rank=%d world=%d local=%d/%d node=%d/%d source=%s token=%s restart=%s pid=%d cpus=%d cwd=%s\n",
              job->rank,
              job->world_size, job->local_rank, job->local_size, job->node_rank, job->num_nodes,
              std::string(job_source_name(job->source)).c_str(), job->job_token.empty() ? "none" : "set",
              std::getenv("GRADFLOW_RESTART_COUNT") ? std::getenv("GRADFLOW_RESTART_COUNT") : "unset",
              static_cast<int>(::getpid()), CPU_COUNT(&cpus), cwd);
  std::fflush(stdout);
  if (env_int("PROBE_READ_STDIN", 0)) {
    std::string line;
    bool got = static_cast<bool>(std::getline(std::cin, line));
    std::printf("stdin rank=%d: %s\n", job->rank, got ? line.c_str() : "<eof>");
    std::fflush(stdout);
  }
  if (env_int("PROBE_IGNORE_TERM", 0)) ::signal(SIGTERM, SIG_IGN);
  int lines = env_int("PROBE_LINES", 0);
  std::string filler(200, 'a' + static_cast<char>(job->rank % 26));
  for (int i = 0; i < lines; ++i) std::printf("line %d of rank %d %s\n", i, job->rank, filler.c_str());
  std::fflush(stdout);
  if (int needed = env_int("PROBE_SUCCEED_ON_RESTART", -1); needed >= 0) {
    return env_int("GRADFLOW_RESTART_COUNT", 0) >= needed ? 0 : 9;
  }
  auto delay = std::chrono::milliseconds(env_int("PROBE_DELAY_MS", 200));
  if (const char* fail = std::getenv("PROBE_FAIL")) {
    int rank = 0, code = 0;
    if (std::sscanf(fail, "%d:%d", &rank, &code) == 2 && rank == job->rank) {
      std::this_thread::sleep_for(delay);
      return code;
    }
  }
  if (const char* kill = std::getenv("PROBE_KILL"); kill && std::atoi(kill) == job->rank) {
    std::this_thread::sleep_for(delay);
    ::raise(SIGKILL);
  }
  std::this_thread::sleep_for(std::chrono::seconds(env_int("PROBE_SLEEP_S", 0)));
  return 0;
}
