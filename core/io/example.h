// tf.train.Example: a map from feature name to a list of bytes, floats or int64s, serialized with
// protobuf exactly as TensorFlow does (the usual payload of a TFRecord file).
//
//   Example ex;
//   ex["image"] = Feature::bytes({raw_png});
//   ex["label"] = Feature::int64s({7});
//   ex["bbox"] = Feature::floats({0.1f, 0.2f, 0.5f, 0.9f});
//   std::string bytes = serialize_example(ex);           // what tf.io.parse_single_example reads
//   absl::StatusOr<Example> back = parse_example(bytes);  // kDataLoss for malformed bytes
//   const std::vector<int64_t>& label = back->at("label").int64_list();
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace gradflow {

struct Feature {
  using BytesList = std::vector<std::string>;
  using FloatList = std::vector<float>;
  using Int64List = std::vector<int64_t>;
  // A Feature whose kind TensorFlow left unset parses as an empty BytesList (TF reads it as empty).
  std::variant<BytesList, FloatList, Int64List> value;

  static Feature bytes(BytesList v) { return {std::move(v)}; }
  static Feature floats(FloatList v) { return {std::move(v)}; }
  static Feature int64s(Int64List v) { return {std::move(v)}; }

  bool is_bytes() const { return std::holds_alternative<BytesList>(value); }
  bool is_float() const { return std::holds_alternative<FloatList>(value); }
  bool is_int64() const { return std::holds_alternative<Int64List>(value); }
  // The list of that kind; gradflow::ValueError when the feature holds another kind.
  const BytesList& bytes_list() const;
  const FloatList& float_list() const;
  const Int64List& int64_list() const;

  bool operator==(const Feature&) const = default;
};

// Feature names in order (std::map), so serialization is deterministic.
using Example = std::map<std::string, Feature>;

// The protobuf wire bytes of a tensorflow.Example (field numbers as in TensorFlow's example.proto).
std::string serialize_example(const Example& example);
// Parses a serialized tensorflow.Example; kDataLoss (never a crash) when the bytes are not one.
absl::StatusOr<Example> parse_example(std::string_view bytes);
// parse_example that throws gradflow::Error.
Example to_example(std::string_view bytes);

}  // namespace gradflow
