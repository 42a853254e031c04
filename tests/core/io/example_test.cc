// tf.train.Example: round trips, the exact wire bytes TensorFlow produces, and malformed input, which must
// be kDataLoss and never a crash.
#include "core/io/example.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/tensor/error.h"
#include "tests/core/io/io_test_util.h"

namespace gradflow {
namespace {

using testing_io::has_error;

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

TEST(Example, RoundTripsEveryKind) {
  Example ex;
  ex["image/encoded"] = Feature::bytes({std::string("\x89PNG\0\1", 6), "", "second"});
  ex["label"] = Feature::int64s({7, -1, std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()});
  ex["bbox"] = Feature::floats({0.1f, -2.5f, std::numeric_limits<float>::infinity(), 1e-30f});
  ex["empty_floats"] = Feature::floats({});
  std::vector<float> many(100000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<float>(i) * 0.5f;
  ex["many"] = Feature::floats(many);
  absl::StatusOr<Example> back = parse_example(serialize_example(ex));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, ex);
  EXPECT_EQ(back->at("label").int64_list()[0], 7);
  EXPECT_EQ(serialize_example(ex), serialize_example(*back));  // deterministic: keys in order
}

TEST(Example, NaNSurvivesTheRoundTrip) {
  Example ex{{"x", Feature::floats({std::nanf("")})}};
  EXPECT_TRUE(std::isnan(parse_example(serialize_example(ex))->at("x").float_list()[0]));
}

// The bytes tf.train.Example(features=tf.train.Features(feature={...})).SerializeToString() gives.
TEST(Example, WireBytesMatchTensorFlow) {
  std::string int64_example =
      bytes({0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, 'x', 0x12, 0x05, 0x1a, 0x03, 0x0a, 0x01, 0x01});
  EXPECT_EQ(serialize_example({{"x", Feature::int64s({1})}}), int64_example);
  std::string float_example =
      bytes({0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x01, 'y', 0x12, 0x08, 0x12, 0x06, 0x0a, 0x04, 0x00, 0x00, 0x80, 0x3f});
  EXPECT_EQ(serialize_example({{"y", Feature::floats({1.0f})}}), float_example);
  std::string bytes_example =
      bytes({0x0a, 0x0d, 0x0a, 0x0b, 0x0a, 0x01, 'z', 0x12, 0x06, 0x0a, 0x04, 0x0a, 0x02, 'h', 'i'});
  EXPECT_EQ(serialize_example({{"z", Feature::bytes({"hi"})}}), bytes_example);
  EXPECT_EQ(parse_example(float_example)->at("y").float_list(), std::vector<float>{1.0f});
}

TEST(Example, ParsesUnpackedListsAndUnsetKinds) {
  // Int64List with unpacked values (tag 0x08 per value), as older writers produce.
  std::string unpacked =
      bytes({0x0a, 0x0f, 0x0a, 0x0d, 0x0a, 0x01, 'u', 0x12, 0x08, 0x1a, 0x06, 0x08, 0x01, 0x08, 0x02, 0x08, 0x03});
  absl::StatusOr<Example> ex = parse_example(unpacked);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(ex->at("u").int64_list(), (std::vector<int64_t>{1, 2, 3}));
  // A Feature with no kind set reads as an empty bytes list.
  absl::StatusOr<Example> unset = parse_example(bytes({0x0a, 0x07, 0x0a, 0x05, 0x0a, 0x01, 'e', 0x12, 0x00}));
  ASSERT_TRUE(unset.ok()) << unset.status();
  EXPECT_TRUE(unset->at("e").is_bytes());
  EXPECT_TRUE(unset->at("e").bytes_list().empty());
  EXPECT_TRUE(parse_example("")->empty());  // zero bytes are an empty Example, as in TensorFlow
}

TEST(Example, MalformedBytesAreDataLoss) {
  std::string good = serialize_example({{"x", Feature::int64s({1})}});
  for (size_t keep = 1; keep < good.size(); ++keep) {  // every cut lands inside the outer message
    EXPECT_TRUE(has_error(parse_example(good.substr(0, keep)).status(), absl::StatusCode::kDataLoss,
                          {"parse_example", "not a valid tf.train.Example"}))
        << "prefix of " << keep << " bytes";
  }
  for (const std::string& garbage :
       {bytes({0xff, 0xff, 0xff, 0xff}), bytes({0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}), std::string("\x0f", 1),
        bytes({0x0a, 0x05, 0x0a, 0x03, 0x0a, 0x01, 0xff}) /* invalid UTF-8 feature name */}) {
    EXPECT_EQ(parse_example(garbage).status().code(), absl::StatusCode::kDataLoss);
  }
  EXPECT_THROW(to_example(bytes({0xff, 0xff})), Error);
}

TEST(Example, WrongKindAccessorThrowsValueError) {
  Feature f = Feature::int64s({1});
  EXPECT_THROW(f.float_list(), ValueError);
  try {
    f.bytes_list();
    ADD_FAILURE() << "no exception";
  } catch (const ValueError& e) {
    EXPECT_STREQ(e.what(), "Feature: asked for bytes_list but it holds int64_list");
  }
}

}  // namespace
}  // namespace gradflow
