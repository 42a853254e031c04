#include "core/checkpoint/retention.h"

#include <algorithm>

#include "core/checkpoint/files.h"

namespace gradflow::checkpoint_files {
namespace {

// A checkpoint's save time; -1 for one written before save times were recorded (never preserved).
double saved_at(const std::string& path) {
  nlohmann::json meta = read_meta(path);
  return meta.is_object() ? meta.value("saved_at", -1.0) : -1.0;
}

}  // namespace

Retention::Retention(int max_to_keep, double keep_every_n_hours, const std::vector<std::string>& checkpoints,
                     double now)
    : max_to_keep_(max_to_keep), keep_seconds_(keep_every_n_hours * 3600.0), last_preserved_at_(now) {
  if (checkpoints.empty()) return;
  // Replay: the oldest checkpoint recorded where counting stood when it was saved; every one older than
  // the newest max_to_keep that is still here was either preserved or is left over from a crash between
  // a save and its pruning (then it goes at the next save). Later records can only move the time on.
  double recorded = -1;
  for (const std::string& path : checkpoints) {
    nlohmann::json meta = read_meta(path);
    if (meta.is_object()) recorded = std::max(recorded, meta.value("last_preserved_at", -1.0));
  }
  nlohmann::json oldest = read_meta(checkpoints.front());
  if (oldest.is_object() && oldest.contains("last_preserved_at")) last_preserved_at_ = oldest.value("last_preserved_at", now);
  size_t beyond = max_to_keep_ > 0 && checkpoints.size() > static_cast<size_t>(max_to_keep_)
                      ? checkpoints.size() - static_cast<size_t>(max_to_keep_)
                      : 0;
  for (size_t i = 0; i < beyond; ++i) {
    double t = saved_at(checkpoints[i]);
    if (preserves(t)) {
      preserved_.insert(checkpoints[i]);
      last_preserved_at_ = t;
    }
  }
  last_preserved_at_ = std::max(last_preserved_at_, recorded);
}

bool Retention::preserves(double saved_at) const {
  return keep_seconds_ > 0 && saved_at >= 0 && saved_at - keep_seconds_ >= last_preserved_at_;
}

std::vector<std::string> Retention::prune(const std::vector<std::string>& checkpoints, const std::string& just_saved) {
  std::vector<std::string> dropped;
  if (max_to_keep_ <= 0) return dropped;
  std::vector<std::string> candidates;
  for (const std::string& path : checkpoints) {
    if (!preserved_.count(path)) candidates.push_back(path);
  }
  for (size_t i = 0; i + max_to_keep_ < candidates.size(); ++i) {
    const std::string& path = candidates[i];
    if (path == just_saved) continue;
    double t = saved_at(path);
    if (preserves(t)) {
      preserved_.insert(path);
      last_preserved_at_ = t;
      continue;
    }
    dropped.push_back(path);
  }
  return dropped;
}

}  // namespace gradflow::checkpoint_files
