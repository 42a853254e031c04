#include "core/checkpoint/stream_copy.h"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

namespace gradflow::checkpoint_files {

#if defined(__x86_64__)

void stream_copy(char* to, const char* from, size_t n) {
  // As glibc's large_memcpy_4x: 4 pages side by side, one cache line of each in turn (more DRAM pages
  // open at once), loaded unaligned and stored with SSE2's non-temporal stores (baseline x86-64).
  constexpr size_t kPage = 4096, kBlock = 4 * kPage;
  size_t head = std::min(n, (kPage - reinterpret_cast<uintptr_t>(to) % kPage) % kPage);
  std::memcpy(to, from, head);
  to += head;
  from += head;
  n -= head;
  size_t body = n / kBlock * kBlock;
  for (size_t block = 0; block < body; block += kBlock) {
    for (size_t line = 0; line < kPage; line += 64) {
      for (size_t page = 0; page < 4; ++page) {
        const __m128i* f = reinterpret_cast<const __m128i*>(from + block + page * kPage + line);
        __m128i* t = reinterpret_cast<__m128i*>(to + block + page * kPage + line);
        __m128i a = _mm_loadu_si128(f), b = _mm_loadu_si128(f + 1), c = _mm_loadu_si128(f + 2), d = _mm_loadu_si128(f + 3);
        _mm_stream_si128(t, a);
        _mm_stream_si128(t + 1, b);
        _mm_stream_si128(t + 2, c);
        _mm_stream_si128(t + 3, d);
      }
    }
  }
  std::memcpy(to + body, from + body, n - body);
  _mm_sfence();  // non-temporal stores are weakly ordered: make them visible before anyone reads
}

#else

void stream_copy(char* to, const char* from, size_t n) { std::memcpy(to, from, n); }

#endif

}  // namespace gradflow::checkpoint_files
