#include "core/data/sharding.h"

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {

using data_internal::NodePtr;

// The pipeline rebuilt with every file source reading its share of files; throws ValueError naming the
// source when it has fewer files than workers.
NodePtr shard_files(const NodePtr& node, int64_t n, int64_t index) {
  std::vector<NodePtr> inputs = node->inputs();
  if (inputs.empty()) {
    std::vector<std::string> files = node->files();
    if (files.empty()) return node;
    if (static_cast<int64_t>(files.size()) < n) {
      throw ValueError(str_cat("auto_shard: policy FILE: the \"", node->op(), "\" source reads ", files.size(),
                               " file(s), fewer than the ", n, " workers (use DATA, or AUTO, which falls back to it)"));
    }
    std::vector<std::string> mine;
    for (size_t i = static_cast<size_t>(index); i < files.size(); i += static_cast<size_t>(n)) mine.push_back(files[i]);
    return node->with_files(std::move(mine));
  }
  std::vector<NodePtr> sharded;
  bool changed = false;
  for (const NodePtr& in : inputs) {
    sharded.push_back(shard_files(in, n, index));
    changed = changed || sharded.back() != in;
  }
  return changed ? node->with_inputs(std::move(sharded)) : node;
}

}  // namespace

std::string_view shard_policy_name(AutoShardPolicy policy) {
  switch (policy) {
    case AutoShardPolicy::kAuto: return "AUTO";
    case AutoShardPolicy::kFile: return "FILE";
    case AutoShardPolicy::kData: return "DATA";
    case AutoShardPolicy::kOff: return "OFF";
  }
  return "?";
}

Dataset auto_shard(const Dataset& ds, int64_t num_workers, int64_t index, AutoShardPolicy policy) {
  GF_CHECK(num_workers >= 1, ValueError, "auto_shard: num_workers must be >= 1, got ", num_workers);
  GF_CHECK(index >= 0 && index < num_workers, ValueError, "auto_shard: worker index ", index,
           " is out of range for ", num_workers, " workers");
  if (policy == AutoShardPolicy::kOff || num_workers == 1) return ds;
  if (policy == AutoShardPolicy::kFile || policy == AutoShardPolicy::kAuto) {
    if (ds.source_files().empty()) {
      if (policy == AutoShardPolicy::kFile) {
        throw ValueError("auto_shard: policy FILE: the dataset reads no files (it comes from memory or a generator); "
                         "use DATA or AUTO");
      }
    } else {
      try {
        return Dataset(shard_files(ds.node(), num_workers, index));
      } catch (const ValueError&) {
        if (policy == AutoShardPolicy::kFile) throw;
      }
    }
  }
  return ds.shard(num_workers, index);
}

}  // namespace gradflow
