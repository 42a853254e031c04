// CPU kernels for cast_copy, contiguous_copy and copy_into: one strided loop over two operands.
#include "core/ops/cpu/strided_loop.h"
#include "core/ops/internal.h"

namespace gradflow {
namespace {

// dst[i] = convert(src[i]) over the shared shape, whatever either layout is.
void strided_convert(const Tensor& dst, const Tensor& src) {
  visit_all(dst.dtype(), [&](auto dst_tag) {
    using D = typename decltype(dst_tag)::type;
    visit_all(src.dtype(), [&](auto src_tag) {
      using S = typename decltype(src_tag)::type;
      D* pd = static_cast<D*>(dst.raw_data());
      const S* ps = static_cast<const S*>(src.raw_data());
      std::array<Strides, 2> strides{dst.strides(), broadcast_strides(src, dst.shape())};
      cpu::for_each_run<2>(dst.shape(), strides, [&](const auto& off, const auto& s, int64_t n) {
        D* o = pd + off[0];
        const S* x = ps + off[1];
        if (s[0] == 1 && s[1] == 1) {
          for (int64_t i = 0; i < n; ++i) o[i] = convert<D>(x[i]);
        } else {
          for (int64_t i = 0; i < n; ++i) o[i * s[0]] = convert<D>(x[i * s[1]]);
        }
      });
    });
  });
}

TensorList cast_copy(const TensorList& in, const Attrs&, const MetaList& m) {
  Tensor out = empty(m[0]);
  strided_convert(out, in[0]);
  return {out};
}

TensorList contiguous_copy(const TensorList& in, const Attrs&, const MetaList& m) {
  Tensor out = empty(m[0]);
  strided_convert(out, in[0]);
  return {out};
}

TensorList copy_into_kernel(const TensorList& in, const Attrs&, const MetaList&) {
  strided_convert(in[0], in[1]);
  return {};
}

}  // namespace

void register_copy_cpu_kernels(OpRegistry& r) {
  r.set_kernel("cast_copy", DeviceType::kCPU, cast_copy);
  r.set_kernel("contiguous_copy", DeviceType::kCPU, contiguous_copy);
  r.set_kernel("copy_into", DeviceType::kCPU, copy_into_kernel);
}

}  // namespace gradflow
