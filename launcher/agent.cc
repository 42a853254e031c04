#include "launcher/agent.h"

#include <thread>

#include "cluster/environment.h"
#include "launcher/supervisor.h"
#include "nlohmann/json.hpp"

namespace gradflow::launcher {

std::string encode_agent_plan(const AgentPlan& p) {
  nlohmann::json ranks = nlohmann::json::array();
  for (const RankPlace& r : p.ranks) {
    ranks.push_back({{"rank", r.rank}, {"host", r.host}, {"node", r.node_rank}, {"local", r.local_rank},
                     {"local_size", r.local_size}});
  }
  nlohmann::json j{{"ranks", ranks},
                   {"world_size", p.world_size},
                   {"master_addr", p.job.master_addr},
                   {"master_port", p.job.master_port},
                   {"token", p.job.token},
                   {"restart", p.job.restart_count},
                   {"backend", p.job.backend},
                   {"exports", p.exports},
                   {"program", p.program},
                   {"wdir", p.wdir},
                   {"bind_core", p.bind_core},
                   {"tag_output", p.tag_output},
                   {"output_dir", p.output_dir},
                   {"grace", p.grace_period_s},
                   {"slurm", p.select_by_slurm_node}};
  std::string text = j.dump(), hex;
  static const char digits[] = "0123456789abcdef";
  for (unsigned char c : text) {
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  return hex;
}

absl::StatusOr<AgentPlan> decode_agent_plan(const std::string& hex) {
  auto nibble = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("gfrun --agent: the plan has an odd number of digits");
  std::string text;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return absl::InvalidArgumentError("gfrun --agent: the plan is not hex");
    text += static_cast<char>(hi * 16 + lo);
  }
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    AgentPlan p;
    for (const nlohmann::json& r : j.at("ranks")) {
      p.ranks.push_back({r.at("rank").get<int>(), r.at("host").get<std::string>(), r.at("node").get<int>(),
                         r.at("local").get<int>(), r.at("local_size").get<int>()});
    }
    p.world_size = j.at("world_size").get<int>();
    p.job = {j.at("master_addr").get<std::string>(), j.at("master_port").get<int>(), j.at("token").get<std::string>(),
             j.at("restart").get<int>(), j.at("backend").get<std::string>()};
    p.exports = j.at("exports").get<std::vector<std::string>>();
    p.program = j.at("program").get<std::vector<std::string>>();
    p.wdir = j.at("wdir").get<std::string>();
    p.bind_core = j.at("bind_core").get<bool>();
    p.tag_output = j.at("tag_output").get<bool>();
    p.output_dir = j.at("output_dir").get<std::string>();
    p.grace_period_s = j.at("grace").get<int>();
    p.select_by_slurm_node = j.at("slurm").get<bool>();
    return p;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(std::string("gfrun --agent: bad plan: ") + e.what());
  }
}

int run_agent(const AgentPlan& plan) {
  Environment base = cluster::current_environment();
  int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<ProcessSpec> specs;
  std::string node = base.count("SLURMD_NODENAME") ? base.at("SLURMD_NODENAME") : "";
  for (const RankPlace& place : plan.ranks) {
    if (plan.select_by_slurm_node && place.host != node) continue;
    absl::StatusOr<std::vector<std::string>> env = rank_environment(base, plan.exports, plan.world_size, place, plan.job);
    if (!env.ok()) {
      std::fprintf(stderr, "%s\n", std::string(env.status().message()).c_str());
      return 2;
    }
    ProcessSpec spec{.rank = place.rank, .where = place.host, .argv = plan.program, .env = std::move(*env),
                     .wdir = plan.wdir};
    if (plan.bind_core) spec.cpu = place.local_rank % cores;
    specs.push_back(std::move(spec));
  }
  OutputRelay output(plan.tag_output, plan.output_dir.empty() ? std::nullopt : std::optional(plan.output_dir));
  if (specs.empty()) return 0;  // a node of the allocation that got no ranks
  JobOutcome outcome = run_job(specs, output, {.grace_period = std::chrono::seconds(plan.grace_period_s),
                                               .stop_when_stdin_closes = !plan.select_by_slurm_node});
  return outcome.exit_code;
}

}  // namespace gradflow::launcher
