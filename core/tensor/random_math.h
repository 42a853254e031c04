// How element i of each random distribution is computed from Philox words. Shared by the CPU loops and
// the CUDA kernels, so one seed gives the same numbers on both (uniform bit for bit; normal values are
// computed in double and rounded, so they agree unless libm and CUDA differ in the last double bit).
#pragma once

#include <cmath>

#include "core/tensor/philox.h"

namespace gradflow::philox {

// Element i of a uniform draw in [0, 1) of doubles: 53 random bits from Philox block i.
GF_HOST_DEVICE double uniform_at(uint64_t seed, uint64_t stream, uint64_t i) {
  Uint4 b = block(seed, stream, i);
  return uniform_double(b.x, b.y);
}

// Element i of a uniform draw in [0, 1) of floats (f32, f16, bf16): 24 random bits, word i % 4 of Philox
// block i / 4. One block gives four floats, as in TensorFlow's and cuRAND's Philox, a quarter of the
// work of a block per element (the CPU loop computes each block once for its four elements).
GF_HOST_DEVICE float uniform_float_at(uint64_t seed, uint64_t stream, uint64_t i) {
  return uniform_float(word(seed, stream, i));
}

// Box-Muller on one Philox block: a standard normal sample. `attempt` selects a fresh block for
// rejection sampling (truncated normal).
GF_HOST_DEVICE double normal_at(uint64_t seed, uint64_t stream, uint64_t i, uint32_t attempt = 0) {
  Uint4 b = block(seed, stream ^ (static_cast<uint64_t>(attempt) << 48), i);
  double u1 = (static_cast<double>(b.x) + 1.0) * 0x1.0p-32;  // (0, 1]
  double u2 = static_cast<double>(b.y) * 0x1.0p-32;          // [0, 1)
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586476925 * u2);
}

// A standard normal sample redrawn until it lies within two standard deviations (as Keras' and TF's
// truncated_normal do).
GF_HOST_DEVICE double truncated_normal_at(uint64_t seed, uint64_t stream, uint64_t i) {
  for (uint32_t attempt = 0; attempt < 64; ++attempt) {
    double z = normal_at(seed, stream, i, attempt);
    if (z >= -2.0 && z <= 2.0) return z;
  }
  return 0.0;  // unreachable in practice: 64 rejections in a row has probability 0.0455^64
}

}  // namespace gradflow::philox
