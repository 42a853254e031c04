#include "core/nn/replica_gather.h"

#include <cstdint>

#include "core/nn/replica_context.h"

namespace gradflow {

std::vector<std::string> all_gather_bytes(ReplicaContext& ctx, const std::string& mine) {
  const size_t n = static_cast<size_t>(ctx.num_replicas()), me = static_cast<size_t>(ctx.replica_id());
  // First the lengths (each replica fills its own slot of a sum), then the bytes at offsets every replica
  // computes alike, four to a double: a 32-bit word is exact in a double, and the sum of zeros leaves it so.
  std::vector<double> mine_length(n, 0.0);
  mine_length[me] = static_cast<double>(mine.size());
  std::vector<double> lengths = ctx.sum(mine_length);
  std::vector<size_t> offset(n + 1, 0);
  for (size_t r = 0; r < n; ++r) offset[r + 1] = offset[r] + (static_cast<size_t>(lengths[r]) + 3) / 4;
  std::vector<std::string> out(n);
  if (offset[n] == 0) return out;  // nobody has bytes: every replica knows it, so all skip the second sum
  std::vector<double> words(offset[n], 0.0);
  for (size_t i = 0; i < mine.size(); ++i) {
    uint32_t byte = static_cast<uint8_t>(mine[i]);
    words[offset[me] + i / 4] += static_cast<double>(byte << (8 * (i % 4)));
  }
  std::vector<double> all = ctx.sum(words);
  for (size_t r = 0; r < n; ++r) {
    out[r].resize(static_cast<size_t>(lengths[r]));
    for (size_t i = 0; i < out[r].size(); ++i) {
      uint32_t word = static_cast<uint32_t>(all[offset[r] + i / 4]);
      out[r][i] = static_cast<char>((word >> (8 * (i % 4))) & 0xffu);
    }
  }
  return out;
}

}  // namespace gradflow
