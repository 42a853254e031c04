// Gloo's TCP transport does its I/O on one event-loop thread per device. This runs code on that thread,
// which Gloo does not offer itself: gradflow uses it to set the thread's scheduling policy.
#pragma once

#include <chrono>
#include <functional>

#include "gloo/transport/device.h"

namespace gradflow::distributed {

using LoopTimeout = std::chrono::milliseconds;

// Runs fn once on the event-loop thread of a Gloo TCP device and returns true when it has run; false
// when the device is not a TCP device or the loop did not get to it within timeout (fn has not run then,
// and never will). fn's exception is rethrown here.
bool run_on_gloo_loop_thread(gloo::transport::Device& device, const std::function<void()>& fn, LoopTimeout timeout);

// Switches the loop thread to SCHED_BATCH: its fair share of the CPU is unchanged, but waking up no
// longer preempts the thread running on its core. Why that matters: when the loop gets an event for a
// pair whose lock another thread holds, it does not wait; it goes back to epoll_wait, which reports the
// same (level-triggered) event at once, and spins. If the loop's wake-up had preempted that very lock
// holder on a shared core (the rank's own thread, inside a send), the holder cannot run again before the
// loop's time slice ends: a whole scheduler tick (4 ms here) per op, whenever a rank's threads share a
// core. Returns the errno of sched_setscheduler (0 on success), or ETIMEDOUT / EINVAL from
// run_on_gloo_loop_thread.
int set_gloo_loop_thread_batch(gloo::transport::Device& device, LoopTimeout timeout);

}  // namespace gradflow::distributed
