// Which part of a dataset each worker of a data-parallel job reads, as tf.data's auto-sharding decides
// (tf.data.experimental.AutoShardPolicy):
//   kFile  every file-backed source (TFRecordDataset) in the pipeline reads only files index, index + n,
//          ...; the rest of the pipeline (shuffle, map, batch) runs on that share. Each worker reads only
//          its files. ValueError when the pipeline has no file source, or fewer files than workers.
//   kData  the whole pipeline's output, element index, index + n, ... (every worker reads everything and
//          keeps its share); for a batched dataset, every n-th batch.
//   kAuto  kFile when every file source has at least n files and the pipeline can be rebuilt, else kData.
//   kOff   no sharding: every worker sees the whole dataset.
// Either way, across workers every element is read exactly once per pass (kOff: once per worker).
#pragma once

#include <cstdint>
#include <string_view>

#include "core/data/dataset.h"

namespace gradflow {

enum class AutoShardPolicy { kAuto, kFile, kData, kOff };

std::string_view shard_policy_name(AutoShardPolicy policy);

// Worker `index` of `num_workers`' part of ds under policy.
Dataset auto_shard(const Dataset& ds, int64_t num_workers, int64_t index, AutoShardPolicy policy = AutoShardPolicy::kAuto);

}  // namespace gradflow
