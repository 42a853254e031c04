// CPU kernels for cast_copy, contiguous_copy and copy_into: one strided loop over two operands.
#include <type_traits>

#include "core/ops/cpu/strided_loop.h"
#include "core/ops/internal.h"
#include "core/tensor/half_convert.h"

namespace gradflow {
namespace {

// A contiguous run between float and a 16-bit float, in bulk (vectorized); false for other pairs.
template <typename D, typename S>
bool convert_16_bit(D* out, const S* in, int64_t n) {
  if constexpr (std::is_same_v<D, BFloat16> && std::is_same_v<S, float>) {
    half_convert::floats_to_bf16(in, reinterpret_cast<uint16_t*>(out), n);
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, BFloat16>) {
    half_convert::bf16_to_floats(reinterpret_cast<const uint16_t*>(in), out, n);
  } else if constexpr (std::is_same_v<D, Half> && std::is_same_v<S, float>) {
    half_convert::floats_to_f16(in, reinterpret_cast<uint16_t*>(out), n);
  } else if constexpr (std::is_same_v<D, float> && std::is_same_v<S, Half>) {
    half_convert::f16_to_floats(reinterpret_cast<const uint16_t*>(in), out, n);
  } else {
    return false;
  }
  return true;
}

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
          if (convert_16_bit(o, x, n)) return;
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
