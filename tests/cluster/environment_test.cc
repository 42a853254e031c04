#include "cluster/environment.h"

#include <cstdlib>

#include <gtest/gtest.h>

#include "tests/cluster/expect_error.h"

namespace gradflow::cluster {
namespace {

using Hosts = std::vector<std::string>;

JobInfo resolve_ok(const EnvMap& env) {
  absl::StatusOr<JobInfo> job = resolve_job(env);
  EXPECT_TRUE(job.ok()) << job.status();
  return job.ok() ? *job : JobInfo{};
}

TEST(CurrentEnvironment, ReadsTheProcessEnvironment) {
  ASSERT_EQ(setenv("GRADFLOW_CLUSTER_TEST_VAR", "a=b", 1), 0);
  EnvMap env = current_environment();
  EXPECT_EQ(env.at("GRADFLOW_CLUSTER_TEST_VAR"), "a=b");
  unsetenv("GRADFLOW_CLUSTER_TEST_VAR");
}

TEST(SingleProcess, Defaults) {
  JobInfo job = resolve_ok({});
  EXPECT_EQ(job.source, JobSource::kSingleProcess);
  EXPECT_EQ(job_source_name(job.source), "single_process");
  EXPECT_EQ(job.rank, 0);
  EXPECT_EQ(job.world_size, 1);
  EXPECT_EQ(job.local_size, 1);
  EXPECT_EQ(job.num_nodes, 1);
  EXPECT_EQ(job.master_addr, "127.0.0.1");
  EXPECT_EQ(job.master_port, kDefaultMasterPort);
  EXPECT_EQ(job.gpu, 0);
  EXPECT_EQ(job.job_token, "");
  EXPECT_FALSE(job.roles.has_value());
}

TEST(Torchrun, AllVariables) {
  JobInfo job = resolve_ok({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"},
                            {"NODE_RANK", "1"}, {"MASTER_ADDR", "10.0.0.1"}, {"MASTER_PORT", "1234"},
                            {"GRADFLOW_JOB_TOKEN", "s3cret"}});
  EXPECT_EQ(job.source, JobSource::kTorchrun);
  EXPECT_EQ(job.rank, 5);
  EXPECT_EQ(job.world_size, 8);
  EXPECT_EQ(job.local_rank, 1);
  EXPECT_EQ(job.local_size, 4);
  EXPECT_EQ(job.node_rank, 1);
  EXPECT_EQ(job.num_nodes, 2);
  EXPECT_EQ(job.master_addr, "10.0.0.1");
  EXPECT_EQ(job.master_port, 1234);
  EXPECT_EQ(job.gpu, 1);
  EXPECT_EQ(job.job_token, "s3cret");
}

TEST(Torchrun, RankAndWorldSizeOnlyIsOneNode) {
  JobInfo job = resolve_ok({{"RANK", "2"}, {"WORLD_SIZE", "3"}});
  EXPECT_EQ(job.local_rank, 2);
  EXPECT_EQ(job.local_size, 3);
  EXPECT_EQ(job.node_rank, 0);
  EXPECT_EQ(job.num_nodes, 1);
  EXPECT_EQ(job.master_addr, "127.0.0.1");
  EXPECT_EQ(job.master_port, 29500);
}

TEST(Torchrun, NodeRankDerivedWhenAbsent) {
  JobInfo job = resolve_ok({{"RANK", "6"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "4"}});
  EXPECT_EQ(job.node_rank, 1);
  EXPECT_EQ(job.num_nodes, 2);
}

TEST(Torchrun, Malformed) {
  EXPECT_INVALID(resolve_job({{"RANK", "4"}, {"WORLD_SIZE", "4"}}), "RANK", "\"4\"");
  EXPECT_INVALID(resolve_job({{"RANK", "4"}, {"WORLD_SIZE", "4"}}), "WORLD_SIZE", "(4)");
  EXPECT_INVALID(resolve_job({{"RANK", "-1"}, {"WORLD_SIZE", "4"}}), "RANK", "\"-1\"");
  EXPECT_INVALID(resolve_job({{"RANK", "one"}, {"WORLD_SIZE", "4"}}), "RANK", "\"one\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "0"}}), "WORLD_SIZE", "\"0\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", " 4"}}), "WORLD_SIZE", "\" 4\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "99999999999"}}), "WORLD_SIZE", "\"99999999999\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}}), "WORLD_SIZE", "RANK");
  EXPECT_INVALID(resolve_job({{"WORLD_SIZE", "2"}}), "WORLD_SIZE", "\"2\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}}),
                 "LOCAL_RANK", "\"2\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "8"}}), "LOCAL_WORLD_SIZE",
                 "\"8\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_WORLD_SIZE", "2"}, {"NODE_RANK", "2"}}),
                 "NODE_RANK", "\"2\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"MASTER_PORT", "70000"}}), "MASTER_PORT",
                 "\"70000\"");
  EXPECT_INVALID(resolve_job({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"MASTER_PORT", "http"}}), "MASTER_PORT",
                 "\"http\"");
  EXPECT_INVALID(resolve_job({{"MASTER_ADDR", ""}}), "MASTER_ADDR", "\"\"");
}

