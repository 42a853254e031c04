// Element types of a tensor, their sizes and names, 16-bit float conversions, and visit helpers that
// turn a runtime DType into a C++ type for kernels:
//   visit_numeric(t.dtype(), [&](auto tag) { using T = typename decltype(tag)::type; ... });
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "core/tensor/error.h"

namespace gradflow {

enum class DType : uint8_t { kF32, kF64, kF16, kBF16, kI32, kI64, kU8, kBool };
inline constexpr size_t kNumDTypes = static_cast<size_t>(DType::kBool) + 1;  // keep kBool last
inline constexpr DType kF32 = DType::kF32;
inline constexpr DType kF64 = DType::kF64;
inline constexpr DType kF16 = DType::kF16;
inline constexpr DType kBF16 = DType::kBF16;
inline constexpr DType kI32 = DType::kI32;
inline constexpr DType kI64 = DType::kI64;
inline constexpr DType kU8 = DType::kU8;
inline constexpr DType kBool = DType::kBool;

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "f32", "bf16", ...
DType dtype_from_name(std::string_view name);  // throws ValueError on an unknown name
bool is_floating(DType dtype);                 // f32, f64, f16, bf16
bool is_half(DType dtype);                     // f16, bf16

// IEEE binary16, stored as bits; arithmetic happens after conversion to float.
struct Half {
  uint16_t bits = 0;
  Half() = default;
  explicit Half(float value);
  explicit operator float() const;
};
// bfloat16 (the top half of a float, rounded to nearest even).
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float value);
  explicit operator float() const;
};

template <typename T>
struct TypeTag {
  using type = T;
};

template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return kF32; }
template <> constexpr DType dtype_of<double>() { return kF64; }
template <> constexpr DType dtype_of<Half>() { return kF16; }
template <> constexpr DType dtype_of<BFloat16>() { return kBF16; }
template <> constexpr DType dtype_of<int32_t>() { return kI32; }
template <> constexpr DType dtype_of<int64_t>() { return kI64; }
template <> constexpr DType dtype_of<uint8_t>() { return kU8; }
template <> constexpr DType dtype_of<bool>() { return kBool; }

[[noreturn]] void throw_unsupported_dtype(std::string_view op, DType dtype);

// Calls f(TypeTag<T>{}) for every dtype.
template <typename F>
decltype(auto) visit_all(DType dtype, F&& f) {
  switch (dtype) {
    case kF32: return f(TypeTag<float>{});
    case kF64: return f(TypeTag<double>{});
    case kF16: return f(TypeTag<Half>{});
    case kBF16: return f(TypeTag<BFloat16>{});
    case kI32: return f(TypeTag<int32_t>{});
    case kI64: return f(TypeTag<int64_t>{});
    case kU8: return f(TypeTag<uint8_t>{});
    case kBool: return f(TypeTag<bool>{});
  }
  throw_unsupported_dtype("visit", dtype);
}

// Types with native arithmetic on the CPU: f32, f64, i32, i64, u8. (f16/bf16 compute in f32.)
template <typename F>
decltype(auto) visit_numeric(std::string_view op, DType dtype, F&& f) {
  switch (dtype) {
    case kF32: return f(TypeTag<float>{});
    case kF64: return f(TypeTag<double>{});
    case kI32: return f(TypeTag<int32_t>{});
    case kI64: return f(TypeTag<int64_t>{});
    case kU8: return f(TypeTag<uint8_t>{});
    default: throw_unsupported_dtype(op, dtype);
  }
}

template <typename F>
decltype(auto) visit_float(std::string_view op, DType dtype, F&& f) {
  switch (dtype) {
    case kF32: return f(TypeTag<float>{});
    case kF64: return f(TypeTag<double>{});
    default: throw_unsupported_dtype(op, dtype);
  }
}

template <typename F>
decltype(auto) visit_index(std::string_view op, DType dtype, F&& f) {
  switch (dtype) {
    case kI32: return f(TypeTag<int32_t>{});
    case kI64: return f(TypeTag<int64_t>{});
    case kU8: return f(TypeTag<uint8_t>{});
    default: throw_unsupported_dtype(op, dtype);
  }
}

// Converts between any two element types (through float for the 16-bit ones).
template <typename To, typename From>
inline To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, Half> || std::is_same_v<From, BFloat16>) {
    return convert<To>(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return static_cast<To>(v);
  }
}

}  // namespace gradflow
