// The commit protocol of a sharded save (private to core/checkpoint). Every rank calls it with its part
// of the snapshot (shards.h: keep_shard); it is collective, through the given sums only (ReplicaContext::sum
// on the training thread, or a ReplicaContext::BackgroundSums for an async save on a background thread):
//
//   rank 0 empties <dir>/.ckpt-<step>.tmp-<n>ranks            -> barrier 1 (carries rank 0's success)
//   every rank writes its files there, fsyncs and hashes them -> barrier 2 (carries every rank's success,
//                                                               file sizes, sha256s and generator state)
//   rank 0 writes meta.json, fsyncs, renames, updates latest  -> barrier 3 (carries rank 0's success)
//
// Hashes travel in the sum (each rank fills its own slots, in 32-bit words that a double holds exactly),
// so rank 0 never reads the other ranks' files back. A failure anywhere makes every rank throw after the
// barrier that carries it, naming the ranks that failed; nothing is renamed into place then, so `latest`
// keeps naming the previous complete checkpoint. No rank returns before rank 0 has committed.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/checkpoint/snapshot.h"

namespace gradflow::checkpoint_files {

// This rank among the ranks that save, and the elementwise sum across them (collective).
struct RankSums {
  int rank = 0;
  int ranks = 1;
  std::function<std::vector<double>(const std::vector<double>&)> sum;
};

// mine.meta is this rank's, its "rng" this rank's generator state (rank 0's meta goes to disk, with
// "files" and "rng_replicas" added). after_commit runs on rank 0 once `latest` names the new checkpoint,
// before the last barrier (pruning). Returns
// <dir>/ckpt-<step> on every rank; Error naming the failed ranks (and this rank's own error) otherwise.
std::string commit_sharded(const std::string& dir, const Snapshot& mine, const RankSums& ranks,
                           const std::function<void(const std::string& final_dir)>& after_commit);

}  // namespace gradflow::checkpoint_files
