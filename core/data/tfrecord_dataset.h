// TFRecordDataset: the records of TFRecord files (core/io/tfrecord.h) as a Dataset, file after file.
//
//   TFRecordDataset records({"train-0.tfrecord", "train-1.tfrecord"});
//   Dataset examples = records.map([](Element e) { return parse(e[0]); });   // e[0]: u8 [record bytes]
//
// gradflow has no string dtype, so each element is one u8 1-D tensor holding a record's bytes. A corrupt
// record throws (naming the file and byte offset) at its position, and again on every later next(): the
// rest of that file cannot be trusted. The iterator's state is (file index, byte offset). To shard by
// file, use auto_shard (core/data/sharding.h), which rebuilds the pipeline over each worker's files.
#pragma once

#include <string>
#include <vector>

#include "core/data/dataset.h"
#include "core/io/tfrecord.h"

namespace gradflow {

class TFRecordDataset : public Dataset {
 public:
  explicit TFRecordDataset(std::vector<std::string> filenames, TFRecordReaderOptions options = {});
};

}  // namespace gradflow
