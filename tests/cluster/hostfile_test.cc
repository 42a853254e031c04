#include "cluster/hostfile.h"

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

#include "tests/cluster/expect_error.h"

namespace gradflow::cluster {
namespace {

using Hosts = std::vector<HostSlots>;

TEST(Hostfile, SlotsCommentsBlankLinesAndDuplicates) {
  const char* text =
      "# the cluster\n"
      "\n"
      "node1 slots=4 max_slots=8\n"
      "  node2   # one slot by default\n"
      "node3 max-slots=2 slots=2\r\n"
      "node1 slots=2 max_slots=2\n"
      "node2 slots=3\n";
  Hosts expected = {{"node1", 6, 10}, {"node2", 4, std::nullopt}, {"node3", 2, 2}};
  EXPECT_EQ(*parse_hostfile(text, "hosts.txt"), expected);
}

TEST(Hostfile, MaxSlotsDroppedUnlessEveryLineGivesOne) {
  EXPECT_EQ(*parse_hostfile("a slots=1 max_slots=2\na slots=1\n", "h"), Hosts({{"a", 2, std::nullopt}}));
  EXPECT_EQ(*parse_hostfile("", "h"), Hosts());
}

TEST(Hostfile, MalformedNamesFileLineAndText) {
  struct Case {
    const char* text;
    const char* where;
    const char* value;
  };
  for (const Case& c : {Case{"a\nb slots=x\n", "hosts.txt:2", "x"}, Case{"a slots=0\n", "hosts.txt:1", "0"},
                        Case{"a slots=-2\n", "hosts.txt:1", "-2"}, Case{"a cpus=2\n", "hosts.txt:1", "cpus=2"},
                        Case{"a slots=4 max_slots=2\n", "hosts.txt:1", "max_slots=2"},
                        Case{"\n\nslots=2\n", "hosts.txt:3", "slots=2"}, Case{"a slots\n", "hosts.txt:1", "slots"}}) {
    SCOPED_TRACE(c.text);
    EXPECT_INVALID(parse_hostfile(c.text, "hosts.txt"), c.where, c.value);
  }
}

TEST(Hostfile, ReadsAFile) {
  std::string path = ::testing::TempDir() + "/gradflow_hostfile_test.txt";
  std::ofstream(path) << "h1 slots=2\nh2\n";
  EXPECT_EQ(*read_hostfile(path), Hosts({{"h1", 2, std::nullopt}, {"h2", 1, std::nullopt}}));
  std::remove(path.c_str());
  absl::StatusOr<Hosts> missing = read_hostfile(path);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(std::string(missing.status().message()).find(path), std::string::npos);
}

TEST(HostList, CountsAndDuplicates) {
  EXPECT_EQ(*parse_host_list("node1:4,node2"), Hosts({{"node1", 4, std::nullopt}, {"node2", 1, std::nullopt}}));
  EXPECT_EQ(*parse_host_list("a,a,b:2,a:3"), Hosts({{"a", 5, std::nullopt}, {"b", 2, std::nullopt}}));
}

TEST(HostList, MalformedNamesOptionAndValue) {
  for (const char* bad : {"", "a:", "a:x", "a:0", ":2", "a,,b", "a:-1"}) {
    SCOPED_TRACE(bad);
    EXPECT_INVALID(parse_host_list(bad), "-H", std::string("\"") + bad + "\"");
  }
}

}  // namespace
}  // namespace gradflow::cluster
