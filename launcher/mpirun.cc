#include "launcher/mpirun.h"

namespace gradflow::launcher {

std::vector<std::string> mpirun_command(const LaunchOptions& o, bool running_as_root) {
  std::vector<std::string> cmd{"mpirun"};
  auto add = [&](std::initializer_list<std::string> args) { cmd.insert(cmd.end(), args); };
  if (o.allow_run_as_root || running_as_root) add({"--allow-run-as-root"});
  if (o.oversubscribe) add({"--oversubscribe"});
  if (o.np) add({"-np", std::to_string(*o.np)});
  for (const std::string& h : o.host_lists) add({"--host", h});
  if (o.hostfile) add({"--hostfile", *o.hostfile});
  if (o.per_node) add({"--map-by", "ppr:" + std::to_string(*o.per_node) + ":node"});
  add({"--bind-to", o.bind_to == BindTo::kCore ? "core" : "none"});
  if (o.tag_output) add({"--tag-output"});
  if (o.output_filename) add({"--output-filename", *o.output_filename});
  if (o.wdir) add({"--wdir", *o.wdir});
  if (o.timeout_s) add({"--timeout", std::to_string(*o.timeout_s)});
  if (o.rsh_agent != "ssh") add({"--mca", "plm_rsh_agent", o.rsh_agent});
  for (const auto& [key, value] : o.mca) add({"--mca", key, value});
  for (const std::string& x : o.exports) add({"-x", x});
  for (const char* name : {"GRADFLOW_JOB_TOKEN", "GRADFLOW_RESTART_COUNT", "GRADFLOW_BACKEND"}) add({"-x", name});
  cmd.insert(cmd.end(), o.program.begin(), o.program.end());
  return cmd;
}

}  // namespace gradflow::launcher
