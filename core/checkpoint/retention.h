// Which checkpoints a manager deletes (private to core/checkpoint), as tf.train.CheckpointManager does:
// after a save, those beyond the newest max_to_keep go, except that with keep_every_n_hours the oldest
// one at least N hours younger than the last one kept is preserved (and never deleted).
//
// Each meta.json records its save time ("saved_at") and the time preservation counted from at that save
// ("last_preserved_at"), so a restarted job recovers the same decisions from the directory alone.
#pragma once

#include <set>
#include <string>
#include <vector>

namespace gradflow::checkpoint_files {

class Retention {
 public:
  // Recovers the preserved checkpoints and the time to count from by replaying the rule over the
  // complete checkpoints of dir (ascending by step); now when the directory holds none.
  Retention(int max_to_keep, double keep_every_n_hours, const std::vector<std::string>& checkpoints, double now);

  // The time the next preserved checkpoint is counted from (seconds since the Unix epoch).
  double last_preserved_at() const { return last_preserved_at_; }

  // What the rule drops among checkpoints (ascending by step), never `just_saved`; the caller deletes them.
  std::vector<std::string> prune(const std::vector<std::string>& checkpoints, const std::string& just_saved);

 private:
  bool preserves(double saved_at) const;

  int max_to_keep_;
  double keep_seconds_;
  double last_preserved_at_;
  std::set<std::string> preserved_;
};

}  // namespace gradflow::checkpoint_files
