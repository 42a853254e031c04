// Waiting a short while by spinning before sleeping, for threads of one process that each have a core:
// waking a thread asleep on another vCPU took 50-100 us on these VMs (the idle vCPU is halted), against
// steps of a few hundred for the seed's model. MirroredStrategy's replica threads wait this way for their
// rounds and for each other in cross-replica sums.
#pragma once

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <thread>

namespace gradflow::strategies {

// The cores this process may run on (its affinity mask).
inline size_t usable_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return std::max(1u, std::thread::hardware_concurrency());
  return static_cast<size_t>(CPU_COUNT(&set));
}

// Spins until ready() or 2 ms have passed; whether ready(). With spin false, only asks once. Without the
// PAUSE instruction: under KVM a vCPU that keeps executing it is taken for one spinning on a lock whose
// holder was preempted and is descheduled (pause-loop exiting), and a replica thread then started 45 us
// after the caller instead of 3 (seed model, batch 32, two replicas on two vCPUs).
template <typename Ready>
bool spin_until(bool spin, const Ready& ready) {
  if (!spin) return ready();
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(2000);
  for (int k = 0;; ++k) {
    if (ready()) return true;
    if (k % 64 == 63 && std::chrono::steady_clock::now() >= until) return ready();
  }
}

}  // namespace gradflow::strategies
