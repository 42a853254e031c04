// The CUDA backend against the CPU: every op with a CUDA kernel run on the same inputs on both devices
// (contiguous, transposed, sliced and broadcast operands; f16/bf16; empty tensors), gradients through
// GradientTape, the Philox numbers for a seed, and the caching allocator. Every test is SKIPPED without
// a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/gradflow.h"
#include "core/tensor/cuda/cuda_device.h"

namespace gradflow {
namespace {

const Device kGpu = Device::cuda(0);
using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

class Cuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// Relative tolerance (to max(1, |expected|)) for results computed on both devices in a dtype.
double tolerance(DType d) {
  switch (d) {
    case kF32: return 1e-5;
    case kF64: return 1e-12;
    case kF16: return 2e-3;  // one f16 ulp: GPU and CPU libm may round a float differently
    case kBF16: return 1.6e-2;
    default: return 0;
  }
}

void expect_same(const Tensor& gpu, const Tensor& cpu, double tol, const std::string& what) {
  ASSERT_TRUE(gpu.device().is_cuda()) << what;
  ASSERT_EQ(shape_str(gpu.shape()), shape_str(cpu.shape())) << what;
  ASSERT_EQ(dtype_name(gpu.dtype()), dtype_name(cpu.dtype())) << what;
  std::vector<double> g = gpu.to_vector<double>(), c = cpu.to_vector<double>();
  int failures = 0;
  for (size_t i = 0; i < c.size() && failures < 5; ++i) {
    bool ok = std::isnan(c[i]) ? std::isnan(g[i])
                               : (g[i] == c[i] || std::abs(g[i] - c[i]) <= tol * std::max(1.0, std::abs(c[i])));
    if (!ok) ++failures;
    EXPECT_TRUE(ok) << what << ": element " << i << " is " << g[i] << " on the GPU, " << c[i] << " on the CPU";
  }
}

// Runs f on the CPU inputs and on copies of them on the GPU and compares the results.
void check(const std::string& what, const Fn& f, const std::vector<Tensor>& cpu_inputs, double tol = -1) {
  std::vector<Tensor> gpu_inputs;
  for (const Tensor& t : cpu_inputs) gpu_inputs.push_back(t.to(kGpu));
  Tensor want = f(cpu_inputs);
  Tensor got = f(gpu_inputs);
  expect_same(got, want, tol >= 0 ? tol : tolerance(want.dtype()), what);
}

// Values drawn in f64 on the CPU, then converted: both devices see the same (rounded) inputs.
Tensor uniform(Shape s, double lo, double hi, DType d, uint64_t seed) {
  return random_uniform(std::move(s), lo, hi, kF64, kCPU, seed).to(d);
}
Tensor normal(Shape s, DType d, uint64_t seed) { return random_normal(std::move(s), 0, 1, kF64, kCPU, seed).to(d); }

const DType kFloats[] = {kF32, kF64, kF16, kBF16};
const DType kNumeric[] = {kF32, kF64, kF16, kBF16, kI32, kI64, kU8};
const DType kAll[] = {kF32, kF64, kF16, kBF16, kI32, kI64, kU8, kBool};

TEST_F(Cuda, CachingAllocatorReusesBlocks) {
  Allocator& a = allocator_for(kGpu);
  void* p = a.allocate(1000);
  a.deallocate(p, 1000);
  int64_t misses = cuda::cache_stats(0).device_allocations;
  void* q = a.allocate(900);  // the same 1024-byte bin
  EXPECT_EQ(p, q);
  a.deallocate(q, 900);
  void* big = a.allocate(3 << 20);  // 4 MiB bin
  a.deallocate(big, 3 << 20);
  misses = cuda::cache_stats(0).device_allocations;
  void* big2 = a.allocate((3 << 20) + 12345);
  EXPECT_EQ(big, big2);
  EXPECT_EQ(cuda::cache_stats(0).device_allocations, misses);
  a.deallocate(big2, (3 << 20) + 12345);
  const void* first = nullptr;
  {
    Tensor t = empty({1000}, kF32, kGpu);
    first = t.raw_data();
  }
  EXPECT_EQ(empty({1000}, kF32, kGpu).raw_data(), first);
  try {
    a.allocate(size_t{1} << 50);
    FAIL() << "a 1 PiB allocation succeeded";
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda:0: out of memory"), std::string::npos) << e.what();
  }
  EXPECT_THROW(empty({4}, kF32, Device::cuda(cuda_device_count())), DeviceError);
}

TEST_F(Cuda, CopiesBetweenDevices) {
  for (DType d : kAll) {
    Tensor x = uniform({3, 4}, 0, 5, kF64, 1).to(d);
    Tensor back = x.to(kGpu).cpu();
    EXPECT_EQ(back.to_vector<double>(), x.to_vector<double>()) << dtype_name(d);
  }
  Tensor none = zeros({0, 3}).to(kGpu);
  EXPECT_EQ(none.cpu().shape(), (Shape{0, 3}));
  if (cuda_device_count() > 1) {
    Device other = Device::cuda(1);
    Tensor x = normal({64, 33}, kF32, 2);
    Tensor y = x.to(kGpu).to(other);
    EXPECT_EQ((y * 2.0).to(kGpu).cpu().to_vector<float>(), (x * 2.0).to_vector<float>());
  }
}

TEST_F(Cuda, CastsAndStridedCopies) {
  for (DType from : kAll) {
    for (DType to : kAll) {
      std::string what = str_cat("cast ", dtype_name(from), " -> ", dtype_name(to));
      Tensor x = uniform({4, 6}, 0, 100, kF64, 3).to(from);
      check(what, [to](const auto& in) { return in[0].to(to); }, {x});
      check(what + " (transposed)", [to](const auto& in) { return in[0].transpose().to(to); }, {x});
    }
  }
  Tensor x = normal({5, 6, 7}, kF32, 4);
  check("permute+contiguous", [](const auto& in) { return in[0].permute({2, 0, 1}).contiguous(); }, {x});
  check("slice step", [](const auto& in) { return in[0].slice(1, 5, 0, -2).contiguous(); }, {x});
  check("broadcast", [](const auto& in) { return in[0].slice(0, 1, 2).expand({3, 6, 7}).contiguous(); }, {x});
  check("concat", [](const auto& in) { return concat({in[0], in[0].slice(0, 0, 2)}, 0); }, {x});
  check("stack", [](const auto& in) { return stack({in[0].transpose(), in[0].transpose()}, 1); }, {x});
  check("empty", [](const auto& in) { return in[0].slice(0, 2, 2).contiguous(); }, {x});
}

TEST_F(Cuda, BinaryOpsBroadcastAndStrides) {
  using Op = Tensor (*)(const Tensor&, const Tensor&);
  const std::pair<const char*, Op> ops[] = {{"add", add},
                                            {"sub", sub},
                                            {"mul", mul},
                                            {"div", div},
                                            {"pow", pow},
                                            {"maximum", maximum},
                                            {"minimum", minimum},
                                            {"equal", equal},
                                            {"not_equal", not_equal},
                                            {"less", less},
                                            {"less_equal", less_equal},
                                            {"greater", greater},
                                            {"greater_equal", greater_equal}};
  for (DType d : kNumeric) {
    // Positive operands keep pow real; small integers keep integer pow exact and in range.
    Tensor a = uniform({3, 1, 5}, 1, 4, kF64, 5).to(d);
    Tensor b = uniform({4, 5}, 1, 3, kF64, 6).to(d);
    for (const auto& [name, op] : ops) {
      std::string what = str_cat(name, " ", dtype_name(d));
      check(what, [op](const auto& in) { return op(in[0], in[1]); }, {a, b});
      check(what + " transposed", [op](const auto& in) { return op(in[0].transpose(1, 2), in[1].transpose()); },
            {a, b});
      check(what + " scalar", [op](const auto& in) { return op(in[0], in[1].slice(0, 1, 2).slice(1, 2, 3)); }, {a, b});
    }
  }
  Tensor p = from_vector<bool>({true, false, true, false}, {2, 2});
  Tensor q = from_vector<bool>({true, true, false, false}, {2, 2});
  check("logical_and", [](const auto& in) { return logical_and(in[0], in[1].transpose()); }, {p, q});
  check("logical_or", [](const auto& in) { return logical_or(in[0], in[1]); }, {p, q});
  check("logical_not", [](const auto& in) { return logical_not(in[0].transpose()); }, {p});
  Tensor ints = from_vector<int32_t>({7, -7, std::numeric_limits<int32_t>::min(), 5});
  Tensor divisors = from_vector<int32_t>({2, 2, -1, 0});
  check("integer division edge cases", [](const auto& in) { return div(in[0], in[1]); }, {ints, divisors});
  check("empty", [](const auto& in) { return add(in[0], in[1]); }, {zeros({0, 3}), ones({3})});
  // Integer pow is exact beyond double's 53 bits, truncates negative exponents, and wraps.
  Tensor base = from_vector<int64_t>({3, 3, 2, 1, -1, -1, 0, 7});
  Tensor exponent = from_vector<int64_t>({39, 1, -1, -5, -3, -4, 0, 2});
  check("integer pow", [](const auto& in) { return pow(in[0], in[1]); }, {base, exponent});
  check("u8 pow wraps", [](const auto& in) { return pow(in[0], in[1]); },
        {from_vector<uint8_t>({2, 3}), from_vector<uint8_t>({9, 5})});
}

// Contiguous operands at aligned addresses take the 16-byte-per-thread kernels, with a tail when the
// size is not a multiple of the vector width; a view one element in is misaligned and takes the strided
// kernel. Both must give the CPU's values.
TEST_F(Cuda, DenseElementwiseKernelsMatchTheCpu) {
  for (DType d : kNumeric) {
    for (int64_t n : {1, 3, 8, 17, 4099}) {
      Tensor a = uniform({n + 1}, 1, 4, kF64, 11).to(d);
      Tensor b = uniform({n + 1}, 1, 3, kF64, 12).to(d);
      std::string what = str_cat(dtype_name(d), " of ", n);
      check("add " + what, [n](const auto& in) { return add(in[0].slice(0, 0, n), in[1].slice(0, 0, n)); }, {a, b});
      check("mul " + what, [n](const auto& in) { return mul(in[0].slice(0, 0, n), in[1].slice(0, 0, n)); }, {a, b});
      check("maximum, misaligned, " + what,
            [n](const auto& in) { return maximum(in[0].slice(0, 1, n + 1), in[1].slice(0, 0, n)); }, {a, b});
      check("neg " + what, [n](const auto& in) { return neg(in[0].slice(0, 0, n)); }, {a});
      check("relu, misaligned, " + what, [n](const auto& in) { return relu(in[0].slice(0, 1, n + 1)); }, {a});
      if (d == kF32 || d == kF64 || d == kF16 || d == kBF16) {
        check("exp " + what, [n](const auto& in) { return exp(in[0].slice(0, 0, n)); }, {a});
      }
    }
  }
}

TEST_F(Cuda, UnaryOpsWhereClip) {
  using Op = Tensor (*)(const Tensor&);
  const std::pair<const char*, Op> numeric[] = {
      {"neg", neg}, {"abs", abs}, {"square", square}, {"sign", sign}, {"relu", relu}};
  const std::pair<const char*, Op> floating[] = {
      {"exp", exp}, {"tanh", tanh}, {"sigmoid", sigmoid}, {"softplus", softplus}, {"erf", erf}};
  const std::pair<const char*, Op> positive[] = {{"log", log}, {"sqrt", sqrt}, {"rsqrt", rsqrt}};
  for (DType d : kNumeric) {
    Tensor x = uniform({6, 7}, -4, 4, kF64, 7).to(d == kU8 ? kI32 : kF64).to(d);
    for (const auto& [name, op] : numeric) {
      check(str_cat(name, " ", dtype_name(d)), [op](const auto& in) { return op(in[0].transpose()); }, {x});
    }
    check(str_cat("clip ", dtype_name(d)), [](const auto& in) { return clip(in[0], 0.5, 2.5); }, {x});
  }
  for (DType d : kFloats) {
    Tensor x = uniform({6, 7}, -4, 4, kF64, 8).to(d);
    Tensor p = uniform({6, 7}, 0.1, 9, kF64, 9).to(d);
    for (const auto& [name, op] : floating) {
      check(str_cat(name, " ", dtype_name(d)), [op](const auto& in) { return op(in[0].transpose()); }, {x});
    }
    for (const auto& [name, op] : positive) {
      check(str_cat(name, " ", dtype_name(d)), [op](const auto& in) { return op(in[0]); }, {p});
    }
    check(str_cat("gelu ", dtype_name(d)), [](const auto& in) { return gelu(in[0]); }, {x});
    check(str_cat("gelu tanh ", dtype_name(d)), [](const auto& in) { return gelu(in[0], true); }, {x});
    check(str_cat("where ", dtype_name(d)),
          [](const auto& in) {
            return where(greater(in[0], in[1].transpose()), in[0], in[1].transpose().slice(1, 0, 1));
          },
          {x, x.transpose().contiguous()});
  }
}

TEST_F(Cuda, Reductions) {
  using Op = Tensor (*)(const Tensor&, const Axes&, bool);
  const std::pair<const char*, Op> ops[] = {{"sum", sum}, {"mean", mean}, {"max", max}, {"min", min}};
  const Axes axes_list[] = {{}, {0}, {1}, {2}, {0, 2}, {1, 2}, {-1, 0}};
  for (DType d : kNumeric) {
    Tensor x = uniform({4, 5, 6}, -10, 10, kF64, 10).to(d == kU8 ? kI32 : kF64).to(d);
    for (const auto& [name, op] : ops) {
      for (const Axes& axes : axes_list) {
        for (bool keep : {false, true}) {
          std::string what = str_cat(name, " ", dtype_name(d), " axes ", shape_str(axes), keep ? " keepdims" : "");
          check(what, [op, axes, keep](const auto& in) { return op(in[0], axes, keep); }, {x});
          check(what + " permuted",
                [op, axes, keep](const auto& in) {
                  return op(in[0].permute({2, 0, 1}), axes, keep);
                },
                {x});
        }
      }
    }
    for (int64_t axis : {0, 1, 2}) {
      check(str_cat("argmax ", dtype_name(d), " axis ", axis), [axis](const auto& in) { return argmax(in[0], axis); },
            {x});
    }
  }
  for (DType d : kFloats) {
    Tensor x = normal({4, 5, 6}, d, 11);
    for (const Axes& axes : axes_list) {
      check(str_cat("logsumexp ", dtype_name(d), " ", shape_str(axes)),
            [axes](const auto& in) { return logsumexp(in[0], axes, true); }, {x});
    }
  }
  // Large shapes take the chunked paths: one long row, few long columns, many short rows.
  Tensor big = normal({3, 300000}, kF32, 12);
  check(
      "sum long rows", [](const auto& in) { return sum(in[0], {1}); }, {big}, 1e-6);
  check(
      "mean all", [](const auto& in) { return mean(in[0]); }, {big}, 1e-6);
  check(
      "sum long columns", [](const auto& in) { return sum(in[0].transpose(), {0}); }, {big}, 1e-6);
  check(
      "sum long strided columns",
      [](const auto& in) {
        return sum(in[0].reshape({300000, 3}), {0});
      },
      {big}, 1e-6);
  check("max long strided columns", [](const auto& in) { return max(in[0].reshape({300000, 3}), {0}); }, {big});
  check("argmax long rows", [](const auto& in) { return argmax(in[0], 1); }, {big});
  check("logsumexp long rows", [](const auto& in) { return logsumexp(in[0], {1}); }, {big});
  // Ties, NaN and -inf.
  double nan = std::nan(""), inf = INFINITY;
  Tensor special = from_vector<double>({1, 3, 3, 2, nan, 5, nan, 1, -inf, -inf, -inf, -inf}, {3, 4});
  check("argmax ties and NaN", [](const auto& in) { return argmax(in[0], 1); }, {special});
  check("max NaN", [](const auto& in) { return max(in[0], {1}); }, {special.slice(0, 0, 2)});
  check("logsumexp -inf", [](const auto& in) { return logsumexp(in[0], {1}); }, {special.slice(0, 2, 3)});
  // Empty reductions: sums are 0, means NaN; empty outputs.
  check("sum over empty", [](const auto& in) { return sum(in[0], {0}); }, {zeros({0, 3})});
  check("mean over empty", [](const auto& in) { return mean(in[0], {0}); }, {zeros({0, 3})});
  check("max of empty rows", [](const auto& in) { return max(in[0], {1}); }, {zeros({0, 3})});
}

TEST_F(Cuda, Matmul) {
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  const Case cases[] = {{{5, 7}, {7, 3}, false, false},
                        {{7, 5}, {7, 3}, true, false},
                        {{5, 7}, {3, 7}, false, true},
                        {{7, 5}, {3, 7}, true, true},
                        {{2, 3, 4, 5}, {2, 3, 5, 6}, false, false},
                        {{2, 1, 4, 5}, {3, 5, 6}, false, false},
                        {{4, 5}, {2, 3, 5, 6}, false, false},
                        {{1, 1}, {1, 1}, false, false},
                        {{64, 128}, {128, 96}, false, false}};
  for (DType d : kFloats) {
    double tol = d == kF32 ? 1e-4 : tolerance(d) * 4;
    for (const Case& c : cases) {
      std::string what = str_cat("matmul ", dtype_name(d), " ", shape_str(c.a), c.ta ? "^T" : "", " x ", shape_str(c.b),
                                 c.tb ? "^T" : "");
      Tensor a = normal(c.a, d, 13), b = normal(c.b, d, 14);
      check(
          what, [c](const auto& in) { return matmul(in[0], in[1], c.ta, c.tb); }, {a, b}, tol);
    }
    Tensor x = normal({4, 3, 5}, d, 15), y = normal({5, 3, 6}, d, 16);
    // Operands whose batch offsets are not one stride apart, and transposed views.
    check(
        str_cat("matmul permuted batch ", dtype_name(d)),
        [](const auto& in) {
          return matmul(in[0].permute({1, 0, 2}), in[1].permute({1, 0, 2}));
        },
        {x, y}, tol);
    check(
        str_cat("matmul transposed views ", dtype_name(d)),
        [](const auto& in) { return matmul(in[0].slice(1, 0, 3).transpose(), in[1].transpose()); },
        {normal({5, 4}, d, 17), normal({3, 5}, d, 18)}, tol);
    check(
        str_cat("matmul vector ", dtype_name(d)), [](const auto& in) { return matmul(in[0], in[1]); },
        {normal({5}, d, 19), normal({5, 3}, d, 20)}, tol);
  }
  check("matmul k = 0", [](const auto& in) { return matmul(in[0], in[1]); }, {zeros({3, 0}), zeros({0, 4})});
  check("matmul empty", [](const auto& in) { return matmul(in[0], in[1]); }, {zeros({0, 5}), ones({5, 4})});
}

TEST_F(Cuda, SoftmaxAndCrossEntropy) {
  for (DType d : kFloats) {
    double tol = d == kF32 ? 1e-5 : tolerance(d);
    for (Shape s : {Shape{8, 10}, Shape{3, 1000}, Shape{2, 3, 40}}) {
      Tensor x = normal(s, d, 21) * 3.0;
      for (int64_t axis : {-1, 0, 1}) {
        std::string what = str_cat(" ", dtype_name(d), " ", shape_str(s), " axis ", axis);
        check(
            "softmax" + what, [axis](const auto& in) { return softmax(in[0], axis); }, {x}, tol * 10);
        check(
            "log_softmax" + what, [axis](const auto& in) { return log_softmax(in[0], axis); }, {x}, tol * 10);
      }
    }
    for (DType label_type : {kI32, kI64, kU8}) {
      for (int64_t classes : {10, 500}) {
        Tensor logits = normal({6, classes}, d, 22);
        Tensor labels = from_vector<int64_t>({0, 3, 9, 1, 9, 2}).to(label_type);
        check(
            str_cat("sparse xent ", dtype_name(d), " ", dtype_name(label_type), " ", classes),
            [](const auto& in) { return sparse_softmax_cross_entropy_with_logits(in[0], in[1]); }, {labels, logits},
            tol * 10);
      }
    }
  }
  Tensor logits = normal({4, 6}, kF32, 23).to(kGpu);
  try {
    sparse_softmax_cross_entropy_with_logits(from_vector<int32_t>({0, 1, 7, 2}, {4}, kGpu), logits);
    FAIL() << "an out-of-range label was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("label 7 at position 2"), std::string::npos) << e.what();
  }
}

TEST_F(Cuda, GatherAndScatterAdd) {
  for (DType d : kNumeric) {
    Tensor params = uniform({5, 4, 3}, 0, 9, kF64, 24).to(d == kU8 ? kI32 : kF64).to(d);
    for (DType index_type : {kI32, kI64}) {
      Tensor ids = from_vector<int64_t>({4, 0, 2, 2, 1, 4}, {2, 3}).to(index_type);
      for (int64_t axis : {0, 1}) {
        std::string what = str_cat(dtype_name(d), " ", dtype_name(index_type), " axis ", axis);
        check("gather " + what, [axis](const auto& in) { return gather(in[0].transpose(0, 2), in[1], 2 - axis); },
              {params, from_vector<int64_t>({1, 0, 2, 2}, {4}).to(index_type)});
        check("gather rows " + what, [](const auto& in) { return gather(in[0], in[1], 0); }, {params, ids});
      }
    }
  }
  // scatter_add is gather's gradient: repeated ids accumulate.
  for (DType d : kFloats) {
    Variable table(normal({6, 4}, d, 25).to(kGpu), "table");
    Variable table_cpu(table.value().cpu(), "table");
    Tensor ids = from_vector<int64_t>({5, 1, 1, 0, 5, 5}, {2, 3});
    auto grad_of = [&](const Variable& t, const Tensor& i) {
      GradientTape tape;
      Tensor loss = sum(square(embedding_lookup(t.value(), i)));
      return tape.gradient(loss, {t})[0];
    };
    expect_same(grad_of(table, ids.to(kGpu)), grad_of(table_cpu, ids), tolerance(d) * 4,
                str_cat("scatter_add ", dtype_name(d)));
  }
  try {
    gather(ones({3, 2}, kF32, kGpu), from_vector<int32_t>({0, 3}, {2}, kGpu));
    FAIL() << "an out-of-range index was accepted";
  } catch (const ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("index 3 at position 1"), std::string::npos) << e.what();
  }
}

TEST_F(Cuda, RandomNumbersMatchCpu) {
  for (DType d : kFloats) {
    for (uint64_t seed : {0u, 7u}) {
      std::string what = str_cat(dtype_name(d), " seed ", seed);
      expect_same(random_uniform({1000}, 0, 1, d, kGpu, seed), random_uniform({1000}, 0, 1, d, kCPU, seed), 0,
                  "uniform " + what);
      expect_same(random_uniform({333}, -2, 3, d, kGpu, seed), random_uniform({333}, -2, 3, d, kCPU, seed),
                  tolerance(d), "uniform [-2, 3) " + what);
      expect_same(random_normal({1000}, 1, 2, d, kGpu, seed), random_normal({1000}, 1, 2, d, kCPU, seed), tolerance(d),
                  "normal " + what);
      expect_same(truncated_normal({1000}, 0, 1, d, kGpu, seed), truncated_normal({1000}, 0, 1, d, kCPU, seed),
                  tolerance(d), "truncated normal " + what);
    }
  }
  set_seed(42);
  Tensor on_gpu = random_normal({500}, 0, 1, kF32, kGpu);
  set_seed(42);
  expect_same(on_gpu, random_normal({500}), 1e-6, "global generator");
  for (DType d : kAll) {
    expect_same(full({3, 5}, 2.5, d, kGpu), full({3, 5}, 2.5, d), 0, str_cat("full ", dtype_name(d)));
    expect_same(zeros({7}, d, kGpu), zeros({7}, d), 0, str_cat("zeros ", dtype_name(d)));
    expect_same(arange(0, 7, 0.5, d, kGpu), arange(0, 7, 0.5, d), 0, str_cat("arange ", dtype_name(d)));
  }
  EXPECT_EQ(random_uniform({0, 4}, 0, 1, kF32, kGpu).shape(), (Shape{0, 4}));
}

TEST_F(Cuda, ConvolutionAndPooling) {
  struct Case {
    Shape x, k;
    Conv2DOptions o;
  };
  const Case cases[] = {
      {{2, 7, 6, 3}, {3, 3, 3, 4}, {}},
      {{2, 7, 6, 3}, {3, 3, 3, 4}, {.strides = {2, 2}, .padding = Padding::kSame}},
      {{1, 8, 8, 2}, {2, 2, 2, 5}, {.padding = Padding::kSame}},  // asymmetric "same"
      {{2, 9, 7, 1}, {3, 2, 1, 2}, {.strides = {1, 2}, .padding = Padding::kSame, .dilation = {2, 1}}},
      {{3, 5, 5, 4}, {1, 1, 4, 6}, {}}};
  for (DType d : kFloats) {
    double tol = d == kF32 ? 1e-4 : tolerance(d) * 4;
    for (const Case& c : cases) {
      std::string what = str_cat(dtype_name(d), " x ", shape_str(c.x), " k ", shape_str(c.k));
      Conv2DOptions o = c.o;
      check(
          "conv2d " + what, [o](const auto& in) { return conv2d(in[0], in[1], o); },
          {normal(c.x, d, 26), normal(c.k, d, 27)}, tol);
    }
    for (Padding p : {Padding::kValid, Padding::kSame}) {
      for (Pool2DOptions o :
           {Pool2DOptions{.padding = p}, Pool2DOptions{{3, 3}, {2, 2}, p}, Pool2DOptions{{3, 2}, {1, 1}, p}}) {
        std::string what = str_cat(dtype_name(d), p == Padding::kSame ? " same" : " valid", " pool ", o.pool_size[0]);
        Tensor x = normal({2, 7, 6, 3}, d, 28);
        check(
            "max_pool2d " + what, [o](const auto& in) { return max_pool2d(in[0], o); }, {x}, tol);
        check(
            "avg_pool2d " + what, [o](const auto& in) { return avg_pool2d(in[0], o); }, {x}, tol);
      }
    }
  }
}

// Gradients of a small network (dense, conv, pooling, most elementwise ops) on the GPU equal the CPU's.
std::vector<Tensor> network_gradients(Device d) {
  Tensor x = normal({4, 6, 6, 2}, kF64, 30).to(d);
  Tensor labels = from_vector<int64_t>({1, 0, 2, 1}, {4}, d);
  Variable k(normal({3, 3, 2, 3}, kF64, 31).to(d), "k");
  Variable w(normal({12, 3}, kF64, 32).to(d), "w");
  Variable b(normal({3}, kF64, 33).to(d), "b");
  Variable emb(normal({5, 3}, kF64, 34).to(d), "emb");
  GradientTape tape;
  Tensor h = gelu(conv2d(x, k.value(), {.padding = Padding::kSame}));
  Tensor p = max_pool2d(h, {}) + avg_pool2d(h, {});                 // [4, 3, 3, 3]
  Tensor flat = p.slice(1, 0, 2).reshape({4, 18}).slice(1, 3, 15);  // [4, 12]
  Tensor logits = matmul(tanh(flat), w.value()) + b.value();
  Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(labels, logits));
  loss = loss + 0.1 * sum(square(softmax(logits, 0))) + max(logsumexp(flat, {1}));
  loss = loss + mean(sigmoid(clip(logits, -1, 1)) * softplus(maximum(logits, b.value())));
  loss = loss + sum(embedding_lookup(emb.value(), labels) * logits) + sum(pow(abs(logits) + 1.0, scalar(1.5, kF64, d)));
  std::vector<Tensor> out = tape.gradient(loss, {k, w, b, emb});
  out.insert(out.begin(), loss);
  return out;
}

