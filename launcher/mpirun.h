// Delegation to OpenMPI's mpirun, for jobs that use the MPI backend (--backend mpi): gfrun's command line
// translated to mpirun's, with what running as root and oversubscription need, and gradflow's variables
// exported (GRADFLOW_JOB_TOKEN, GRADFLOW_RESTART_COUNT, GRADFLOW_BACKEND).
#pragma once

#include <string>
#include <vector>

#include "launcher/options.h"

namespace gradflow::launcher {

// The mpirun command line (argv[0] is "mpirun"). running_as_root adds --allow-run-as-root as mpirun
// requires; gradflow's variables must be in the environment mpirun runs with (it exports them by name).
std::vector<std::string> mpirun_command(const LaunchOptions& options, bool running_as_root);

}  // namespace gradflow::launcher
