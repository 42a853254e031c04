// Integer pow, exact on both devices: a^b by repeated squaring, wrapping on overflow like the other
// integer ops. Going through floating-point pow (as before) rounded 3^1 to 2.9999999999999996 and then
// truncated it to 2 on the GPU, whose pow is not correctly rounded.
#pragma once

#include <type_traits>

#include "core/tensor/host_device.h"

namespace gradflow {

template <typename T>
GF_HOST_DEVICE T integer_power(T base, T exponent) {
  using U = std::make_unsigned_t<T>;
  if constexpr (std::is_signed_v<T>) {
    if (exponent < 0) {
      // 1 / base^n truncated toward zero, as the integer result of a real power: only 1 and -1 survive.
      // Base 0 gives 0 (NumPy raises instead; an op here never traps).
      if (base == 1) return 1;
      if (base == -1) return (exponent & 1) ? T(-1) : T(1);
      return 0;
    }
  }
  U result = 1, square = static_cast<U>(base), e = static_cast<U>(exponent);
  while (e != 0) {
    if (e & 1) result = static_cast<U>(result * square);
    square = static_cast<U>(square * square);
    e >>= 1;
  }
  return static_cast<T>(result);
}

}  // namespace gradflow
