// Slurm hostlists and tasks-per-node strings, as in SLURM_JOB_NODELIST and SLURM_TASKS_PER_NODE.
//
//   expand_hostlist("gpu-[01-03,07],cpu[1-2]-ib")
//     // {"gpu-01", "gpu-02", "gpu-03", "gpu-07", "cpu1-ib", "cpu2-ib"}
//   expand_hostlist("rack[1-2]-node[01-02]")   // rack1-node01, rack1-node02, rack2-node01, rack2-node02
//   compress_hostlist({"n01", "n02", "n03", "n07", "login"})   // "n[01-03,07],login"
//   expand_tasks_per_node("2(x3),1")           // {2, 2, 2, 1}
//
// Syntax: comma-separated items (commas inside brackets belong to the group); an item is text with any number
// of bracket groups, each a comma-separated list of N or LO-HI ranges. A range keeps the zero padding of LO
// ("[08-10]" -> 08, 09, 10). Several groups multiply, the first varying slowest, as Slurm orders them.
// Every error is kInvalidArgument and names `what` (the variable, e.g. "SLURM_JOB_NODELIST") and the value.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gradflow::cluster {

// At most this many hosts come out of one expansion; more is reported as an error, not allocated.
inline constexpr size_t kMaxExpandedHosts = 1 << 20;

// The host names in a Slurm hostlist, in order (duplicates kept). An empty list is an error.
absl::StatusOr<std::vector<std::string>> expand_hostlist(std::string_view hostlist,
                                                         std::string_view what = "hostlist");

// A hostlist that expands back to hosts, in the same order: runs of names that differ only in their last
// number (same width) share one bracket group. Names without a number are listed as they are.
std::string compress_hostlist(const std::vector<std::string>& hosts);

// Slurm's tasks-per-node form: comma-separated "N" or "N(xM)" (N tasks on each of M nodes), one count per
// node, e.g. "2(x3),1" -> {2, 2, 2, 1}.
absl::StatusOr<std::vector<int>> expand_tasks_per_node(std::string_view value,
                                                       std::string_view what = "tasks per node");

}  // namespace gradflow::cluster
