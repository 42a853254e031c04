// Supervisor: starts a job's processes, relays their output, forwards stdin to the first one, and makes
// sure the job never sits half-dead: when any process exits non-zero or is killed, the others get SIGTERM,
// then SIGKILL after the grace period; SIGINT/SIGTERM/SIGHUP to gfrun, and --timeout, end the job the same
// way. Each process leads its own process group (so its children are signalled with it) and dies with
// gfrun (PR_SET_PDEATHSIG), so nothing is left behind even if gfrun is killed.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "launcher/output.h"

namespace gradflow::launcher {

// What a process's stdin is: /dev/null, gfrun's own stdin (rank 0), or a pipe gfrun keeps open and
// closes only when it ends (an agent on another host takes its closing as the order to stop).
enum class Stdin { kNull, kForward, kLifeline };

struct ProcessSpec {
  int rank = 0;                   // what output is tagged with
  std::string label;              // how failures name it; empty: "rank N (pid P on where)"
  std::string where = "localhost";
  std::vector<std::string> argv;  // argv[0] is looked up in PATH
  std::vector<std::string> env;   // "NAME=value", the whole environment
  std::string wdir;               // empty: gfrun's
  std::optional<int> cpu;         // pin to this core
  Stdin stdin_mode = Stdin::kNull;
  bool raw_output = false;        // relay its lines as they are (an agent's are tagged already)
};

struct JobOutcome {
  int exit_code = 0;         // 0, the first failed process's status, 128+signal, or 124 (timeout)
  bool stopped_by_user = false;  // gfrun got SIGINT/SIGTERM/SIGHUP: do not restart
  std::string summary;       // "rank 1 (pid 42 on localhost) exited with status 3", or empty
};

struct SupervisorOptions {
  std::chrono::seconds grace_period{10};
  std::optional<std::chrono::seconds> timeout;
  bool stop_when_stdin_closes = false;  // an agent: gfrun on the first host has gone or wants it to stop
};

// Runs the processes to the end and returns how the job ended. Progress messages ("gfrun: rank 1 ...
// exited with status 3 first; stopping the other 3") go to stderr.
JobOutcome run_job(const std::vector<ProcessSpec>& processes, OutputRelay& output, const SupervisorOptions& options);

// "exited with status 3", "was killed by signal 9 (Killed)".
std::string describe_wait_status(int status);
// The exit code gfrun passes on for a wait status: the status itself, or 128 + signal.
int exit_code_of(int status);

}  // namespace gradflow::launcher