TEST(OpenMpi, ReadsCommWorldVariables) {
  EnvMap env = {{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "4"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}, {"OMPI_COMM_WORLD_NODE_RANK", "1"}};
  JobInfo job = resolve_ok(env);
  EXPECT_EQ(job.source, JobSource::kOpenMpi);
  EXPECT_EQ(job.rank, 3);
  EXPECT_EQ(job.world_size, 4);
  EXPECT_EQ(job.local_rank, 1);
  EXPECT_EQ(job.local_size, 2);
  EXPECT_EQ(job.node_rank, 1);
  EXPECT_EQ(job.num_nodes, 2);
  EXPECT_TRUE(job.hosts.empty());
  EXPECT_EQ(job.master_addr, "127.0.0.1");
  EXPECT_EQ(job.master_port, 29500);
  env["MASTER_ADDR"] = "head";
  EXPECT_EQ(resolve_ok(env).master_addr, "head");
}

TEST(OpenMpi, Malformed) {
  EnvMap good = {{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                 {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}};
  auto with = [&](const std::string& name, const std::string& value) {
    EnvMap env = good;
    env[name] = value;
    return resolve_job(env);
  };
  EXPECT_INVALID(with("OMPI_COMM_WORLD_RANK", "2"), "OMPI_COMM_WORLD_RANK", "\"2\"");
  EXPECT_INVALID(with("OMPI_COMM_WORLD_RANK", "x"), "OMPI_COMM_WORLD_RANK", "\"x\"");
  EXPECT_INVALID(with("OMPI_COMM_WORLD_SIZE", "-2"), "OMPI_COMM_WORLD_SIZE", "\"-2\"");
  EXPECT_INVALID(with("OMPI_COMM_WORLD_LOCAL_RANK", "2"), "OMPI_COMM_WORLD_LOCAL_RANK", "\"2\"");
  EXPECT_INVALID(with("OMPI_COMM_WORLD_LOCAL_SIZE", "3"), "OMPI_COMM_WORLD_LOCAL_SIZE", "\"3\"");
  EnvMap missing = good;
  missing.erase("OMPI_COMM_WORLD_SIZE");
  EXPECT_INVALID(resolve_job(missing), "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK");
}

EnvMap slurm_env() {
  return {{"SLURM_PROCID", "5"},
          {"SLURM_NTASKS", "7"},
          {"SLURM_LOCALID", "1"},
          {"SLURM_NODEID", "2"},
          {"SLURM_JOB_NODELIST", "gpu-[01-04]"},
          {"SLURM_TASKS_PER_NODE", "2(x3),1"}};
}

TEST(Slurm, ReadsSrunVariables) {
  JobInfo job = resolve_ok(slurm_env());
  EXPECT_EQ(job.source, JobSource::kSlurm);
  EXPECT_EQ(job.rank, 5);
  EXPECT_EQ(job.world_size, 7);
  EXPECT_EQ(job.local_rank, 1);
  EXPECT_EQ(job.local_size, 2);
  EXPECT_EQ(job.node_rank, 2);
  EXPECT_EQ(job.num_nodes, 4);
  EXPECT_EQ(job.hosts, Hosts({"gpu-01", "gpu-02", "gpu-03", "gpu-04"}));
  EXPECT_EQ(job.master_addr, "gpu-01");
  EXPECT_EQ(job.master_port, 29500);
}

TEST(Slurm, StepVariablesWinOverJobVariables) {
  EnvMap env = slurm_env();
  env["SLURM_STEP_NODELIST"] = "gpu-[03-04]";
  env["SLURM_STEP_TASKS_PER_NODE"] = "1,2";
  env["SLURM_STEP_NUM_TASKS"] = "3";
  env["SLURM_PROCID"] = "2";
  env["SLURM_NODEID"] = "1";
  env["MASTER_ADDR"] = "10.1.1.1";
  env["MASTER_PORT"] = "4000";
  JobInfo job = resolve_ok(env);
  EXPECT_EQ(job.world_size, 3);
  EXPECT_EQ(job.hosts, Hosts({"gpu-03", "gpu-04"}));
  EXPECT_EQ(job.local_size, 2);
  EXPECT_EQ(job.num_nodes, 2);
  EXPECT_EQ(job.master_addr, "10.1.1.1");
  EXPECT_EQ(job.master_port, 4000);
}

TEST(Slurm, OneNodeWithoutListOrTasksPerNode) {
  JobInfo job = resolve_ok({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "1"}});
  EXPECT_EQ(job.local_size, 2);
  EXPECT_EQ(job.num_nodes, 1);
  EXPECT_EQ(job.master_addr, "127.0.0.1");
}

