// safetensors: round trips for every dtype, the layout the format requires, and each kind of damage
// giving a clear error (never a crash or a huge allocation).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/gradflow.h"
#include "core/io/safetensors.h"

namespace gradflow {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()) + ".safetensors")).string();
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file from a header and data, as another writer (or an attacker) might make it.
std::string make_file(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(static_cast<uint64_t>(header.size()) >> (8 * i));
  return out + header + data;
}

void expect_corrupt(const std::string& bytes, const std::string& text) {
  absl::StatusOr<SafetensorsFile> f = parse_safetensors(bytes, "x.safetensors");
  ASSERT_FALSE(f.ok()) << "accepted: " << text;
  EXPECT_EQ(f.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(std::string(f.status().message()).find("x.safetensors"), std::string::npos) << f.status();
  EXPECT_NE(std::string(f.status().message()).find(text), std::string::npos) << f.status();
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  std::string path = temp_path("roundtrip");
  std::vector<std::pair<std::string, Tensor>> in{
      {"dense/kernel", random_uniform({3, 4}, -1, 1, kF32, kCPU, 1)},
      {"dense/bias", random_uniform({4}, -1, 1, kF64, kCPU, 2)},
      {"half", random_uniform({5}, -1, 1, kF32, kCPU, 3).to(kF16)},
      {"brain", random_uniform({2, 2}, -1, 1, kF32, kCPU, 4).to(kBF16)},
      {"steps", from_vector<int64_t>({1, 2, 3})},
      {"ints", from_vector<int32_t>({-7, 8})},
      {"bytes", from_vector<uint8_t>({0, 255})},
      {"mask", from_vector<float>({0, 1, 1}).to(kBool)},
      {"scalar", scalar(2.5)},
      {"empty", zeros({0, 3})},
      {"view", random_uniform({4, 4}, 0, 1, kF32, kCPU, 5).transpose()},  // written row-major
  };
  ASSERT_TRUE(write_safetensors(path, in, {{"step", "100"}, {"format", "gradflow"}}, {.fsync = true}).ok());
  std::string bytes = file_bytes(path);
  uint64_t header = 0;
  for (int i = 0; i < 8; ++i) header |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  EXPECT_EQ((8 + header) % 8, 0u) << "the data starts 8-byte aligned";
  absl::StatusOr<SafetensorsFile> out = read_safetensors(path);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->metadata.at("step"), "100");
  ASSERT_EQ(out->tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    const Tensor& got = out->tensors.at(name);
    EXPECT_EQ(got.shape(), t.shape()) << name;
    EXPECT_EQ(got.dtype(), t.dtype()) << name;
    EXPECT_EQ(got.to(kF64).reshape({-1}).to_vector<double>(), t.to(kF64).reshape({-1}).to_vector<double>()) << name;
  }
  std::filesystem::remove(path);
}

// encode_safetensors gives the exact bytes write_safetensors writes (the header, then the tensors in
// file order): what checkpoints hash on another thread while the file is written. A 40 MB tensor spans
// several 16 MiB write chunks.
TEST(Safetensors, EncodingIsTheFileBytes) {
  std::string path = temp_path("encoding");
  std::vector<std::pair<std::string, Tensor>> tensors{{"small", from_vector<int32_t>({1, 2, 3})},
                                                      {"big", random_uniform({10, 1000, 1000}, 0, 1, kF32, kCPU, 6)},
                                                      {"wide", from_vector<double>({0.5})}};
  absl::StatusOr<SafetensorsEncoding> encoding = encode_safetensors(path, tensors, {{"step", "3"}});
  ASSERT_TRUE(encoding.ok()) << encoding.status();
  ASSERT_TRUE(write_encoded_safetensors(path, *encoding, {.fsync = true}).ok());
  std::string expected = encoding->header;
  for (const Tensor& t : encoding->tensors) {
    expected.append(static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()));
  }
  EXPECT_EQ(encoding->tensors.size(), 3u);
  EXPECT_TRUE(expected == file_bytes(path)) << expected.size() << " bytes encoded";
  ASSERT_TRUE(write_safetensors(path + "2", tensors, {{"step", "3"}}).ok());
  EXPECT_TRUE(file_bytes(path + "2") == file_bytes(path)) << "write_safetensors writes the same";
  EXPECT_FALSE(encode_safetensors(path, {{"", zeros({1})}}).ok());
  std::filesystem::remove(path);
  std::filesystem::remove(path + "2");
}

TEST(Safetensors, WriterRefusesBadNames) {
  std::string path = temp_path("names");
  EXPECT_FALSE(write_safetensors(path, {{"a", zeros({1})}, {"a", zeros({2})}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"", zeros({1})}}).ok());
  EXPECT_FALSE(write_safetensors(path, {{"__metadata__", zeros({1})}}).ok());
  std::filesystem::remove(path);
}

TEST(Safetensors, DamageGivesAClearError) {
  std::string four = std::string(16, '\0');
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  ASSERT_TRUE(parse_safetensors(make_file("{" + ok_entry + "}", four), "x").ok());
  expect_corrupt("abc", "less than the 8-byte header size");
  expect_corrupt(make_file("{" + ok_entry + "}", four).substr(0, 30), "but only");  // truncated
  expect_corrupt(make_file("{\"a\":", four), "not a JSON object");
  expect_corrupt(make_file("[1,2]", four), "not a JSON object");
  std::string huge(8, '\xff');
  expect_corrupt(huge + "{}", "exceeds the limit");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", four.substr(0, 12)),
                 "needs 16");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", four.substr(0, 8)),
                 "outside the 8 data bytes");
  expect_corrupt(make_file(R"({"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})", four.substr(0, 4)),
                 "unsupported dtype");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four.substr(0, 4)),
                 "bad dimension");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,4]}})",
                           four.substr(0, 4)),
                 "too large");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", four.substr(0, 8)), "a gap");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                           four.substr(0, 12)),
                 "overlaps");
  expect_corrupt(make_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", four.substr(0, 8)),
                 "cover 4 of the 8");
  expect_corrupt(make_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", four.substr(0, 4)), "needs dtype");
  expect_corrupt(make_file(R"({"__metadata__":{"k":1}})", ""), "is not a string");
  EXPECT_EQ(read_safetensors("/nonexistent/x.safetensors").status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace gradflow
