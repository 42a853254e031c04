// Reader for IDX files, the format of MNIST and Fashion-MNIST (plain or gzip-compressed).
//
//   Tensor images = read_idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");  // [60000,28,28] u8
//
// The header's magic gives the element type and rank; sizes are checked against the bytes present, so a
// truncated or corrupt file is an error naming the file, never a short read or a huge allocation.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "core/tensor/tensor.h"

namespace gradflow {

// kDataLoss for a truncated or malformed file, kNotFound when it cannot be opened.
absl::StatusOr<Tensor> load_idx(const std::string& path);
// load_idx that throws gradflow::Error.
Tensor read_idx(const std::string& path);

}  // namespace gradflow
