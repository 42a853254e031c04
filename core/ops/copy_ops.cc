// Kernel-level copies used inside other kernels and by Variable: a dtype cast, a row-major copy, and a
// copy into existing memory. They are registered like ops (so each device supplies a kernel) but are
// called directly and never recorded on a tape.
#include "core/ops/internal.h"

namespace gradflow {
namespace {
MetaList no_infer(const TensorList& in, const Attrs&) { return {}; }
}  // namespace

void register_copy_ops(OpRegistry& r) {
  r.define({.name = "cast_copy", .infer = no_infer, .half_via_f32 = false});
  r.define({.name = "contiguous_copy", .infer = no_infer, .half_via_f32 = false});
  r.define({.name = "copy_into", .infer = no_infer, .half_via_f32 = false});
}

Tensor cast_kernel(const Tensor& t, DType dtype) {
  static const OpDef& op = op_def("cast_copy");
  return kernel_for(op, t.device())({t}, {{"dtype", dtype}}, {TensorMeta{t.shape(), dtype, t.device()}})[0];
}

Tensor contiguous_kernel(const Tensor& t) {
  static const OpDef& op = op_def("contiguous_copy");
  return kernel_for(op, t.device())({t}, {}, {TensorMeta{t.shape(), t.dtype(), t.device()}})[0];
}

void copy_into(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape() || dst.dtype() != src.dtype() || dst.device() != src.device()) {
    throw ShapeError(str_cat("copy_into: destination ", shape_str(dst.shape()), " ", dtype_name(dst.dtype()), " on ",
                                  dst.device().str(), " does not match source ", shape_str(src.shape()), " ",
                                  dtype_name(src.dtype()), " on ", src.device().str()));
  }
  static const OpDef& op = op_def("copy_into");
  kernel_for(op, dst.device())({dst, src}, {}, {});
}

}  // namespace gradflow
