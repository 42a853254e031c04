#include "core/gradflow.h"

#include <gtest/gtest.h>

namespace gradflow {
namespace {

TEST(Tensor, Smoke) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = add(x, from_vector<float>({10, 20, 30}));
  EXPECT_EQ(y.to_vector<float>(), (std::vector<float>{11, 22, 33, 14, 25, 36}));
  Tensor s = sum(x, {0});
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{5, 7, 9}));
  Tensor m = matmul(x, x.transpose());
  EXPECT_EQ(m.to_vector<float>(), (std::vector<float>{14, 32, 32, 77}));
  std::cout << m << "\n";
  Variable w(from_vector<double>({1, 2, 3}, {3}), "w");
  GradientTape tape;
  Tensor loss = sum(square(w.value()));
  auto g = tape.gradient(loss, {w});
  EXPECT_EQ((g[0].to_vector<double>()), (std::vector<double>{2, 4, 6}));
}

}  // namespace
}  // namespace gradflow
