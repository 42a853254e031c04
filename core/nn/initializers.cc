#include "core/nn/initializers.h"

#include <cmath>

#include "core/ops/ops.h"

namespace gradflow::initializers {
namespace {

struct Fans {
  double in, out;
};
Fans fans(const Shape& s) {
  if (s.empty()) return {1, 1};
  if (s.size() == 1) return {static_cast<double>(s[0]), static_cast<double>(s[0])};
  double receptive = 1;
  for (size_t i = 0; i + 2 < s.size(); ++i) receptive *= static_cast<double>(s[i]);
  return {static_cast<double>(s[s.size() - 2]) * receptive, static_cast<double>(s.back()) * receptive};
}

}  // namespace

Initializer zeros() {
  return [](const Shape& s, DType d) { return gradflow::zeros(s, d); };
}
Initializer ones() {
  return [](const Shape& s, DType d) { return gradflow::ones(s, d); };
}
Initializer constant(double value) {
  return [value](const Shape& s, DType d) { return full(s, value, d); };
}
Initializer random_normal(double mean, double stddev) {
  return [=](const Shape& s, DType d) { return gradflow::random_normal(s, mean, stddev, d); };
}
Initializer random_uniform(double minval, double maxval) {
  return [=](const Shape& s, DType d) { return gradflow::random_uniform(s, minval, maxval, d); };
}
Initializer truncated_normal(double mean, double stddev) {
  return [=](const Shape& s, DType d) { return gradflow::truncated_normal(s, mean, stddev, d); };
}
Initializer glorot_uniform() {
  return [](const Shape& s, DType d) {
    Fans f = fans(s);
    double limit = std::sqrt(6.0 / (f.in + f.out));
    return gradflow::random_uniform(s, -limit, limit, d);
  };
}
Initializer glorot_normal() {
  return [](const Shape& s, DType d) {
    Fans f = fans(s);
    // 0.8796... is the stddev of a unit normal truncated at +-2, which Keras divides out.
    return gradflow::truncated_normal(s, 0, std::sqrt(2.0 / (f.in + f.out)) / 0.87962566103423978, d);
  };
}
Initializer he_uniform() {
  return [](const Shape& s, DType d) {
    double limit = std::sqrt(6.0 / fans(s).in);
    return gradflow::random_uniform(s, -limit, limit, d);
  };
}
Initializer he_normal() {
  return [](const Shape& s, DType d) {
    return gradflow::truncated_normal(s, 0, std::sqrt(2.0 / fans(s).in) / 0.87962566103423978, d);
  };
}

Initializer orthogonal(double gain) {
  return [gain](const Shape& s, DType d) {
    if (s.size() != 2) throw ShapeError(str_cat("orthogonal initializer needs a 2-D shape, got ", shape_str(s)));
    // Gram-Schmidt on the rows (or columns, whichever are fewer) of a normal matrix.
    int64_t rows = s[0], cols = s[1];
    bool transpose = rows < cols;
    int64_t n = transpose ? cols : rows, k = transpose ? rows : cols;
    std::vector<double> a = gradflow::random_normal({n, k}, 0, 1, kF64).to_vector<double>();
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t p = 0; p < j; ++p) {
        double dot = 0;
        for (int64_t i = 0; i < n; ++i) dot += a[i * k + j] * a[i * k + p];
        for (int64_t i = 0; i < n; ++i) a[i * k + j] -= dot * a[i * k + p];
      }
      double norm = 0;
      for (int64_t i = 0; i < n; ++i) norm += a[i * k + j] * a[i * k + j];
      norm = std::sqrt(norm);
      for (int64_t i = 0; i < n; ++i) a[i * k + j] /= norm;
    }
    Tensor q = from_vector<double>(a, {n, k}) * gain;
    return (transpose ? q.transpose().contiguous() : q).to(d);
  };
}

Initializer get(const std::string& name) {
  if (name == "zeros") return zeros();
  if (name == "ones") return ones();
  if (name == "glorot_uniform") return glorot_uniform();
  if (name == "glorot_normal") return glorot_normal();
  if (name == "he_uniform") return he_uniform();
  if (name == "he_normal") return he_normal();
  if (name == "orthogonal") return orthogonal();
  if (name == "random_normal") return random_normal();
  if (name == "random_uniform") return random_uniform();
  if (name == "truncated_normal") return truncated_normal();
  throw ValueError(str_cat("unknown initializer '", name, "'"));
}

}  // namespace gradflow::initializers
