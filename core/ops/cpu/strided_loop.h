// Iteration over N operands that share an index space but not a memory layout (broadcast, transposed or
// sliced inputs). Dimensions that are contiguous for every operand are merged first, so the common
// cases (all contiguous; one broadcast scalar) become a single run the compiler can vectorize. Large
// index spaces are split into chunks across OpenMP threads; a chunk's result never depends on how many
// threads there are.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

#include "core/tensor/shape.h"

namespace gradflow::cpu {

// Elements per chunk handed to a thread. Large on purpose: below ~0.5M elements a memory-bound loop ends
// sooner than waking OpenMP threads that compete with BLAS threads for the cores.
inline constexpr int64_t kParallelGrain = 1 << 18;

template <size_t N>
struct Layout {
  Shape shape;
  std::array<Strides, N> strides;
};

// Drops size-1 dimensions and merges dimension pairs that are contiguous in every operand.
template <size_t N>
Layout<N> coalesce(const Shape& shape, const std::array<Strides, N>& strides) {
  Layout<N> out;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    if (!out.shape.empty()) {
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k) {
        if (out.strides[k].back() != strides[k][d] * shape[d]) mergeable = false;
      }
      if (mergeable) {
        out.shape.back() *= shape[d];
        for (size_t k = 0; k < N; ++k) out.strides[k].back() = strides[k][d];
        continue;
      }
    }
    out.shape.push_back(shape[d]);
    for (size_t k = 0; k < N; ++k) out.strides[k].push_back(strides[k][d]);
  }
  return out;
}

// Calls fn(offsets, inner_strides, n) for runs of n elements along the last (coalesced) dimension;
// offsets and strides are in elements, one per operand.
template <size_t N, typename Fn>
void for_each_run(const Shape& shape, const std::array<Strides, N>& strides, Fn&& fn) {
  int64_t total = numel(shape);
  if (total == 0) return;
  Layout<N> L = coalesce(shape, strides);
  int rank = static_cast<int>(L.shape.size());
  if (rank == 0) {
    fn(std::array<int64_t, N>{}, std::array<int64_t, N>{}, int64_t{1});
    return;
  }
  std::array<int64_t, N> inner_strides;
  for (size_t k = 0; k < N; ++k) inner_strides[k] = L.strides[k][rank - 1];
  const int64_t inner = L.shape[rank - 1];

  auto run_range = [&](int64_t begin, int64_t end) {
    Shape idx(rank);
    std::array<int64_t, N> off{};
    int64_t rem = begin;
    for (int d = rank - 1; d >= 0; --d) {
      idx[d] = rem % L.shape[d];
      rem /= L.shape[d];
      for (size_t k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    for (int64_t pos = begin; pos < end;) {
      int64_t n = std::min(inner - idx[rank - 1], end - pos);
      fn(off, inner_strides, n);
      pos += n;
      idx[rank - 1] += n;
      for (size_t k = 0; k < N; ++k) off[k] += n * inner_strides[k];
      for (int d = rank - 1; d > 0 && idx[d] == L.shape[d]; --d) {
        idx[d] = 0;
        ++idx[d - 1];
        for (size_t k = 0; k < N; ++k) off[k] += L.strides[k][d - 1] - L.shape[d] * L.strides[k][d];
      }
    }
  };

  int64_t chunks = (total + kParallelGrain - 1) / kParallelGrain;
  if (chunks < 2) {
    run_range(0, total);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) run_range(c * kParallelGrain, std::min(total, (c + 1) * kParallelGrain));
}

}  // namespace gradflow::cpu
