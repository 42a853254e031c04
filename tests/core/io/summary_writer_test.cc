// SummaryWriter on the C++ side: file naming, TFRecord framing with the file_version record first, the
// histogram bucket limits, and its errors. tensorboard_readback.py checks the contents with TensorBoard.
#include "core/io/summary_writer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cfloat>
#include <filesystem>
#include <regex>

#include "core/tensor/creation.h"
#include "core/tensor/error.h"
#include "tests/core/io/io_test_util.h"

namespace gradflow {
namespace {

std::string host() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

TEST(SummaryWriter, NamesTheFileAsTensorFlowAndStartsWithFileVersion) {
  testing_io::ScratchDir dir("summary_name");
  std::string logdir = dir.file("run1/train");  // created as needed
  std::string path;
  {
    SummaryWriter writer(logdir);
    path = writer.path();
    writer.scalar("loss", 0.5, 1);
    writer.text("note", "hi", 1);
  }  // flushed and closed here
  std::string name = std::filesystem::path(path).filename().string();
  EXPECT_TRUE(std::regex_match(name, std::regex("events\\.out\\.tfevents\\.[0-9]{10}\\." + host()))) << name;
  EXPECT_EQ(std::filesystem::path(path).parent_path(), std::filesystem::path(logdir));
  std::vector<std::string> records = read_tfrecords(path);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_NE(records[0].find("brain.Event:2"), std::string::npos);
  EXPECT_NE(records[2].find("text"), std::string::npos);
}

TEST(SummaryWriter, WritersSharingALogdirNeverOverwriteEachOther) {
  testing_io::ScratchDir dir("summary_share");
  SummaryWriter a(dir.path().string());
  SummaryWriter b(dir.path().string());
  SummaryWriter c(dir.path().string(), {.filename_suffix = ".rank1"});
  EXPECT_NE(a.path(), b.path());
  EXPECT_EQ(c.path().substr(c.path().size() - 6), ".rank1");
}

TEST(SummaryWriter, FlushMakesEventsVisibleBeforeClose) {
  testing_io::ScratchDir dir("summary_flush");
  SummaryWriter writer(dir.path().string());
  EXPECT_EQ(read_tfrecords(writer.path()).size(), 1u);  // file_version is flushed at once
  for (int step = 0; step < 5; ++step) writer.scalar("loss", 1.0 / (step + 1), step);
  writer.flush();
  EXPECT_EQ(read_tfrecords(writer.path()).size(), 6u);
}

TEST(SummaryWriter, DefaultBucketsAreTensorFlows) {
  const std::vector<double>& b = default_histogram_buckets();
  ASSERT_EQ(b.size() % 2, 1u);
  size_t zero = b.size() / 2;
  EXPECT_EQ(b[zero], 0.0);
  EXPECT_EQ(b[zero + 1], 1e-12);
  EXPECT_DOUBLE_EQ(b[zero + 2], 1.1e-12);
  EXPECT_EQ(b.back(), DBL_MAX);
  EXPECT_EQ(b.front(), -DBL_MAX);
  EXPECT_LT(b[b.size() - 2], 1e20);
  EXPECT_GE(b[b.size() - 2] * 1.1, 1e20);
  for (size_t i = 0; i < zero; ++i) EXPECT_EQ(b[i], -b[b.size() - 1 - i]);
  EXPECT_TRUE(std::is_sorted(b.begin(), b.end()));
}

TEST(SummaryWriter, Errors) {
  testing_io::ScratchDir dir("summary_errors");
  testing_io::write_file(dir.file("plain_file"), "x");
  absl::StatusOr<std::unique_ptr<SummaryWriter>> bad = SummaryWriter::open(dir.file("plain_file/logs"));
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(std::string(bad.status().message()).find("plain_file/logs: cannot create the log directory"),
            std::string::npos)
      << bad.status();
  EXPECT_THROW(SummaryWriter(dir.file("plain_file/logs")), Error);

  SummaryWriter writer(dir.path().string());
  try {
    writer.histogram("w", from_vector<float>({1.0f, NAN, INFINITY}), 0);
    ADD_FAILURE() << "no exception";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "histogram 'w': 2 of 3 values are NaN or infinite");
  }
  EXPECT_THROW(writer.layer_graph({{.name = "", .op = "Dense"}}), ValueError);
}

}  // namespace
}  // namespace gradflow
