// gfrun: gradflow's mpirun-compatible launcher (docs/launcher.md).
//
// With --backend mpi it delegates to OpenMPI's mpirun; otherwise it starts the ranks itself with the
// environment of DESIGN.md's contract, supervises them (supervisor.h) and, with --max-restarts, starts
// a failed job again. Exit status: 0, the first failed rank's status (128+signal for a signal), 124 for
// --timeout, 2 for a bad command line.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "cluster/environment.h"
#include "launcher/agent.h"
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

std::vector<std::string> split_words(const std::string& text) {
  std::vector<std::string> words;
  std::string word;
  for (char c : text + " ") {
    if (c == ' ' || c == '\t') {
      if (!word.empty()) words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  return words;
}

std::string self_path() {
  char path[4096] = {};
  ssize_t n = ::readlink("/proc/self/exe", path, sizeof(path) - 1);
  return n > 0 ? std::string(path, static_cast<size_t>(n)) : "gfrun";
}

// Where rank 0 serves the store, as every rank can reach it: loopback for a job on this machine; rank 0's
// host name (this machine's hostname when that is this machine) otherwise.
std::string master_address(const Placement& placement) {
  bool all_local = std::all_of(placement.nodes.begin(), placement.nodes.end(), is_local_host);
  if (all_local) return "127.0.0.1";
  const std::string& first = placement.nodes[0];
  if (!is_local_host(first)) return first;
  char name[256] = {};
  ::gethostname(name, sizeof(name) - 1);
  return name;
}

AgentPlan agent_plan(const LaunchOptions& o, std::vector<RankPlace> ranks, int world, const JobIdentity& job,
                     const std::vector<std::string>& exports) {
  return AgentPlan{.ranks = std::move(ranks), .world_size = world, .job = job, .exports = exports,
                   .program = o.program, .wdir = o.wdir.value_or(""), .bind_core = o.bind_to == BindTo::kCore,
                   .tag_output = o.tag_output, .output_dir = o.output_filename.value_or(""),
                   .grace_period_s = o.grace_period_s};
}

// Inside a Slurm allocation: one srun step with an agent on each node that got ranks.
ProcessSpec slurm_step(const LaunchOptions& o, const Placement& placement, const JobIdentity& job,
                       const std::vector<std::string>& exports, const Environment& base) {
  AgentPlan plan = agent_plan(o, placement.ranks, static_cast<int>(placement.ranks.size()), job, exports);
  plan.select_by_slurm_node = true;
  std::string nodes;
  for (const std::string& n : placement.nodes) nodes += (nodes.empty() ? "" : ",") + n;
  std::string count = std::to_string(placement.nodes.size());
  ProcessSpec step;
  step.label = "srun (the agents on " + nodes + ")";
  step.argv = {"srun", "--nodes=" + count, "--ntasks=" + count, "--ntasks-per-node=1", "--nodelist=" + nodes,
               "--overlap", "--kill-on-bad-exit=1", self_path(), "--agent", encode_agent_plan(plan)};
  for (const auto& [name, value] : base) step.env.push_back(name + "=" + value);
  step.raw_output = true;
  return step;
}

// One attempt of the job: a process per rank on this machine, an agent per other host (or, in a Slurm
// allocation, one srun step of agents).
absl::StatusOr<std::vector<ProcessSpec>> plan_attempt(const LaunchOptions& o, const Placement& placement,
                                                      const JobIdentity& job, const Environment& base,
                                                      bool in_slurm) {
  std::vector<ProcessSpec> specs;
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int world = static_cast<int>(placement.ranks.size());
  absl::StatusOr<std::vector<std::string>> exports = resolve_exports(base, o.exports);
  if (!exports.ok()) return exports.status();
  if (in_slurm) return std::vector<ProcessSpec>{slurm_step(o, placement, job, *exports, base)};
  for (size_t node = 0; node < placement.nodes.size(); ++node) {
    const std::string& host = placement.nodes[node];
    std::vector<RankPlace> ranks;
    for (const RankPlace& p : placement.ranks) {
      if (p.node_rank == static_cast<int>(node)) ranks.push_back(p);
    }
    if (!is_local_host(host)) {
      AgentPlan plan = agent_plan(o, ranks, world, job, *exports);
      ProcessSpec agent;
      agent.rank = ranks.front().rank;
      agent.label = "the agent for ranks " + std::to_string(ranks.front().rank) + "-" +
                    std::to_string(ranks.back().rank) + " on " + host;
      agent.where = host;
      agent.argv = split_words(o.rsh_agent);
      agent.argv.insert(agent.argv.end(), {host, self_path(), "--agent", encode_agent_plan(plan)});
      agent.env.clear();
      for (const auto& [name, value] : base) agent.env.push_back(name + "=" + value);
      agent.stdin_mode = Stdin::kLifeline;
      agent.raw_output = true;
      specs.push_back(std::move(agent));
      continue;
    }
    for (const RankPlace& place : ranks) {
      absl::StatusOr<std::vector<std::string>> env = rank_environment(base, *exports, world, place, job);
      if (!env.ok()) return env.status();
      ProcessSpec spec;
      spec.rank = place.rank;
      spec.where = place.host;
      spec.argv = o.program;
      spec.env = std::move(*env);
      spec.wdir = o.wdir.value_or("");
      if (o.bind_to == BindTo::kCore) spec.cpu = place.local_rank % cores;
      spec.stdin_mode = place.rank == 0 ? Stdin::kForward : Stdin::kNull;
      specs.push_back(std::move(spec));
    }
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
      ProcessSpec mpirun{.rank = 0, .label = "mpirun", .argv = mpirun_command(o, ::geteuid() == 0), .stdin_mode = Stdin::kForward};
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
      // In a Slurm allocation without -H/--hostfile, the allocation's nodes are the hosts.
      bool in_slurm = false;
      if (o.host_lists.empty() && !o.hostfile) {
        absl::StatusOr<std::optional<std::vector<cluster::HostSlots>>> allocation = slurm_allocation_hosts(base);
        if (!allocation.ok()) return fail(std::string(allocation.status().message()));
        if (*allocation) {
          hosts = **allocation;
          in_slurm = true;
        }
      }
      absl::StatusOr<Placement> placement = place_ranks(o, *hosts);
      if (!placement.ok()) return fail(std::string(placement.status().message()));
      job.master_addr = master_address(*placement);
      // A free port here is a guess for another host; --master-port fixes it when the guess is poor.
      job.master_port = o.master_port.value_or(free_local_port());
      absl::StatusOr<std::vector<ProcessSpec>> specs = plan_attempt(o, *placement, job, base, in_slurm);
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
  if (args.size() == 2 && args[0] == "--agent") {  // started by gfrun on another host (agent.h)
    absl::StatusOr<gradflow::launcher::AgentPlan> plan = gradflow::launcher::decode_agent_plan(args[1]);
    if (!plan.ok()) {
      std::cerr << plan.status().message() << "\n";
      return 2;
    }
    return gradflow::launcher::run_agent(*plan);
  }
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
