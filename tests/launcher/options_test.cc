// gfrun's command line, placement, rank environment and mpirun translation, without starting anything.
#include <gtest/gtest.h>

#include <set>

#include "launcher/job_env.h"
#include "launcher/mpirun.h"
#include "launcher/options.h"
#include "launcher/placement.h"

namespace gradflow::launcher {
namespace {

LaunchOptions parse_ok(std::vector<std::string> args) {
  absl::StatusOr<LaunchOptions> o = parse_command_line(args);
  EXPECT_TRUE(o.ok()) << o.status();
  return o.ok() ? *o : LaunchOptions{};
}

void expect_error(std::vector<std::string> args, const std::string& text) {
  absl::StatusOr<LaunchOptions> o = parse_command_line(args);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(std::string(o.status().message()).find(text), std::string::npos) << o.status();
}

TEST(CommandLine, MpirunsFlagsAndTheProgramsOwn) {
  LaunchOptions o = parse_ok({"-np", "4", "-H", "a:2,b:2", "-x", "OMP_NUM_THREADS=1", "-x", "PATH", "--bind-to",
                              "core", "--oversubscribe", "--allow-run-as-root", "--tag-output", "-wdir", "/tmp",
                              "--mca", "btl", "self,vader", "--timeout", "60", "./train", "-np", "7", "--epochs=3"});
  EXPECT_EQ(o.np, 4);
  EXPECT_EQ(o.host_lists, (std::vector<std::string>{"a:2,b:2"}));
  EXPECT_EQ(o.exports, (std::vector<std::string>{"OMP_NUM_THREADS=1", "PATH"}));
  EXPECT_EQ(o.bind_to, BindTo::kCore);
  EXPECT_TRUE(o.oversubscribe && o.allow_run_as_root && o.tag_output);
  EXPECT_EQ(o.wdir, "/tmp");
  EXPECT_EQ(o.mca.size(), 1u);
  EXPECT_EQ(o.timeout_s, 60);
  // Options end at the program: its own -np belongs to it.
  EXPECT_EQ(o.program, (std::vector<std::string>{"./train", "-np", "7", "--epochs=3"}));
}

TEST(CommandLine, SpellingsAndGfrunsOwnFlags) {
  LaunchOptions o = parse_ok({"-n", "2", "--host=h1", "--machinefile", "hosts", "--map-by", "ppr:2:node",
                              "--backend", "gloo", "--max-restarts", "3", "--rsh-agent", "ssh -p 2222",
                              "--master-port=29501", "--grace-period", "5", "--", "prog"});
  EXPECT_EQ(o.np, 2);
  EXPECT_EQ(o.host_lists, (std::vector<std::string>{"h1"}));
  EXPECT_EQ(o.hostfile, "hosts");
  EXPECT_EQ(o.per_node, 2);
  EXPECT_EQ(o.backend, "gloo");
  EXPECT_EQ(o.max_restarts, 3);
  EXPECT_EQ(o.rsh_agent, "ssh -p 2222");
  EXPECT_EQ(o.master_port, 29501);
  EXPECT_EQ(o.grace_period_s, 5);
  EXPECT_EQ(o.program, (std::vector<std::string>{"prog"}));
  EXPECT_EQ(parse_ok({"-N", "3", "p"}).per_node, 3);
}

TEST(CommandLine, BadInputNamesTheOptionAndValue) {
  expect_error({"-np", "0", "p"}, "-np \"0\": must be at least 1");
  expect_error({"-np", "x", "p"}, "-np \"x\": not an integer");
  expect_error({"--bind-to", "socket", "p"}, "--bind-to \"socket\"");
  expect_error({"--backend", "tcp", "p"}, "--backend \"tcp\": must be mpi, gloo, nccl or auto");
  expect_error({"--map-by", "core", "p"}, "--map-by \"core\"");
  expect_error({"--master-port", "70000", "p"}, "at most 65535");
  expect_error({"--bogus", "p"}, "--bogus");
  expect_error({"-np"}, "-np");
  expect_error({"-np", "2"}, "no program given");
}

TEST(Placement, FillsSlotsHostByHost) {
  LaunchOptions o = parse_ok({"-np", "5", "-H", "a:2,b:4", "p"});
  absl::StatusOr<std::vector<cluster::HostSlots>> hosts = hosts_from_options(o, 8);
  ASSERT_TRUE(hosts.ok());
  absl::StatusOr<Placement> p = place_ranks(o, *hosts);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->ranks.size(), 5u);
  EXPECT_EQ(p->nodes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(p->ranks[1].host, "a");
  EXPECT_EQ(p->ranks[1].local_rank, 1);
  EXPECT_EQ(p->ranks[1].local_size, 2);
  EXPECT_EQ(p->ranks[2].host, "b");
  EXPECT_EQ(p->ranks[2].node_rank, 1);
  EXPECT_EQ(p->ranks[4].local_rank, 2);
  EXPECT_EQ(p->ranks[4].local_size, 3);
}

TEST(Placement, PerNodeAndDefaults) {
  LaunchOptions o = parse_ok({"-N", "2", "-H", "a:4,b:4,c:4", "p"});
  absl::StatusOr<Placement> p = place_ranks(o, *hosts_from_options(o, 8));
  ASSERT_TRUE(p.ok());
  ASSERT_EQ(p->ranks.size(), 6u);  // -np defaults to 2 on each host
  EXPECT_EQ(p->ranks[5].host, "c");
  EXPECT_EQ(p->ranks[5].local_rank, 1);
  LaunchOptions local = parse_ok({"p"});
  absl::StatusOr<Placement> all_cores = place_ranks(local, *hosts_from_options(local, 3));
  ASSERT_TRUE(all_cores.ok());
  EXPECT_EQ(all_cores->ranks.size(), 3u);  // one per core of this machine
  EXPECT_EQ(all_cores->nodes, (std::vector<std::string>{"localhost"}));
}

TEST(Placement, OversubscriptionAsMpirunAllowsIt) {
  LaunchOptions o = parse_ok({"-np", "5", "-H", "a:2,b:1", "p"});
  absl::StatusOr<Placement> refused = place_ranks(o, *hosts_from_options(o, 8));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(std::string(refused.status().message()).find("the hosts have 3 slots (pass --oversubscribe"),
            std::string::npos);
  o.oversubscribe = true;
  absl::StatusOr<Placement> p = place_ranks(o, *hosts_from_options(o, 8));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->ranks[4].host, "b");  // extra ranks go round the hosts
  std::vector<cluster::HostSlots> capped{{"a", 1, 2}};
  o.np = 3;
  EXPECT_FALSE(place_ranks(o, capped).ok());  // never beyond max_slots
  EXPECT_FALSE(place_ranks(parse_ok({"-np", "7", "-N", "2", "-H", "a,b,c", "p"}),
                           *hosts_from_options(parse_ok({"-H", "a,b,c", "p"}), 1))
                   .ok());
}

TEST(RankEnvironment, TheContractWithoutOtherLaunchersVariables) {
  LaunchOptions o = parse_ok({"-np", "3", "-H", "a:2,b:2", "-x", "A=1", "-x", "HOME", "p"});
  Placement p = *place_ranks(o, *hosts_from_options(o, 1));
  Environment base{{"HOME", "/root"}, {"OMPI_COMM_WORLD_RANK", "3"}, {"SLURM_PROCID", "1"}, {"TF_CONFIG", "{}"},
                   {"PMIX_RANK", "0"}, {"KEEP", "yes"}};
  absl::StatusOr<std::vector<std::string>> env =
      rank_environment(base, o.exports, 3, p.ranks[2], {"a", 29500, "tok", 1, "gloo"});
  ASSERT_TRUE(env.ok()) << env.status();
  std::set<std::string> vars(env->begin(), env->end());
  for (const char* want : {"RANK=2", "WORLD_SIZE=3", "LOCAL_RANK=0", "LOCAL_WORLD_SIZE=1", "NODE_RANK=1",
                           "MASTER_ADDR=a", "MASTER_PORT=29500", "GRADFLOW_JOB_TOKEN=tok", "GRADFLOW_RESTART_COUNT=1",
                           "GRADFLOW_BACKEND=gloo", "A=1", "HOME=/root", "KEEP=yes"}) {
    EXPECT_TRUE(vars.count(want)) << want;
  }
  for (const std::string& v : *env) {
    EXPECT_NE(v.rfind("OMPI_COMM_WORLD_", 0), 0u) << v;
    EXPECT_NE(v.rfind("SLURM_PROCID", 0), 0u) << v;
    EXPECT_NE(v.rfind("TF_CONFIG", 0), 0u) << v;
    EXPECT_NE(v.rfind("PMIX_RANK", 0), 0u) << v;
  }
  absl::StatusOr<std::vector<std::string>> missing =
      rank_environment(base, {"NOT_SET_ANYWHERE"}, 3, p.ranks[0], {"a", 1, "t", 0, "auto"});
  EXPECT_FALSE(missing.ok());
}

TEST(Mpirun, TranslatedCommandLine) {
  LaunchOptions o = parse_ok({"-np", "4", "-H", "a:2,b:2", "-N", "2", "-x", "X=1", "--tag-output", "--mca", "btl",
                              "self,tcp", "--rsh-agent", "nsrsh.sh", "--backend", "mpi", "prog", "arg"});
  std::vector<std::string> cmd = mpirun_command(o, true);
  std::string joined;
  for (const std::string& a : cmd) joined += a + " ";
  EXPECT_EQ(joined,
            "mpirun --allow-run-as-root -np 4 --host a:2,b:2 --map-by ppr:2:node --bind-to none --tag-output --mca "
            "plm_rsh_agent nsrsh.sh --mca btl self,tcp -x X=1 -x GRADFLOW_JOB_TOKEN -x GRADFLOW_RESTART_COUNT -x "
            "GRADFLOW_BACKEND prog arg ");
}

TEST(JobIdentityHelpers, TokensDifferAndPortsAreFree) {
  EXPECT_EQ(new_job_token().size(), 32u);
  EXPECT_NE(new_job_token(), new_job_token());
  EXPECT_GT(free_local_port(), 0);
}

}  // namespace
}  // namespace gradflow::launcher
