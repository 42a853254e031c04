#include "core/io/example.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <limits>

#include "core/io/proto/example.pb.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace {

const char* kind_name(const Feature& f) {
  return f.is_bytes() ? "bytes_list" : f.is_float() ? "float_list" : "int64_list";
}

template <typename List>
const List& get_list(const Feature& f, const char* wanted) {
  const List* list = std::get_if<List>(&f.value);
  GF_CHECK(list != nullptr, ValueError, "Feature: asked for ", wanted, " but it holds ", kind_name(f));
  return *list;
}

void to_proto(const Feature& feature, proto::Feature* out) {
  std::visit(
      [&](const auto& list) {
        using List = std::decay_t<decltype(list)>;
        if constexpr (std::is_same_v<List, Feature::BytesList>) {
          auto* values = out->mutable_bytes_list()->mutable_value();
          values->Reserve(static_cast<int>(list.size()));
          for (const std::string& v : list) values->Add(std::string(v));
        } else if constexpr (std::is_same_v<List, Feature::FloatList>) {
          out->mutable_float_list()->mutable_value()->Add(list.begin(), list.end());
        } else {
          out->mutable_int64_list()->mutable_value()->Add(list.begin(), list.end());
        }
      },
      feature.value);
}

Feature from_proto(const proto::Feature& feature) {
  switch (feature.kind_case()) {
    case proto::Feature::kFloatList: {
      const auto& v = feature.float_list().value();
      return Feature::floats(Feature::FloatList(v.begin(), v.end()));
    }
    case proto::Feature::kInt64List: {
      const auto& v = feature.int64_list().value();
      return Feature::int64s(Feature::Int64List(v.begin(), v.end()));
    }
    case proto::Feature::kBytesList: {
      const auto& v = feature.bytes_list().value();
      return Feature::bytes(Feature::BytesList(v.begin(), v.end()));
    }
    case proto::Feature::KIND_NOT_SET:
      break;
  }
  return Feature::bytes({});
}

}  // namespace

const Feature::BytesList& Feature::bytes_list() const { return get_list<BytesList>(*this, "bytes_list"); }
const Feature::FloatList& Feature::float_list() const { return get_list<FloatList>(*this, "float_list"); }
const Feature::Int64List& Feature::int64_list() const { return get_list<Int64List>(*this, "int64_list"); }

std::string serialize_example(const Example& example) {
  proto::Example message;
  auto* features = message.mutable_features()->mutable_feature();
  for (const auto& [name, feature] : example) to_proto(feature, &(*features)[name]);
  std::string out;
  // Map fields serialize in hash order unless asked: deterministic bytes make files reproducible.
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

absl::StatusOr<Example> parse_example(std::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::DataLossError(str_cat("parse_example: ", bytes.size(), " bytes is over protobuf's 2 GiB limit"));
  }
  proto::Example message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(str_cat("parse_example: ", bytes.size(), " bytes are not a valid tf.train.Example"));
  }
  Example example;
  for (const auto& [name, feature] : message.features().feature()) example.emplace(name, from_proto(feature));
  return example;
}

Example to_example(std::string_view bytes) {
  absl::StatusOr<Example> example = parse_example(bytes);
  throw_if_error(example.status());
  return std::move(*example);
}

}  // namespace gradflow
