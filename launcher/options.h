// gfrun's command line: mpirun's (so scripts written for mpirun keep working) plus gfrun's own flags.
//
//   gfrun -np 4 -H node1:2,node2:2 -x OMP_NUM_THREADS=1 --tag-output ./train --epochs 5
//
// Options end at the program (the first argument that is not an option or an option's value, or the
// argument after `--`); everything after it is the program's. Unknown options are errors naming them:
// a typo must not silently become the program's name.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace gradflow::launcher {

enum class BindTo { kNone, kCore };

struct LaunchOptions {
  // mpirun's
  std::optional<int> np;                       // -np/-n; default: every slot of the hosts
  std::vector<std::string> host_lists;         // -H/--host (each a "host[:slots],..." list)
  std::optional<std::string> hostfile;         // --hostfile/--machinefile/-hostfile/-machinefile
  std::optional<int> per_node;                 // -N/--npernode/-npernode or --map-by ppr:N:node
  std::vector<std::string> exports;            // -x VAR or -x VAR=value
  BindTo bind_to = BindTo::kNone;              // --bind-to none|core
  bool oversubscribe = false;                  // --oversubscribe
  bool allow_run_as_root = false;              // --allow-run-as-root
  bool tag_output = false;                     // --tag-output
  std::optional<std::string> output_filename;  // --output-filename DIR
  std::optional<std::string> wdir;             // -wdir/--wdir/-wd/--wd DIR
  std::vector<std::pair<std::string, std::string>> mca;  // --mca/-mca KEY VALUE (for mpirun)
  std::optional<int> timeout_s;                // --timeout SECONDS: the whole job's wall-clock limit
  // gfrun's own
  std::string backend = "auto";    // --backend mpi|gloo|nccl|auto (mpi: delegate to mpirun)
  int max_restarts = 0;            // --max-restarts N
  std::string rsh_agent = "ssh";   // --rsh-agent CMD (may hold arguments: "ssh -p 2222")
  std::optional<int> master_port;  // --master-port PORT (default: a free port on rank 0's host)
  int grace_period_s = 10;         // --grace-period SECONDS between SIGTERM and SIGKILL
  bool verbose = false;            // -v/--verbose: print the launch plan

  std::vector<std::string> program;  // the program and its arguments
};

// Parses argv[1..] (without the program name "gfrun"). kInvalidArgument names the option and value.
absl::StatusOr<LaunchOptions> parse_command_line(const std::vector<std::string>& args);

// The usage text (every flag, one line each).
std::string usage();

}  // namespace gradflow::launcher
