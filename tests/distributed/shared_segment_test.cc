// The pieces under the shared-memory all-reduce (distributed/shm/shared_segment.h): telling a live
// process from an exited one, and a segment that only its creator's nonce opens.
#include "distributed/shm/shared_segment.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

namespace gradflow::distributed {
namespace {

TEST(ProcessMark, ALiveProcessKeepsItsStartTime) {
  std::optional<ProcessMark> first = process_mark(::getpid());
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->exited);
  std::optional<ProcessMark> again = process_mark(::getpid());
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->start_ticks, first->start_ticks);
}

// A child that has exited but is not reaped yet is a zombie: exited, though /proc still lists it; once
// reaped it is gone. A waiting rank must see both as "its peer has exited".
TEST(ProcessMark, AnExitedChildIsSeenAsExitedThenGone) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  std::optional<ProcessMark> mark;
  for (int i = 0; i < 500; ++i) {  // until the child has exited (a zombie), at most 5 s
    mark = process_mark(child);
    if (mark && mark->exited) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(mark.has_value());
  EXPECT_TRUE(mark->exited);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_FALSE(process_mark(child).has_value());
}

TEST(SharedSegment, OpensOnlyWithItsNonceAndLeavesNoNameBehind) {
  absl::StatusOr<std::unique_ptr<SharedSegment>> created = SharedSegment::create(2, 4096);
  ASSERT_TRUE(created.ok()) << created.status();
  SharedSegment& segment = **created;
  const std::string path = "/dev/shm" + segment.name();
  EXPECT_TRUE(std::filesystem::exists(path));

  absl::StatusOr<std::unique_ptr<SharedSegment>> wrong = SharedSegment::open(segment.name(), segment.nonce() + 1, 2, 4096);
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kFailedPrecondition) << wrong.status();
  absl::StatusOr<std::unique_ptr<SharedSegment>> other_size = SharedSegment::open(segment.name(), segment.nonce(), 3, 4096);
  EXPECT_EQ(other_size.status().code(), absl::StatusCode::kFailedPrecondition) << other_size.status();

  absl::StatusOr<std::unique_ptr<SharedSegment>> opened = SharedSegment::open(segment.name(), segment.nonce(), 2, 4096);
  ASSERT_TRUE(opened.ok()) << opened.status();
  // The same memory: what one mapping writes, the other reads.
  std::strcpy(segment.slot(1), "written by the creator");
  EXPECT_STREQ((*opened)->slot(1), "written by the creator");
  (*opened)->line(0).arrived.store(7);
  EXPECT_EQ(segment.line(0).arrived.load(), 7u);
  EXPECT_EQ(segment.failed_rank().load(), -1);

  segment.unlink();
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(SharedSegment::open(segment.name(), segment.nonce(), 2, 4096).ok());
  EXPECT_STREQ((*opened)->slot(1), "written by the creator") << "mappings outlive the name";
}

// A size that would wrap around is refused, not mapped short.
TEST(SharedSegment, ASizeThatOverflowsIsRefused) {
  absl::StatusOr<std::unique_ptr<SharedSegment>> huge = SharedSegment::create(4, SIZE_MAX / 2);
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument) << huge.status();
}

TEST(SharedSegment, ACreatorThatGoesAwayTakesItsName) {
  std::string path;
  {
    absl::StatusOr<std::unique_ptr<SharedSegment>> created = SharedSegment::create(2, 4096);
    ASSERT_TRUE(created.ok()) << created.status();
    path = "/dev/shm" + (*created)->name();
    EXPECT_TRUE(std::filesystem::exists(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace gradflow::distributed
