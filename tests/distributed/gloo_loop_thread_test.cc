// Code run on Gloo's event-loop thread (distributed/gloo/loop_thread.h): it runs there, not on the
// caller's thread; its exception comes back to the caller; and the policy helper leaves that thread,
// and only it, at SCHED_BATCH.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "distributed/gloo/loop_thread.h"
#include "gloo/transport/tcp/device.h"

namespace gradflow::distributed {
namespace {

using namespace std::chrono_literals;

std::shared_ptr<gloo::transport::Device> local_device() {
  gloo::transport::tcp::attr attr;
  attr.hostname = "127.0.0.1";
  return gloo::transport::tcp::CreateDevice(attr);
}

TEST(GlooLoopThread, RunsOnTheLoopThreadAndReturnsItsException) {
  auto device = local_device();
  pid_t loop = 0;
  ASSERT_TRUE(run_on_gloo_loop_thread(*device, [&] { loop = ::gettid(); }, 10s));
  EXPECT_NE(loop, 0);
  EXPECT_NE(loop, ::gettid());
  pid_t again = 0;
  ASSERT_TRUE(run_on_gloo_loop_thread(*device, [&] { again = ::gettid(); }, 10s));
  EXPECT_EQ(again, loop) << "one loop thread per device";
  EXPECT_THROW(run_on_gloo_loop_thread(*device, [] { throw std::runtime_error("from the loop"); }, 10s),
               std::runtime_error);
  ASSERT_TRUE(run_on_gloo_loop_thread(*device, [] {}, 10s)) << "the loop survives the exception";

  EXPECT_EQ(set_gloo_loop_thread_batch(*device, 10s), 0);
  EXPECT_EQ(::sched_getscheduler(loop), SCHED_BATCH);
  EXPECT_EQ(::sched_getscheduler(0), SCHED_OTHER);
}

}  // namespace
}  // namespace gradflow::distributed
