#include "distributed/comm/communicator.h"

#include <algorithm>

#include "core/ops/ops.h"

namespace gradflow::distributed {

// Through all_gather_v: this rank's rows out, everyone's back, copied over the tensor.
void Communicator::all_gather_in_place(const Tensor& tensor) {
  if (!tensor.defined() || tensor.rank() == 0) throw ValueError("all_gather_in_place: needs a tensor with an axis");
  const int64_t n = tensor.dim(0), r = rank(), s = size();
  const int64_t lo = r * (n / s) + std::min<int64_t>(r, n % s), hi = lo + n / s + (r < n % s ? 1 : 0);
  copy_into(tensor, all_gather_v(tensor.slice(0, lo, hi).contiguous())->result()[0]);
}

}  // namespace gradflow::distributed
