// gfrun: gradflow's mpirun-compatible launcher (docs/launcher.md).
//
// With --backend mpi it delegates to OpenMPI's mpirun; otherwise it starts the ranks itself with the
// environment of DESIGN.md's contract, supervises them (supervisor.h) and, with --max-restarts, starts
// a failed job again. Exit status: 0, the first failed rank's status (128+signal for a signal), 124 for
// --timeout, 2 for a bad command line.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <thread>

#include "cluster/environment.h"
#include "launcher/job_env.h"
#include "launcher/mpirun.h"
#include "launcher/options.h"
#include "launcher/placement.h"
#include "launcher/supervisor.h"

namespace gradflow::launcher {
namespace {

int fail(const std::string& message) {
  std::cerr << message << "\n";
  return 2;
}

// One attempt of the job: the processes to start.
absl::StatusOr<std::vector<ProcessSpec>> plan_attempt(const LaunchOptions& o, const Placement& placement,
                                                      const JobIdentity& job, const Environment& base) {
  std::vector<ProcessSpec> specs;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (const RankPlace& place : placement.ranks) {
    absl::StatusOr<std::vector<std::string>> env = rank_environment(base, o.exports, placement, place, job);
    if (!env.ok()) return env.status();
    ProcessSpec spec;
    spec.rank = place.rank;
    spec.where = place.host;
    spec.argv = o.program;
    spec.env = std::move(*env);
    spec.wdir = o.wdir.value_or("");
    if (o.bind_to == BindTo::kCore) spec.cpu = place.local_rank % cores;
    spec.gets_stdin = place.rank == 0;
    specs.push_back(std::move(spec));
  }
  return specs;
}

int run(const LaunchOptions& o) {
  Environment base = cluster::current_environment();
  int attempts = o.max_restarts + 1;
  std::string token = new_job_token();
  for (int attempt = 0; attempt < attempts; ++attempt) {
    JobIdentity job{.token = token, .restart_count = attempt, .backend = o.backend};
    JobOutcome outcome;
    if (o.backend == "mpi") {
      ::setenv("GRADFLOW_JOB_TOKEN", token.c_str(), 1);
      ::setenv("GRADFLOW_RESTART_COUNT", std::to_string(attempt).c_str(), 1);
      ::setenv("GRADFLOW_BACKEND", o.backend.c_str(), 1);
      ProcessSpec mpirun{.rank = 0, .argv = mpirun_command(o, ::geteuid() == 0), .gets_stdin = true};
      for (const auto& [name, value] : cluster::current_environment()) mpirun.env.push_back(name + "=" + value);
      if (o.verbose) {
        std::string line = "gfrun: delegating to";
        for (const std::string& a : mpirun.argv) line += " " + a;
        std::cerr << line << "\n";
      }
      OutputRelay output(false, std::nullopt);  // mpirun tags and files output itself
      outcome = run_job({mpirun}, output, {.grace_period = std::chrono::seconds(o.grace_period_s)});
    } else {
      absl::StatusOr<std::vector<cluster::HostSlots>> hosts =
          hosts_from_options(o, static_cast<int>(std::thread::hardware_concurrency()));
      if (!hosts.ok()) return fail(std::string(hosts.status().message()));
      absl::StatusOr<Placement> placement = place_ranks(o, *hosts);
      if (!placement.ok()) return fail(std::string(placement.status().message()));
      for (const std::string& node : placement->nodes) {
        if (!is_local_host(node)) {
          return fail("gfrun: host " + node + " is not this machine; gfrun starts ranks on this machine only so "
                      "far (use --backend mpi to delegate multi-host jobs to mpirun)");
        }
      }
      job.master_addr = "127.0.0.1";
      job.master_port = o.master_port.value_or(free_local_port());
      absl::StatusOr<std::vector<ProcessSpec>> specs = plan_attempt(o, *placement, job, base);
      if (!specs.ok()) return fail(std::string(specs.status().message()));
      if (o.verbose) {
        for (const RankPlace& p : placement->ranks) {
          std::cerr << "gfrun: rank " << p.rank << " on " << p.host << " (node " << p.node_rank << ", local rank "
                    << p.local_rank << " of " << p.local_size << ")\n";
        }
      }
      OutputRelay output(o.tag_output, o.output_filename);
      SupervisorOptions supervise{.grace_period = std::chrono::seconds(o.grace_period_s)};
      if (o.timeout_s) supervise.timeout = std::chrono::seconds(*o.timeout_s);
      outcome = run_job(*specs, output, supervise);
    }
    if (outcome.exit_code == 0) return 0;
    if (outcome.stopped_by_user || outcome.exit_code == 124 || attempt + 1 == attempts) {
      std::cerr << "gfrun: job failed: " << outcome.summary << " (exit status " << outcome.exit_code << ")\n";
      return outcome.exit_code;
    }
    std::cerr << "gfrun: restarting the job (restart " << attempt + 1 << " of " << o.max_restarts
              << ") after: " << outcome.summary << "\n";
  }
  return 1;
}

}  // namespace
}  // namespace gradflow::launcher

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << gradflow::launcher::usage();
    return 0;
  }
  absl::StatusOr<gradflow::launcher::LaunchOptions> options = gradflow::launcher::parse_command_line(args);
  if (!options.ok()) {
    std::cerr << options.status().message() << "\n" << "usage: gfrun [options] program [args...] (gfrun --help)\n";
    return 2;
  }
  return gradflow::launcher::run(*options);
}
