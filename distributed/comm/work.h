// WorkImpl: the Work of one op, completed once by finish() or fail(), whichever comes first (an engine
// returning late after the watchdog failed the op changes nothing).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "distributed/comm/communicator.h"

namespace gradflow::distributed {

class WorkImpl : public Work {
 public:
  // on_timeout is called (once, without locks held) when a wait() runs out of time before the op
  // completes; it must fail this Work (the communicator turns it into a timeout of the op).
  WorkImpl(Timeout timeout, std::function<void()> on_timeout)
      : timeout_(timeout), on_timeout_(std::move(on_timeout)) {}

  void wait() override { wait(timeout_); }
  void wait(Timeout timeout) override;
  bool completed() const override;
  const std::vector<Tensor>& result() override;

  // Returns false when the Work had already completed.
  bool finish(std::vector<Tensor> result);
  bool fail(const CollectiveError& error);

 private:
  const Timeout timeout_;
  std::function<void()> on_timeout_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::optional<CollectiveError> error_;
  std::vector<Tensor> result_;
};

}  // namespace gradflow::distributed
