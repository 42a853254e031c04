// CRC32C against RFC 3720's test vectors (B.4) and the classic check value, both implementations, and
// TFRecord's mask.
#include "core/io/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace gradflow::crc32c {
namespace {

std::string bytes(std::initializer_list<int> values) {
  std::string s;
  for (int v : values) s.push_back(static_cast<char>(v));
  return s;
}

struct Vector {
  std::string name;
  std::string data;
  uint32_t crc;
};

std::vector<Vector> rfc3720_vectors() {
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  std::string iscsi_read_pdu =
      bytes({0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
             0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
             0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00});
  return {
      {"32 zero bytes", std::string(32, '\0'), 0x8a9136aa},
      {"32 0xff bytes", std::string(32, '\xff'), 0x62a8ab43},
      {"32 ascending bytes", ascending, 0x46dd794e},
      {"32 descending bytes", descending, 0x113fdb5c},
      {"iSCSI read PDU", iscsi_read_pdu, 0xd9963a56},
      {"123456789", "123456789", 0xe3069283},
      {"empty", "", 0},
  };
}

TEST(Crc32c, Rfc3720Vectors) {
  for (const Vector& v : rfc3720_vectors()) {
    EXPECT_EQ(value(v.data), v.crc) << v.name;
    EXPECT_EQ(extend_portable(0, v.data.data(), v.data.size()), v.crc) << v.name;
  }
}

TEST(Crc32c, ExtendEqualsWholeAtEverySplit) {
  std::string data = "The quick brown fox jumps over the lazy dog, then the dog sleeps again.";
  uint32_t whole = value(data);
  for (size_t split = 0; split <= data.size(); ++split) {
    std::string_view a(data.data(), split), b(data.data() + split, data.size() - split);
    EXPECT_EQ(extend(value(a), b), whole) << "split at " << split;
  }
}

TEST(Crc32c, HardwareAndPortableAgreeOnEveryLengthAndAlignment) {
  std::mt19937 rng(1234);
  std::string data(4096 + 16, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t size : {0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4096}) {
      const char* p = data.data() + offset;
      EXPECT_EQ(extend(0x12345678, p, size), extend_portable(0x12345678, p, size))
          << "offset " << offset << " size " << size;
    }
  }
}

TEST(Crc32c, MaskRoundTripsAndChangesTheValue) {
  uint32_t crc = value("foo");
  EXPECT_NE(mask(crc), crc);
  EXPECT_NE(mask(mask(crc)), crc);
  EXPECT_EQ(unmask(mask(crc)), crc);
  EXPECT_EQ(unmask(unmask(mask(mask(crc)))), crc);
  // The formula TensorFlow and TensorBoard use: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
  EXPECT_EQ(mask(0xe3069283u), static_cast<uint32_t>(((0xe3069283u >> 15) | (0xe3069283u << 17)) + 0xa282ead8u));
  EXPECT_EQ(mask(0), 0xa282ead8u);
}

}  // namespace
}  // namespace gradflow::crc32c
