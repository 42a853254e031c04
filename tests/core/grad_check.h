// Checks an op's gradients against central finite differences in float64.
//
//   expect_gradients_match([](const auto& in) { return mul(in[0], in[1]); },
//                          {random_f64({2, 3}, 1), random_f64({3}, 2)});
//
// The output is contracted with fixed random weights (loss = sum(f(x) * w)), so every output element's
// gradient matters, and each input element is perturbed by +-eps.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "core/gradflow.h"

namespace gradflow::testing {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

inline Tensor random_f64(Shape shape, uint64_t seed, double lo = -1, double hi = 1) {
  return random_uniform(std::move(shape), lo, hi, kF64, kCPU, seed);
}

inline double weighted_loss(const Fn& f, const std::vector<Tensor>& inputs, const Tensor& weights) {
  return sum(mul(f(inputs), weights)).item();
}

// Perturbs one element of input k (row-major index i) by delta.
inline std::vector<Tensor> perturbed(const std::vector<Tensor>& inputs, size_t k, int64_t i, double delta) {
  std::vector<Tensor> out = inputs;
  std::vector<double> values = inputs[k].to_vector<double>();
  values[i] += delta;
  out[k] = from_vector<double>(values, inputs[k].shape());
  return out;
}

// Compares tape gradients of every float64 input with finite differences.
inline void expect_gradients_match(const Fn& f, const std::vector<Tensor>& inputs, double eps = 1e-6,
                                   double tolerance = 1e-6) {
  Tensor probe = f(inputs);
  Tensor weights = random_f64(probe.shape(), 1234);
  std::vector<Tensor> analytic;
  {
    GradientTape tape;
    for (const Tensor& t : inputs) tape.watch(t);
    Tensor loss = sum(mul(f(inputs), weights));
    std::vector<GradSource> sources(inputs.begin(), inputs.end());
    analytic = tape.gradient(loss, sources);
  }
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (inputs[k].dtype() != kF64) continue;
    std::vector<double> got =
        analytic[k].defined() ? analytic[k].to_vector<double>() : std::vector<double>(inputs[k].numel(), 0.0);
    ASSERT_EQ(static_cast<int64_t>(got.size()), inputs[k].numel()) << "gradient of input " << k << " has the wrong size";
    if (analytic[k].defined()) {
      EXPECT_EQ(analytic[k].shape(), inputs[k].shape()) << "gradient shape of input " << k;
    }
    for (int64_t i = 0; i < inputs[k].numel(); ++i) {
      double up = weighted_loss(f, perturbed(inputs, k, i, eps), weights);
      double down = weighted_loss(f, perturbed(inputs, k, i, -eps), weights);
      double numeric = (up - down) / (2 * eps);
      EXPECT_NEAR(got[i], numeric, tolerance * std::max(1.0, std::abs(numeric)))
          << "input " << k << " element " << i << " of shape " << shape_str(inputs[k].shape());
    }
  }
}

}  // namespace gradflow::testing
