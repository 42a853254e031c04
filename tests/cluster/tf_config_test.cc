#include <gtest/gtest.h>

#include "cluster/environment.h"
#include "tests/cluster/expect_error.h"

namespace gradflow::cluster {
namespace {

using Hosts = std::vector<std::string>;

const char* kCluster = R"("cluster": {"chief": ["h0:2222"], "worker": ["h0:2223", "h1:2222", "h1:2223"],
                                     "ps": ["h2:2222"], "evaluator": ["h3:2222"]})";

absl::StatusOr<JobInfo> resolve_task(const std::string& task) {
  return resolve_job({{"TF_CONFIG", std::string("{") + kCluster + ", \"task\": " + task + "}"}});
}

TEST(TfConfig, ChiefThenWorkersThenPs) {
  absl::StatusOr<JobInfo> job = resolve_task(R"({"type": "worker", "index": 2})");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->source, JobSource::kTfConfig);
  EXPECT_EQ(job->rank, 3);
  EXPECT_EQ(job->world_size, 5);
  EXPECT_EQ(job->hosts, Hosts({"h0", "h1", "h2"}));
  EXPECT_EQ(job->num_nodes, 3);
  EXPECT_EQ(job->node_rank, 1);
  EXPECT_EQ(job->local_rank, 1);
  EXPECT_EQ(job->local_size, 2);
  EXPECT_EQ(job->gpu, 1);
  EXPECT_EQ(job->master_addr, "h0");
  EXPECT_EQ(job->master_port, 2222);
  ASSERT_TRUE(job->roles.has_value());
  EXPECT_EQ(job->roles->task_type, "worker");
  EXPECT_EQ(job->roles->task_index, 2);
  EXPECT_EQ(job->roles->cluster.at("worker"), Hosts({"h0:2223", "h1:2222", "h1:2223"}));
  EXPECT_EQ(job->roles->cluster.size(), 4u);
}

TEST(TfConfig, ChiefAndPsRanks) {
  absl::StatusOr<JobInfo> chief = resolve_task(R"({"type": "chief", "index": 0})");
  ASSERT_TRUE(chief.ok()) << chief.status();
  EXPECT_EQ(chief->rank, 0);
  EXPECT_EQ(chief->local_size, 2);
  absl::StatusOr<JobInfo> ps = resolve_task(R"({"type": "ps", "index": 0})");
  ASSERT_TRUE(ps.ok()) << ps.status();
  EXPECT_EQ(ps->rank, 4);
  EXPECT_EQ(ps->node_rank, 2);
  EXPECT_EQ(ps->local_rank, 0);
  EXPECT_EQ(ps->local_size, 1);
}

TEST(TfConfig, EvaluatorIsAJobOfItsOwn) {
  absl::StatusOr<JobInfo> job = resolve_task(R"({"type": "evaluator", "index": 0})");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->rank, 0);
  EXPECT_EQ(job->world_size, 1);
  EXPECT_EQ(job->hosts, Hosts({"h3"}));
  EXPECT_EQ(job->roles->task_type, "evaluator");
  // An evaluator need not be listed in the cluster.
  absl::StatusOr<JobInfo> lone = resolve_job(
      {{"TF_CONFIG", R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "evaluator", "index": 0}})"}});
  ASSERT_TRUE(lone.ok()) << lone.status();
  EXPECT_EQ(lone->world_size, 1);
  EXPECT_EQ(lone->master_addr, "127.0.0.1");
}

TEST(TfConfig, WorkersOnlyIpv6AndOverrides) {
  EnvMap env = {{"TF_CONFIG", R"({"cluster": {"worker": ["[::1]:5000", "[::1]:5001"]}, "task": {"type": "worker"}})"},
                {"MASTER_PORT", "6000"}, {"CUDA_VISIBLE_DEVICES", ""}};
  absl::StatusOr<JobInfo> job = resolve_job(env);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->rank, 0);  // index defaults to 0
  EXPECT_EQ(job->world_size, 2);
  EXPECT_EQ(job->local_size, 2);
  EXPECT_EQ(job->master_addr, "::1");
  EXPECT_EQ(job->master_port, 6000);
  EXPECT_EQ(job->gpu, -1);
}

TEST(TfConfig, Malformed) {
  struct Case {
    const char* json;
    const char* says;
  };
  for (const Case& c : {
           Case{R"({"cluster": )", "not valid JSON"},
           Case{R"([1, 2])", "cluster"},
           Case{R"({"task": {"type": "worker", "index": 0}})", "cluster"},
           Case{R"({"cluster": {"worker": ["a:1"]}})", "task"},
           Case{R"({"cluster": {"worker": ["a:1"]}, "task": {"index": 0}})", "type"},
           Case{R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}})", "out of range"},
           Case{R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}})", "out of range"},
           Case{R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": "0"}})", "index"},
           Case{R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "ps", "index": 0}})", "out of range"},
           Case{R"({"cluster": {"worker": ["a:1"]}, "task": {"type": "master", "index": 0}})", "unknown task type"},
           Case{R"({"cluster": {"boss": ["a:1"]}, "task": {"type": "worker", "index": 0}})", "unknown task type"},
           Case{R"({"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}})", "not a list"},
           Case{R"({"cluster": {"worker": [7]}, "task": {"type": "worker", "index": 0}})", "non-string"},
           Case{R"({"cluster": {"worker": ["a"]}, "task": {"type": "worker", "index": 0}})", "host:port"},
           Case{R"({"cluster": {"worker": ["a:x"]}, "task": {"type": "worker", "index": 0}})", "bad port"},
           Case{R"({"cluster": {"worker": ["a:1"], "chief": ["b:1", "c:1"]}, "task": {"type": "worker"}})",
                "more than one"},
       }) {
    SCOPED_TRACE(c.json);
    absl::StatusOr<JobInfo> job = resolve_job({{"TF_CONFIG", c.json}});
    EXPECT_INVALID(job, "TF_CONFIG", c.json);
    EXPECT_INVALID(job, "TF_CONFIG", c.says);
  }
}

}  // namespace
}  // namespace gradflow::cluster
