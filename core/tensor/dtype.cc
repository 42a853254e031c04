#include "core/tensor/dtype.h"

#include "core/tensor/half_convert.h"

namespace gradflow {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case kF32: case kI32: return 4;
    case kF64: case kI64: return 8;
    case kF16: case kBF16: return 2;
    case kU8: case kBool: return 1;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case kF32: return "f32";
    case kF64: return "f64";
    case kF16: return "f16";
    case kBF16: return "bf16";
    case kI32: return "i32";
    case kI64: return "i64";
    case kU8: return "u8";
    case kBool: return "bool";
  }
  return "?";
}

DType dtype_from_name(std::string_view name) {
  for (DType d : {kF32, kF64, kF16, kBF16, kI32, kI64, kU8, kBool}) {
    if (dtype_name(d) == name) return d;
  }
  throw ValueError(str_cat("unknown dtype '", name, "' (expected f32, f64, f16, bf16, i32, i64, u8 or bool)"));
}

bool is_floating(DType dtype) { return dtype == kF32 || dtype == kF64 || is_half(dtype); }
bool is_half(DType dtype) { return dtype == kF16 || dtype == kBF16; }

void throw_unsupported_dtype(std::string_view op, DType dtype) {
  throw DTypeError(str_cat(op, ": dtype ", dtype_name(dtype), " is not supported"));
}

namespace {
uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
}  // namespace

Half::Half(float value) {
  // Round-to-nearest-even float -> binary16, with subnormals, infinities and NaN.
  uint32_t x = float_bits(value);
  uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or nan
    bits = static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    return;
  }
  if (abs >= 0x477ff000u) {  // rounds to >= 65520: overflow to inf
    bits = static_cast<uint16_t>(sign | 0x7c00u);
    return;
  }
  if (abs < 0x38800000u) {  // below the smallest normal half: subnormal or zero
    float f = bits_float(abs) + 0.5f;  // the add rounds to the half's subnormal spacing 2^-24
    bits = static_cast<uint16_t>(sign | (float_bits(f) - 0x3f000000u));
    return;
  }
  uint32_t mant_odd = (abs >> 13) & 1u;
  abs += 0xc8000fffu + mant_odd;  // re-bias exponent (-112 << 23) and round to nearest even
  bits = static_cast<uint16_t>(sign | (abs >> 13));
}

Half::operator float() const {
  uint32_t sign = (bits & 0x8000u) << 16;
  uint32_t exp = (bits >> 10) & 0x1fu;
  uint32_t mant = bits & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float f = static_cast<float>(mant) * 5.9604644775390625e-8f;  // mant * 2^-24
    return sign ? -f : f;
  }
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

BFloat16::BFloat16(float value) : bits(half_convert::float_to_bf16(value)) {}

BFloat16::operator float() const { return half_convert::bf16_to_float(bits); }

}  // namespace gradflow
