#include "launcher/options.h"

#include <charconv>
#include <functional>
#include <map>

namespace gradflow::launcher {
namespace {

absl::Status invalid(const std::string& option, const std::string& value, const std::string& why) {
  return absl::InvalidArgumentError("gfrun: " + option + " \"" + value + "\": " + why);
}

absl::StatusOr<int> parse_count(const std::string& option, const std::string& value, int min_value) {
  int n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size()) return invalid(option, value, "not an integer");
  if (n < min_value) return invalid(option, value, "must be at least " + std::to_string(min_value));
  return n;
}

// "ppr:N:node" -> N. mpirun's other --map-by policies (slot, node, core, ...) are not supported.
absl::StatusOr<int> parse_map_by(const std::string& value) {
  const std::string prefix = "ppr:", suffix = ":node";
  if (value.rfind(prefix, 0) == 0 && value.size() > prefix.size() + suffix.size() &&
      value.compare(value.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return parse_count("--map-by", value.substr(prefix.size(), value.size() - prefix.size() - suffix.size()), 1);
  }
  if (value == "slot") return 0;  // the default: fill each host's slots in order
  return invalid("--map-by", value, "gfrun supports ppr:N:node and slot");
}

}  // namespace

absl::StatusOr<LaunchOptions> parse_command_line(const std::vector<std::string>& args) {
  LaunchOptions o;
  // Options with a value; the handler returns an error for a bad value.
  using Handler = std::function<absl::Status(const std::string& option, const std::string& value)>;
  auto count = [](std::optional<int>& field, int min_value) -> Handler {
    return [&field, min_value](const std::string& option, const std::string& value) {
      absl::StatusOr<int> n = parse_count(option, value, min_value);
      if (!n.ok()) return n.status();
      field = *n;
      return absl::OkStatus();
    };
  };
  auto text = [](std::optional<std::string>& field) -> Handler {
    return [&field](const std::string&, const std::string& value) {
      field = value;
      return absl::OkStatus();
    };
  };
  std::map<std::string, Handler> with_value{
      {"-np", count(o.np, 1)},
      {"-n", count(o.np, 1)},
      {"--np", count(o.np, 1)},
      {"-H", [&](const std::string&, const std::string& v) { o.host_lists.push_back(v); return absl::OkStatus(); }},
      {"--host", [&](const std::string&, const std::string& v) { o.host_lists.push_back(v); return absl::OkStatus(); }},
      {"-host", [&](const std::string&, const std::string& v) { o.host_lists.push_back(v); return absl::OkStatus(); }},
      {"--hostfile", text(o.hostfile)},
      {"-hostfile", text(o.hostfile)},
      {"--machinefile", text(o.hostfile)},
      {"-machinefile", text(o.hostfile)},
      {"-N", count(o.per_node, 1)},
      {"--npernode", count(o.per_node, 1)},
      {"-npernode", count(o.per_node, 1)},
      {"--map-by",
       [&](const std::string&, const std::string& v) {
         absl::StatusOr<int> n = parse_map_by(v);
         if (!n.ok()) return n.status();
         if (*n > 0) o.per_node = *n;
         return absl::OkStatus();
       }},
      {"-x", [&](const std::string&, const std::string& v) { o.exports.push_back(v); return absl::OkStatus(); }},
      {"--bind-to",
       [&](const std::string& option, const std::string& v) {
         if (v == "none") o.bind_to = BindTo::kNone;
         else if (v == "core") o.bind_to = BindTo::kCore;
         else return invalid(option, v, "gfrun supports none and core");
         return absl::OkStatus();
       }},
      {"--output-filename", text(o.output_filename)},
      {"-output-filename", text(o.output_filename)},
      {"-wdir", text(o.wdir)},
      {"--wdir", text(o.wdir)},
      {"-wd", text(o.wdir)},
      {"--wd", text(o.wdir)},
      {"--timeout", count(o.timeout_s, 1)},
      {"--backend",
       [&](const std::string& option, const std::string& v) {
         if (v != "mpi" && v != "gloo" && v != "nccl" && v != "auto") {
           return invalid(option, v, "must be mpi, gloo, nccl or auto");
         }
         o.backend = v;
         return absl::OkStatus();
       }},
      {"--max-restarts",
       [&](const std::string& option, const std::string& v) {
         absl::StatusOr<int> n = parse_count(option, v, 0);
         if (!n.ok()) return n.status();
         o.max_restarts = *n;
         return absl::OkStatus();
       }},
      {"--rsh-agent", [&](const std::string&, const std::string& v) { o.rsh_agent = v; return absl::OkStatus(); }},
      {"--master-port",
       [&](const std::string& option, const std::string& v) {
         absl::StatusOr<int> n = parse_count(option, v, 1);
         if (!n.ok()) return n.status();
         if (*n > 65535) return invalid(option, v, "must be at most 65535");
         o.master_port = *n;
         return absl::OkStatus();
       }},
      {"--grace-period",
       [&](const std::string& option, const std::string& v) {
         absl::StatusOr<int> n = parse_count(option, v, 0);
         if (!n.ok()) return n.status();
         o.grace_period_s = *n;
         return absl::OkStatus();
       }},
  };
  std::map<std::string, bool*> flags{
      {"--oversubscribe", &o.oversubscribe}, {"-oversubscribe", &o.oversubscribe},
      {"--allow-run-as-root", &o.allow_run_as_root}, {"--tag-output", &o.tag_output},
      {"-tag-output", &o.tag_output}, {"-v", &o.verbose}, {"--verbose", &o.verbose},
  };

  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a.empty() || a[0] != '-') break;  // the program
    if (auto f = flags.find(a); f != flags.end()) {
      *f->second = true;
      continue;
    }
    if (a == "--mca" || a == "-mca" || a == "--gmca") {
      if (i + 2 >= args.size()) return invalid(a, "", "needs a key and a value");
      o.mca.emplace_back(args[i + 1], args[i + 2]);
      i += 2;
      continue;
    }
    std::string option = a, value;
    bool inline_value = false;
    if (size_t eq = a.find('='); eq != std::string::npos && a.rfind("--", 0) == 0) {
      option = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    auto h = with_value.find(option);
    if (h == with_value.end()) return invalid(a, "", "unknown option (gfrun --help lists them)");
    if (!inline_value) {
      if (i + 1 >= args.size()) return invalid(option, "", "needs a value");
      value = args[++i];
    }
    if (absl::Status s = h->second(option, value); !s.ok()) return s;
  }
  o.program.assign(args.begin() + static_cast<long>(i), args.end());
  if (o.program.empty()) return absl::InvalidArgumentError("gfrun: no program given (gfrun [options] program [args])");
  return o;
}

