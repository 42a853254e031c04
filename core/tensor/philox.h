// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a counter-based
// generator. The numbers depend only on (key, counter), so element i of a random tensor is the same
// whichever thread or device computes it. Header-only and free of host-only code so CUDA kernels can
// include it.
#pragma once

#include <cstdint>

#include "core/tensor/host_device.h"

namespace gradflow::philox {

struct Uint4 {
  uint32_t x, y, z, w;
};

GF_HOST_DEVICE uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Ten rounds of Philox4x32 on counter c with key (k0, k1).
GF_HOST_DEVICE Uint4 philox4x32(Uint4 c, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(kMul0, c.x, &hi0);
    uint32_t lo1 = mulhilo(kMul1, c.z, &hi1);
    c = Uint4{hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0};
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return c;
}

// The four 32-bit words for block `index` of stream `stream` under `seed`.
GF_HOST_DEVICE Uint4 block(uint64_t seed, uint64_t stream, uint64_t index) {
  Uint4 counter{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), static_cast<uint32_t>(stream),
                static_cast<uint32_t>(stream >> 32)};
  return philox4x32(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// A uniform float in [0, 1) from 24 random bits, and a double from 53.
GF_HOST_DEVICE float uniform_float(uint32_t bits) { return static_cast<float>(bits >> 8) * 0x1.0p-24f; }
GF_HOST_DEVICE double uniform_double(uint32_t lo, uint32_t hi) {
  uint64_t bits = (static_cast<uint64_t>(hi) << 32 | lo) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

// Element i's word: word (i % 4) of block (i / 4).
GF_HOST_DEVICE uint32_t word(uint64_t seed, uint64_t stream, uint64_t i) {
  Uint4 b = block(seed, stream, i / 4);
  switch (i % 4) {
    case 0: return b.x;
    case 1: return b.y;
    case 2: return b.z;
    default: return b.w;
  }
}

}  // namespace gradflow::philox
