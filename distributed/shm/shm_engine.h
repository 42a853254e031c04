// Shared-memory all-reduce between the ranks of one host. Open MPI moves a 0.4 MB all-reduce between two
// local ranks in about 90 us and Gloo in about 300 us (TCP through the kernel); the ranks can instead
// each copy their data into a segment they all map, reduce one part of it each and write the result
// into every rank's slot, at memory speed (docs/distributed.md, "Shared memory"). This is what NCCL's
// and oneCCL's intra-node transports and DeepSpeed's CPU shm all-reduce do.
//
//   engine = share_memory_on_host(std::move(engine), {.timeout = t});  // collective over its ranks
//
// The wrapped engine keeps every other op, the rendezvous and the reductions shared memory does not do.
#pragma once

#include <cstddef>
#include <memory>

#include "distributed/comm/engine.h"

namespace gradflow::distributed {

struct SharedMemoryConfig {
  // Each rank's slot: an all-reduce larger than this goes through in pieces of this size.
  size_t slot_bytes = size_t{1} << 20;
  Timeout timeout = kDefaultCollectiveTimeout;  // for the rendezvous
  // Ranks that name the same host share memory; empty: this machine's identity (hostname, kernel boot and
  // /dev/shm). Tests make several "hosts" of one machine with it.
  std::string host;
  // For the groups of a job spanning hosts to meet (Gloo's rendezvous); may be null for MPI.
  std::shared_ptr<Store> store;
};

// `inner` wrapped so that its CPU all-reduces (and, over Gloo, broadcasts, barriers, all-gathers and
// reduce-scatters) go through shared memory, when it has two or more ranks,
// all of them on this host (same hostname, boot and /dev/shm), none of its buffers on a GPU (a
// CUDA-aware MPI keeps its own path), and the segment could be set up on every rank. When the ranks span
// hosts and some host has several, the all-reduce becomes hierarchical (hierarchical_engine.h). Otherwise
// `inner` itself. Collective over inner's ranks, which all decide alike. Throws CollectiveError when the
// rendezvous through `inner` fails.
std::unique_ptr<Engine> share_memory_on_host(std::unique_ptr<Engine> inner, const SharedMemoryConfig& config);

// Which host each rank of `engine` is on (hosts numbered in order of their lowest rank), from an
// all-gather through it of each rank's host identity (SharedMemoryConfig::host). Collective.
std::vector<int> hosts_of_ranks(Engine& engine, const SharedMemoryConfig& config);

}  // namespace gradflow::distributed
