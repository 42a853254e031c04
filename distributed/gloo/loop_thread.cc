#include "distributed/gloo/loop_thread.h"

#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <future>

#include "gloo/transport/tcp/device.h"
#include "gloo/transport/tcp/loop.h"

namespace gradflow::distributed {
namespace {

// An eventfd registered with the loop: the loop thread calls handleEvents once it is written to.
class OneShot : public gloo::transport::tcp::Handler {
 public:
  explicit OneShot(std::function<void()> fn) : fn_(std::move(fn)) {}
  ~OneShot() override {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  std::future<void> ran() { return ran_.get_future(); }

  void handleEvents(int /*events*/) override {
    uint64_t count = 0;
    if (::read(fd_, &count, sizeof count) != sizeof count || done_) return;  // also: a spurious wake-up
    done_ = true;
    try {  // an exception must not leave Gloo's loop thread: it would end the process
      fn_();
      ran_.set_value();
    } catch (...) {
      ran_.set_exception(std::current_exception());
    }
  }

 private:
  int fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  std::function<void()> fn_;
  std::promise<void> ran_;
  bool done_ = false;  // only touched on the loop thread
};

}  // namespace

bool run_on_gloo_loop_thread(gloo::transport::Device& device, const std::function<void()>& fn, LoopTimeout timeout) {
  auto* tcp = dynamic_cast<gloo::transport::tcp::Device*>(&device);
  if (tcp == nullptr) return false;
  OneShot handler(fn);
  if (handler.fd() < 0) return false;
  std::future<void> ran = handler.ran();
  tcp->registerDescriptor(handler.fd(), EPOLLIN, &handler);
  uint64_t one = 1;
  if (::write(handler.fd(), &one, sizeof one) == sizeof one) ran.wait_for(timeout);
  // Returns only after the loop has finished any call into the handler, so it can be destroyed.
  tcp->unregisterDescriptor(handler.fd(), &handler);
  if (ran.wait_for(LoopTimeout(0)) != std::future_status::ready) return false;
  ran.get();  // fn's exception, if it threw
  return true;
}

int set_gloo_loop_thread_batch(gloo::transport::Device& device, LoopTimeout timeout) {
  int error = 0;
  auto set_policy = [&error] {
    sched_param param{};
    error = ::sched_setscheduler(0, SCHED_BATCH, &param) == 0 ? 0 : errno;  // 0: the calling thread
  };
  if (!run_on_gloo_loop_thread(device, set_policy, timeout)) {
    return dynamic_cast<gloo::transport::tcp::Device*>(&device) ? ETIMEDOUT : EINVAL;
  }
  return error;
}

}  // namespace gradflow::distributed
