// Copying large host buffers the way an async save needs it (private to core/checkpoint).
#pragma once

#include <cstddef>

namespace gradflow::checkpoint_files {

// Copies n bytes like memcpy, with non-temporal stores on x86-64: the destination is not read into the
// cache first. glibc's memcpy does that only above its non-temporal threshold (114 MB on the 2-vCPU
// test VM, whose 400 MB memcpy takes ~45 ms while four 100 MB ones take ~70 ms); this gets the fast path
// at every size. Not thread-safe against writers of either range.
void stream_copy(char* to, const char* from, size_t n);

}  // namespace gradflow::checkpoint_files
