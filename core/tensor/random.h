// Random tensors from the counter-based Philox generator.
//
//   set_seed(42);                              // like tf.random.set_seed
//   Tensor w = random_normal({784, 128});      // same numbers on any thread count and on CPU or GPU
//   Tensor u = random_uniform({10}, -1, 1, kF32, kCPU, /*seed=*/7);
//
// Each call takes a fresh stream from its generator, so two calls give different numbers and a run
// with the same seed repeats exactly. Generator state (seed, next stream) can be saved and restored.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>

#include "core/tensor/tensor.h"

namespace gradflow {

struct GeneratorState {
  uint64_t seed = 0;
  uint64_t next_stream = 0;
};

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  // Reserves a stream for one random op.
  uint64_t take_stream() { return next_stream_.fetch_add(1, std::memory_order_relaxed); }
  GeneratorState state() const { return {seed_, next_stream_.load()}; }
  void set_state(const GeneratorState& s) {
    seed_ = s.seed;
    next_stream_ = s.next_stream;
  }

 private:
  uint64_t seed_;
  std::atomic<uint64_t> next_stream_{0};
};

// The process-wide generator (seed 0 until set_seed is called).
Generator& global_generator();
void set_seed(uint64_t seed);

// Makes `generator` the one this thread's random ops draw from (instead of the global one) while the
// scope lives: replicas running on threads of one process (MirroredStrategy) each draw from their own,
// so their numbers do not depend on which thread happens to draw first.
class GeneratorScope {
 public:
  explicit GeneratorScope(Generator& generator);
  ~GeneratorScope();
  GeneratorScope(const GeneratorScope&) = delete;
  GeneratorScope& operator=(const GeneratorScope&) = delete;

 private:
  Generator* previous_;
};

// A (seed, stream) pair: from the global generator, or stream 0 of an explicit seed.
struct RandomStream {
  uint64_t seed;
  uint64_t stream;
};
RandomStream take_random_stream(std::optional<uint64_t> seed);
// The seed of replica r's generator for a step that drew `step` (replicas on threads: each draws its own
// numbers, the same on every run whatever the threads' timing).
inline uint64_t replica_seed(const RandomStream& step, int replica) {
  return step.seed ^ (0x9e3779b97f4a7c15ull * (step.stream + 1)) ^ (static_cast<uint64_t>(replica) << 32);
}

Tensor random_uniform(Shape shape, double minval = 0, double maxval = 1, DType dtype = kF32, Device device = kCPU,
                      std::optional<uint64_t> seed = std::nullopt);
Tensor random_normal(Shape shape, double mean = 0, double stddev = 1, DType dtype = kF32, Device device = kCPU,
                     std::optional<uint64_t> seed = std::nullopt);
// Normal samples redrawn until within two standard deviations of the mean.
Tensor truncated_normal(Shape shape, double mean = 0, double stddev = 1, DType dtype = kF32, Device device = kCPU,
                        std::optional<uint64_t> seed = std::nullopt);

}  // namespace gradflow
