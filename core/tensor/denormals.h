// Denormal (subnormal) floats flushed to zero during ops, as TensorFlow does on CPU.
//
// Arithmetic on denormals is 10-100x slower on x86; a network whose weights or gradients drift into that
// range (1e-38 for f32) slows down by 2-3x mid-training for no gain in accuracy. With flushing on (the
// default), every op, optimizer update and the OpenMP threads they use run with the SSE FTZ and DAZ bits
// set; the calling thread's own floating-point mode is restored when each op returns. Turned off, ops run
// in whatever mode the calling thread has (OpenMP workers: not flushing).
#pragma once

namespace gradflow {

// On by default. Returns false (and does nothing) where the CPU has no such mode (only x86-64 has one
// here); then enabled() stays false.
bool set_flush_denormal(bool enabled);
bool flush_denormal_enabled();

namespace internal {

// Sets the mode on this thread, and once per setting on this thread's OpenMP workers; restores this
// thread's previous mode on destruction. Cheap enough to wrap every op (two MXCSR accesses).
class DenormalFlushScope {
 public:
  DenormalFlushScope();
  ~DenormalFlushScope();
  DenormalFlushScope(const DenormalFlushScope&) = delete;
  DenormalFlushScope& operator=(const DenormalFlushScope&) = delete;

 private:
  unsigned saved_;
  bool changed_ = false;
};

}  // namespace internal
}  // namespace gradflow