std::string usage() {
  return R"(usage: gfrun [options] program [args...]

mpirun's options:
  -np, -n N                    number of ranks (default: every slot of the hosts)
  -H, --host host[:slots],...  hosts and their slots (may repeat)
  --hostfile, --machinefile F  OpenMPI hostfile ("host slots=N max_slots=M", # comments)
  -N, --npernode N             N ranks per host (also --map-by ppr:N:node)
  --map-by ppr:N:node|slot     placement: N per host, or fill each host's slots in order (default)
  -x VAR[=value]               export VAR (its value here, or value) to every rank
  --bind-to none|core          pin each rank to one core (core) or not (none, the default)
  --oversubscribe              allow more ranks than slots
  --allow-run-as-root          accepted (and passed to mpirun when delegating)
  --tag-output                 prefix each output line with [1,rank]<stdout>: or <stderr>:
  --output-filename DIR        also write each rank's output to DIR/1/rank.N/{stdout,stderr}
  -wdir, --wdir DIR            working directory of the ranks
  --mca KEY VALUE              passed to mpirun when delegating (ignored otherwise)
  --timeout SECONDS            end the whole job after this long (exit status 124)

gfrun's own:
  --backend mpi|gloo|nccl|auto mpi: delegate to OpenMPI's mpirun; otherwise gfrun starts the ranks itself
  --max-restarts N             relaunch a failed job up to N times (GRADFLOW_RESTART_COUNT tells the try)
  --rsh-agent CMD              how to reach other hosts (default: ssh)
  --master-port PORT           rank 0's rendezvous port (default: a free port)
  --grace-period SECONDS       between SIGTERM and SIGKILL when tearing a job down (default 10)
  -v, --verbose                print where each rank runs
)";
}

}  // namespace gradflow::launcher
