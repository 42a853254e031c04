#include "core/tensor/denormals.h"

#include <omp.h>

#include <atomic>

#if defined(__x86_64__) || defined(__SSE2__)
#include <xmmintrin.h>
#define GRADFLOW_HAS_MXCSR 1
#endif

namespace gradflow {
namespace {

#ifdef GRADFLOW_HAS_MXCSR
constexpr unsigned kFlushBits = 0x8040;  // FTZ (bit 15) and DAZ (bit 6)
std::atomic<bool> g_enabled{true};
#else
std::atomic<bool> g_enabled{false};
#endif
// Bumped by every set_flush_denormal() so that each thread re-applies the setting to its OpenMP team.
std::atomic<int> g_generation{1};

#ifdef GRADFLOW_HAS_MXCSR
unsigned with_setting(unsigned csr, bool flush) { return flush ? (csr | kFlushBits) : (csr & ~kFlushBits); }

// OpenMP workers are created lazily, one team per thread that opens a parallel region, and keep their
// mode for life; set it on every worker of this thread's team whenever the setting or team size changed.
void apply_to_openmp_team(bool flush) {
  thread_local int applied_generation = 0;
  thread_local int applied_threads = 0;
  int generation = g_generation.load(std::memory_order_relaxed);
  int threads = omp_get_max_threads();
  if (applied_generation == generation && applied_threads >= threads) return;
  if (omp_in_parallel()) return;  // an op called inside the user's own parallel region: leave it alone
#pragma omp parallel
  {
    if (omp_get_thread_num() != 0) _mm_setcsr(with_setting(_mm_getcsr(), flush));  // 0 is this thread
  }
  applied_generation = generation;
  applied_threads = threads;
}
#endif

}  // namespace

bool set_flush_denormal(bool enabled) {
#ifdef GRADFLOW_HAS_MXCSR
  g_enabled.store(enabled);
  g_generation.fetch_add(1);
  return true;
#else
  (void)enabled;
  return false;
#endif
}

bool flush_denormal_enabled() { return g_enabled.load(std::memory_order_relaxed); }

namespace internal {

#ifdef GRADFLOW_HAS_MXCSR
DenormalFlushScope::DenormalFlushScope() : saved_(_mm_getcsr()) {
  bool flush = g_enabled.load(std::memory_order_relaxed);
  // Turned off, flushing is left as the caller set it; turned on, it is forced for the op's duration.
  unsigned wanted = flush ? with_setting(saved_, true) : saved_;
  if (wanted != saved_) {
    _mm_setcsr(wanted);
    changed_ = true;
  }
  apply_to_openmp_team(flush);
}
DenormalFlushScope::~DenormalFlushScope() {
  if (changed_) _mm_setcsr(saved_);
}
#else
DenormalFlushScope::DenormalFlushScope() : saved_(0) {}
DenormalFlushScope::~DenormalFlushScope() = default;
#endif

}  // namespace internal
}  // namespace gradflow