TEST(Slurm, Malformed) {
  auto with = [](const std::string& name, const std::string& value) {
    EnvMap env = slurm_env();
    env[name] = value;
    return resolve_job(env);
  };
  EXPECT_INVALID(with("SLURM_PROCID", "7"), "SLURM_PROCID", "\"7\"");
  EXPECT_INVALID(with("SLURM_PROCID", "abc"), "SLURM_PROCID", "\"abc\"");
  EXPECT_INVALID(with("SLURM_NTASKS", "-7"), "SLURM_NTASKS", "\"-7\"");
  EXPECT_INVALID(with("SLURM_LOCALID", "2"), "SLURM_LOCALID", "\"2\"");
  EXPECT_INVALID(with("SLURM_NODEID", "4"), "SLURM_NODEID", "\"4\"");
  EXPECT_INVALID(with("SLURM_JOB_NODELIST", "gpu-[01-04"), "SLURM_JOB_NODELIST", "\"gpu-[01-04\"");
  EXPECT_INVALID(with("SLURM_JOB_NODELIST", "gpu-[01-05]"), "SLURM_TASKS_PER_NODE", "\"2(x3),1\"");
  EXPECT_INVALID(with("SLURM_JOB_NODELIST", "gpu-[01-05]"), "SLURM_JOB_NODELIST", "gpu-[01-05]");
  EXPECT_INVALID(with("SLURM_TASKS_PER_NODE", "2(x2),1"), "SLURM_TASKS_PER_NODE", "\"2(x2),1\"");
  EXPECT_INVALID(with("SLURM_TASKS_PER_NODE", "2(x3),2"), "SLURM_TASKS_PER_NODE", "\"2(x3),2\"");
  EXPECT_INVALID(with("SLURM_TASKS_PER_NODE", "2(x3"), "SLURM_TASKS_PER_NODE", "\"2(x3\"");
  EXPECT_INVALID(resolve_job({{"SLURM_PROCID", "0"}}), "SLURM_NTASKS", "SLURM_PROCID");
  EXPECT_INVALID(resolve_job({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_NNODES", "2"}}),
                 "SLURM_TASKS_PER_NODE", "2 nodes");
}

TEST(Pmix, WithSizeVariables) {
  JobInfo job = resolve_ok({{"PMIX_RANK", "3"}, {"PMIX_SIZE", "4"}, {"PMIX_LOCAL_RANK", "1"}, {"PMIX_LOCAL_SIZE", "2"}});
  EXPECT_EQ(job.source, JobSource::kPmix);
  EXPECT_EQ(job.rank, 3);
  EXPECT_EQ(job.world_size, 4);
  EXPECT_EQ(job.local_rank, 1);
  EXPECT_EQ(job.node_rank, 1);
  EXPECT_EQ(job.num_nodes, 2);
  JobInfo defaults = resolve_ok({{"PMIX_RANK", "3"}, {"PMIX_SIZE", "4"}, {"PMIX_LOCAL_SIZE", "2"}});
  EXPECT_EQ(defaults.local_rank, 1);
  JobInfo one_node = resolve_ok({{"PMIX_RANK", "3"}, {"PMIX_SIZE", "4"}});
  EXPECT_EQ(one_node.local_rank, 3);
  EXPECT_EQ(one_node.local_size, 4);
}

TEST(Pmix, UnderSrunTakesTheLayoutFromSlurm) {
  EnvMap env = slurm_env();
  env["PMIX_RANK"] = "5";
  JobInfo job = resolve_ok(env);
  EXPECT_EQ(job.source, JobSource::kPmix);
  EXPECT_EQ(job.local_size, 2);
  EXPECT_EQ(job.hosts.size(), 4u);
  env["PMIX_RANK"] = "4";
  EXPECT_INVALID(resolve_job(env), "PMIX_RANK", "\"4\"");
}

TEST(Pmix, Malformed) {
  EXPECT_INVALID(resolve_job({{"PMIX_RANK", "2"}}), "PMIX_RANK", "PMIX_SIZE");
  EXPECT_INVALID(resolve_job({{"PMIX_RANK", "r"}, {"PMIX_SIZE", "2"}}), "PMIX_RANK", "\"r\"");
  EXPECT_INVALID(resolve_job({{"PMIX_RANK", "2"}, {"PMIX_SIZE", "2"}}), "PMIX_RANK", "\"2\"");
  EXPECT_INVALID(resolve_job({{"PMIX_RANK", "1"}, {"PMIX_SIZE", "two"}}), "PMIX_SIZE", "\"two\"");
  EXPECT_INVALID(resolve_job({{"PMIX_RANK", "1"}, {"PMIX_SIZE", "4"}, {"PMIX_LOCAL_SIZE", "2"}, {"PMIX_LOCAL_RANK", "2"}}),
                 "PMIX_LOCAL_RANK", "\"2\"");
}

TEST(Priority, FirstSourceInDesignOrderWins) {
  const std::string tf = R"({"cluster": {"worker": ["h0:2222", "h1:2222"]}, "task": {"type": "worker", "index": 1}})";
  EnvMap env = {{"TF_CONFIG", tf},
                {"OMPI_COMM_WORLD_RANK", "2"}, {"OMPI_COMM_WORLD_SIZE", "3"},
                {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "1"},
                {"PMIX_RANK", "3"}, {"PMIX_SIZE", "4"},
                {"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "5"},
                {"RANK", "5"}, {"WORLD_SIZE", "6"}};
  struct Step {
    JobSource source;
    int rank;
    const char* remove;
  };
  for (const Step& step : {Step{JobSource::kTfConfig, 1, "TF_CONFIG"}, Step{JobSource::kOpenMpi, 2, "OMPI_COMM_WORLD_RANK"},
                           Step{JobSource::kPmix, 3, "PMIX_RANK"}, Step{JobSource::kSlurm, 4, "SLURM_PROCID"},
                           Step{JobSource::kTorchrun, 5, "RANK"}}) {
    SCOPED_TRACE(std::string(job_source_name(step.source)));
    JobInfo job = resolve_ok(env);
    EXPECT_EQ(job.source, step.source);
    EXPECT_EQ(job.rank, step.rank);
    env.erase(step.remove);
  }
  env.erase("WORLD_SIZE");
  EXPECT_EQ(resolve_ok(env).source, JobSource::kSingleProcess);
}

TEST(Priority, EmptyTfConfigCountsAsUnset) {
  EXPECT_EQ(resolve_ok({{"TF_CONFIG", ""}, {"RANK", "0"}, {"WORLD_SIZE", "2"}}).source, JobSource::kTorchrun);
}

TEST(Gpu, ByLocalRankHonouringCudaVisibleDevices) {
  EnvMap env = {{"RANK", "3"}, {"WORLD_SIZE", "4"}};
  EXPECT_EQ(resolve_ok(env).gpu, 3);
  env["CUDA_VISIBLE_DEVICES"] = "4,5,6,7";
  EXPECT_EQ(resolve_ok(env).gpu, 3);  // an index into the visible list (device 7)
  env["CUDA_VISIBLE_DEVICES"] = "5";  // one GPU bound to this task (srun --gpus-per-task=1)
  EXPECT_EQ(resolve_ok(env).gpu, 0);
  env["CUDA_VISIBLE_DEVICES"] = "GPU-aaaa,GPU-bbbb";
  EXPECT_EQ(resolve_ok(env).gpu, 1);
  env["CUDA_VISIBLE_DEVICES"] = "0,1,-1,3";  // CUDA stops at the first invalid ordinal
  EXPECT_EQ(resolve_ok(env).gpu, 1);
  for (const char* none : {"", "-1", "NoDevFiles"}) {
    env["CUDA_VISIBLE_DEVICES"] = none;
    EXPECT_EQ(resolve_ok(env).gpu, -1) << none;
  }
  env["CUDA_VISIBLE_DEVICES"] = "0,,1";
  EXPECT_INVALID(resolve_job(env), "CUDA_VISIBLE_DEVICES", "\"0,,1\"");
}

TEST(CollectiveKnobs, DebugAndTimeout) {
  JobInfo off = resolve_ok({});
  EXPECT_FALSE(off.debug_collectives);
  EXPECT_FALSE(off.collective_timeout_s.has_value());
  JobInfo on = resolve_ok({{"GRADFLOW_DEBUG_COLLECTIVES", "1"}, {"GRADFLOW_COLLECTIVE_TIMEOUT", "30"}});
  EXPECT_TRUE(on.debug_collectives);
  EXPECT_EQ(on.collective_timeout_s, 30);
  EXPECT_INVALID(resolve_job({{"GRADFLOW_DEBUG_COLLECTIVES", "yes"}}), "GRADFLOW_DEBUG_COLLECTIVES", "\"yes\"");
  EXPECT_INVALID(resolve_job({{"GRADFLOW_COLLECTIVE_TIMEOUT", "0"}}), "GRADFLOW_COLLECTIVE_TIMEOUT", "0");
  EXPECT_EQ(off.backend, "auto");
  EXPECT_EQ(resolve_ok({{"GRADFLOW_BACKEND", "gloo"}}).backend, "gloo");
  EXPECT_INVALID(resolve_job({{"GRADFLOW_BACKEND", "tcp"}}), "GRADFLOW_BACKEND", "\"tcp\"");
  EXPECT_FALSE(off.mpi_thread_single);
  EXPECT_TRUE(resolve_ok({{"GRADFLOW_MPI_THREAD_LEVEL", "single"}}).mpi_thread_single);
  EXPECT_FALSE(resolve_ok({{"GRADFLOW_MPI_THREAD_LEVEL", "serialized"}}).mpi_thread_single);
  EXPECT_INVALID(resolve_job({{"GRADFLOW_MPI_THREAD_LEVEL", "multiple"}}), "GRADFLOW_MPI_THREAD_LEVEL", "\"multiple\"");
  EXPECT_TRUE(off.gloo_loop_batch);
  EXPECT_TRUE(resolve_ok({{"GRADFLOW_GLOO_LOOP_SCHED", "batch"}}).gloo_loop_batch);
  EXPECT_FALSE(resolve_ok({{"GRADFLOW_GLOO_LOOP_SCHED", "normal"}}).gloo_loop_batch);
  EXPECT_INVALID(resolve_job({{"GRADFLOW_GLOO_LOOP_SCHED", "idle"}}), "GRADFLOW_GLOO_LOOP_SCHED", "\"idle\"");
}

}  // namespace
}  // namespace gradflow::cluster