TEST_F(Cuda, GradientsMatchCpu) {
  std::vector<Tensor> cpu = network_gradients(kCPU), gpu = network_gradients(kGpu);
  const char* names[] = {"loss", "dk", "dw", "db", "demb"};
  for (size_t i = 0; i < cpu.size(); ++i) expect_same(gpu[i], cpu[i], 1e-9, names[i]);
}

TEST_F(Cuda, SecondDerivativesThroughPooling) {
  auto hessian_vector = [](Device d) {
    Tensor x = normal({2, 5, 5, 2}, kF64, 35).to(d);
    GradientTape outer;
    outer.watch(x);
    Tensor dx;
    {
      GradientTape inner;
      inner.watch(x);
      Tensor y = sum(square(max_pool2d(x, {.padding = Padding::kSame})) * avg_pool2d(x, {.padding = Padding::kSame}));
      dx = inner.gradient(y, {x})[0];
    }
    return outer.gradient(sum(dx * dx), {x})[0];
  };
  expect_same(hessian_vector(kGpu), hessian_vector(kCPU), 1e-10, "second derivative");
}

TEST_F(Cuda, ConcurrentThreads) {
  Tensor a = normal({64, 64}, kF32, 36);
  Tensor want = sum(matmul(a, a), {1});
  std::vector<std::thread> threads;
  std::vector<Tensor> results(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Tensor g = a.to(kGpu);
      for (int i = 0; i < 20; ++i) results[t] = sum(matmul(g, g), {1});
      cuda::synchronize(0);
    });
  }
  for (std::thread& t : threads) t.join();
  for (const Tensor& r : results) expect_same(r, want, 1e-4, "matmul from several threads");
}

// Backward's destination hook on the GPU: the matmul writes a Dense kernel's gradient into the given
// device tensor (a data-parallel bucket's slot), with the CPU's values.
TEST_F(Cuda, MatmulGradientLandsInItsDestination) {
  Tensor x = random_normal({8, 5}, 0, 1, kF32);
  Variable w_cpu(random_normal({5, 3}, 0, 1, kF32), "w");
  Variable w_gpu(w_cpu.value_unwatched().to(kGpu), "w");
  auto grad = [&](Variable& w, const Device& d, const Tensor& slot) {
    GradientTape tape;
    Tensor y = sum(square(matmul(x.to(d), w.value())));
    return tape.gradient(y, {w}, {.destination = [&](size_t) { return slot; }})[0];
  };
  Tensor want = grad(w_cpu, kCPU, Tensor());
  Tensor slot = zeros({5, 3}, kF32, kGpu);
  Tensor got = grad(w_gpu, kGpu, slot);
  EXPECT_EQ(got.raw_data(), slot.raw_data());
  expect_same(slot, want, 1e-5, "the gradient in its destination");
}

}  // namespace
}  // namespace gradflow
