// CRC32C (Castagnoli polynomial 0x1EDC6F41, as iSCSI, ext4 and TFRecord use it) and TFRecord's masking.
//
//   uint32_t crc = crc32c::value(data);                 // 0xE3069283 for "123456789"
//   uint32_t crc2 = crc32c::extend(crc, more_data);     // value(a + b) == extend(value(a), b)
//   uint32_t stored = crc32c::mask(crc);                // what a TFRecord holds
//
// Uses the SSE4.2 crc32 instruction when the CPU has it (checked once at run time), else a slice-by-8 table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gradflow::crc32c {

// The CRC of data appended to a message whose CRC is crc (0 for an empty message).
uint32_t extend(uint32_t crc, const void* data, size_t size);
inline uint32_t extend(uint32_t crc, std::string_view data) { return extend(crc, data.data(), data.size()); }
inline uint32_t value(const void* data, size_t size) { return extend(0, data, size); }
inline uint32_t value(std::string_view data) { return extend(0, data.data(), data.size()); }

// The software (slice-by-8) implementation, whatever the CPU: for tests that compare the two paths.
uint32_t extend_portable(uint32_t crc, const void* data, size_t size);

// TFRecord stores masked CRCs, since a CRC of data that itself contains CRCs is weak.
inline constexpr uint32_t kMaskDelta = 0xa282ead8u;
inline uint32_t mask(uint32_t crc) { return ((crc >> 15) | (crc << 17)) + kMaskDelta; }
inline uint32_t unmask(uint32_t masked) {
  uint32_t rot = masked - kMaskDelta;
  return (rot >> 17) | (rot << 15);
}

}  // namespace gradflow::crc32c
