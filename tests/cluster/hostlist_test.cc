#include "cluster/hostlist.h"

#include <gtest/gtest.h>

#include "tests/cluster/expect_error.h"

namespace gradflow::cluster {
namespace {

using Hosts = std::vector<std::string>;

TEST(Hostlist, PlainNames) {
  EXPECT_EQ(*expand_hostlist("node1"), Hosts({"node1"}));
  EXPECT_EQ(*expand_hostlist("a,b,c"), Hosts({"a", "b", "c"}));
}

TEST(Hostlist, RangesAndListsKeepPadding) {
  EXPECT_EQ(*expand_hostlist("gpu-[01-04,07],cpu[1-2]-ib"),
            Hosts({"gpu-01", "gpu-02", "gpu-03", "gpu-04", "gpu-07", "cpu1-ib", "cpu2-ib"}));
  EXPECT_EQ(*expand_hostlist("n[08-10]"), Hosts({"n08", "n09", "n10"}));
  EXPECT_EQ(*expand_hostlist("n[8-10]"), Hosts({"n8", "n9", "n10"}));
  EXPECT_EQ(*expand_hostlist("n[098-101]"), Hosts({"n098", "n099", "n100", "n101"}));
  EXPECT_EQ(*expand_hostlist("n[5]"), Hosts({"n5"}));
}

TEST(Hostlist, SeveralGroupsMultiplyFirstSlowest) {
  EXPECT_EQ(*expand_hostlist("rack[1-2]-node[01-02]"),
            Hosts({"rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"}));
  EXPECT_EQ(*expand_hostlist("r[1,3]n[1-2],x"), Hosts({"r1n1", "r1n2", "r3n1", "r3n2", "x"}));
}

TEST(Hostlist, MalformedNamesTheVariableAndValue) {
  for (const char* bad : {"n[1-2", "n1-2]", "n[[1-2]]", "n[2-1]", "n[a-b]", "n[1-]", "n[]", "a,,b", "",
                          "n[1,,2]", "a b", "n[1-2]x]"}) {
    SCOPED_TRACE(bad);
    EXPECT_INVALID(expand_hostlist(bad, "SLURM_JOB_NODELIST"), "SLURM_JOB_NODELIST", std::string("\"") + bad + "\"");
  }
}

TEST(Hostlist, HugeRangeIsAnErrorNotAnAllocation) {
  EXPECT_INVALID(expand_hostlist("n[0-999999999]", "X"), "X", "n[0-999999999]");
  EXPECT_INVALID(expand_hostlist("a[0-9999]b[0-9999]", "X"), "X", "a[0-9999]b[0-9999]");
}

TEST(Hostlist, CompressRoundTrips) {
  EXPECT_EQ(compress_hostlist({"n01", "n02", "n03", "n07", "login"}), "n[01-03,07],login");
  EXPECT_EQ(compress_hostlist({"cpu1-ib", "cpu2-ib"}), "cpu[1-2]-ib");
  EXPECT_EQ(compress_hostlist({"solo"}), "solo");
  EXPECT_EQ(compress_hostlist({"n9", "n10"}), "n9,n10");  // widths differ: no shared group
  EXPECT_EQ(compress_hostlist({}), "");
  for (const char* list : {"gpu-[01-04,07],cpu[1-2]-ib", "rack[1-2]-node[01-02]", "a,b,n[098-101]"}) {
    SCOPED_TRACE(list);
    Hosts hosts = *expand_hostlist(list);
    EXPECT_EQ(*expand_hostlist(compress_hostlist(hosts)), hosts);
  }
}

TEST(TasksPerNode, Forms) {
  EXPECT_EQ(*expand_tasks_per_node("2(x3),1"), std::vector<int>({2, 2, 2, 1}));
  EXPECT_EQ(*expand_tasks_per_node("4"), std::vector<int>({4}));
  EXPECT_EQ(*expand_tasks_per_node("1,3(x2)"), std::vector<int>({1, 3, 3}));
}

TEST(TasksPerNode, MalformedNamesTheVariableAndValue) {
  for (const char* bad : {"", "x", "2(x)", "2(x0)", "2(3)", "2(x3", "-1", "2,,1", "2(x3)1", "(x2)"}) {
    SCOPED_TRACE(bad);
    EXPECT_INVALID(expand_tasks_per_node(bad, "SLURM_TASKS_PER_NODE"), "SLURM_TASKS_PER_NODE",
                   std::string("\"") + bad + "\"");
  }
}

}  // namespace
}  // namespace gradflow::cluster
