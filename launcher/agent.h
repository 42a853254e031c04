// The per-host agent of a multi-host gfrun job. gfrun on the first host starts one agent on every other
// host through the rsh agent (`ssh host gfrun --agent <plan>`, or a script that enters a network
// namespace), with the plan of that host's ranks hex-encoded in one argument so that no shell between the
// hosts can split or reinterpret it. The agent starts and supervises those ranks like gfrun does (their
// output comes back tagged and whole-line over the rsh connection) and exits with the first failure's
// status. It stops its ranks (SIGTERM, then SIGKILL after the grace period) when its stdin closes: that
// is gfrun going away or tearing the job down, over ssh as much as locally.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "launcher/job_env.h"

namespace gradflow::launcher {

struct AgentPlan {
  std::vector<RankPlace> ranks;       // this host's ranks
  int world_size = 1;
  JobIdentity job;
  std::vector<std::string> exports;   // resolved "VAR=value" (the values of the first host)
  std::vector<std::string> program;
  std::string wdir;
  bool bind_core = false;
  bool tag_output = false;
  std::string output_dir;             // empty: none
  int grace_period_s = 10;
  // Under srun (one agent per node of a Slurm allocation): the plan holds every rank and the agent runs
  // those whose host is its node (SLURMD_NODENAME); srun, not stdin, tells it when to stop.
  bool select_by_slurm_node = false;
};

// The plan as one shell-safe argument, and back (kInvalidArgument naming what is wrong).
std::string encode_agent_plan(const AgentPlan& plan);
absl::StatusOr<AgentPlan> decode_agent_plan(const std::string& text);

// Runs the plan's ranks on this host; returns the exit status for the agent.
int run_agent(const AgentPlan& plan);

}  // namespace gradflow::launcher
