// Tensor basics: creation, dtypes and conversions, views without copies, devices, printing, random.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "core/gradflow.h"
#include "core/tensor/random_math.h"

namespace gradflow {
namespace {

TEST(Tensor, CreationAndMetadata) {
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(x.shape(), (Shape{2, 3}));
  EXPECT_EQ(x.strides(), (Strides{3, 1}));
  EXPECT_EQ(x.dtype(), kF32);
  EXPECT_EQ(x.device(), kCPU);
  EXPECT_EQ(x.numel(), 6);
  EXPECT_EQ(x.dim(-1), 3);
  EXPECT_TRUE(x.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.raw_data()) % kCpuAlignment, 0u);
  EXPECT_EQ((zeros({2}, kI64).to_vector<int64_t>()), (std::vector<int64_t>{0, 0}));
  EXPECT_EQ((ones({2}, kBool).to_vector<bool>()), (std::vector<bool>{true, true}));
  EXPECT_EQ((full({3}, 2.5, kF64).to_vector<double>()), (std::vector<double>{2.5, 2.5, 2.5}));
  EXPECT_EQ((arange(0, 10, 3, kI32).to_vector<int32_t>()), (std::vector<int32_t>{0, 3, 6, 9}));
  EXPECT_EQ(arange(5, 0, -2).numel(), 3);
  EXPECT_EQ(scalar(7, kU8).item<int>(), 7);
  EXPECT_EQ(scalar(3.5).rank(), 0);
  EXPECT_EQ(zeros({0, 4}).numel(), 0);
  EXPECT_THROW(from_vector<float>({1, 2, 3}, {2, 2}), ShapeError);
  EXPECT_THROW(x.item(), ValueError);
  EXPECT_THROW(empty({-1}), ValueError);
}

TEST(Tensor, LargeCpuBlocksAreReusedAfterFree) {
  void* first;
  {
    Tensor big = empty({1 << 20});  // 4 MiB
    first = big.raw_data();
  }
  Tensor again = empty({1 << 20});
  EXPECT_EQ(again.raw_data(), first);
  Tensor other = empty({1 << 20});  // the cached block is taken: a new one
  EXPECT_NE(other.raw_data(), first);
}

// Cached CPU blocks come in 8 sizes per doubling: a tensor a few rows longer than the last one (a batch
// split by speed) reuses its freed block instead of fresh, page-faulting memory.
TEST(Tensor, LargeCpuRequestsInOneSizeClassReuseAFreedBlock) {
  Allocator& allocator = cpu_allocator();
  void* first = allocator.allocate(36'000'000);
  allocator.deallocate(first, 36'000'000);
  void* second = allocator.allocate(37'000'000);  // 36 and 37 MB: both 37,748,736 bytes (9 x 4 MiB)
  EXPECT_EQ(second, first);
  std::memset(second, 1, 37'000'000);
  allocator.deallocate(second, 37'000'000);
}

// Blocks from 8 MiB are whole 2 MiB huge pages, asked of the kernel with madvise: where transparent huge
// pages are not off, the memory of a touched block is backed by them (AnonHugePages in /proc/self/smaps).
TEST(Tensor, LargeCpuBlocksSitOnHugePages) {
  Allocator& allocator = cpu_allocator();
  constexpr size_t kBytes = 20'000'000;  // a 20 MiB class
  char* block = static_cast<char*>(allocator.allocate(kBytes));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(block) % (size_t{2} << 20), 0u);
  std::memset(block, 1, kBytes);
  std::ifstream mode_file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode((std::istreambuf_iterator<char>(mode_file)), std::istreambuf_iterator<char>());
  if (!mode.empty() && mode.find("[never]") == std::string::npos) {
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool inside = false;
    int64_t huge_kb = -1;
    const uintptr_t at = reinterpret_cast<uintptr_t>(block);
    while (std::getline(smaps, line)) {
      uintptr_t lo = 0, hi = 0;
      if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
        inside = at >= lo && at < hi;
      } else if (inside && line.rfind("AnonHugePages:", 0) == 0) {
        huge_kb = std::stoll(line.substr(14));
        break;
      }
    }
    EXPECT_GT(huge_kb, 0) << "THP mode: " << mode;
  }
  allocator.deallocate(block, kBytes);
}

// Small blocks come back from the freeing thread's cache, per rounded size, aligned; a full cache and a
// thread's exit hand blocks back to the C allocator (no leak or double free shows under ASan/valgrind).
TEST(Tensor, SmallCpuBlocksAreReusedByTheFreeingThread) {
  void* first;
  {
    Tensor small = empty({3});  // 12 B: a 64 B block
    first = small.raw_data();
  }
  Tensor same_size = empty({10});  // 40 B: the same rounded size
  EXPECT_EQ(same_size.raw_data(), first);
  Tensor other = empty({10});
  EXPECT_NE(other.raw_data(), first);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(other.raw_data()) % kCpuAlignment, 0u);

  std::vector<Tensor> many;  // more than a thread keeps of one size: the rest go back to the system
  for (int i = 0; i < 100; ++i) many.push_back(full({1000}, i));  // 4000 B: 4 KiB blocks
  for (int i = 0; i < 100; ++i) EXPECT_EQ(many[i].to_vector<float>()[999], i);
  std::thread([moved = std::move(many)]() mutable { moved.clear(); }).join();  // freed by another thread, which exits
  for (int i = 0; i < 100; ++i) {
    Tensor t = full({1000}, -i);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % kCpuAlignment, 0u);
    EXPECT_EQ(t.to_vector<float>()[0], -i);
  }
}
TEST(Tensor, IdsAreUnique) {
  Tensor a = zeros({2});
  Tensor b = a.reshape({2, 1});
  EXPECT_NE(a.id(), b.id());
  EXPECT_EQ(a.storage(), b.storage());
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = arange(0, 24).reshape({2, 3, 4});
  Tensor t = x.transpose(0, 2);
  EXPECT_EQ(t.shape(), (Shape{4, 3, 2}));
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.contiguous().to_vector<float>()[1], 12.0f);  // t[0,0,1] = x[1,0,0]
  Tensor p = x.permute({1, 2, 0});
  EXPECT_EQ(p.shape(), (Shape{3, 4, 2}));
  EXPECT_EQ((p.slice(0, 2, 3).slice(1, 3, 4).to_vector<float>()), (std::vector<float>{11, 23}));
  Tensor s = x.slice(2, 1, 4, 2);  // [:, :, 1::2]
  EXPECT_EQ(s.storage(), x.storage());
  EXPECT_EQ((s.slice(0, 0, 1).slice(1, 0, 1).to_vector<float>()), (std::vector<float>{1, 3}));
  EXPECT_EQ((x.slice(1, -1, -4, -1).slice(0, 0, 1).slice(2, 0, 1).to_vector<float>()), (std::vector<float>{8, 4, 0}));
  EXPECT_EQ(x.slice(0, 5, 9).numel(), 0);
  Tensor e = from_vector<float>({1, 2}, {2, 1}).expand({2, 3});
  EXPECT_EQ(e.strides(), (Strides{1, 0}));
  EXPECT_EQ((e.to_vector<float>()), (std::vector<float>{1, 1, 1, 2, 2, 2}));
  Tensor r = x.reshape({4, -1});
  EXPECT_EQ(r.shape(), (Shape{4, 6}));
  EXPECT_EQ(r.storage(), x.storage());
  Tensor rt = t.reshape({-1});  // non-contiguous: copies
  EXPECT_NE(rt.storage(), x.storage());
  EXPECT_EQ(rt.to_vector<float>()[1], 12.0f);
  EXPECT_EQ(x.unsqueeze(0).shape(), (Shape{1, 2, 3, 4}));
  EXPECT_EQ(x.unsqueeze(-1).squeeze(-1).shape(), x.shape());
  EXPECT_THROW(x.squeeze(0), ShapeError);
  EXPECT_THROW(x.reshape({5, -1}), ShapeError);
  EXPECT_THROW(x.permute({0, 0, 1}), ValueError);
}

TEST(Tensor, DTypeConversions) {
  Tensor x = from_vector<float>({-1.5f, 0.0f, 2.25f, 65504.0f});
  EXPECT_EQ((x.to(kF16).to(kF32).to_vector<float>()), (std::vector<float>{-1.5f, 0.0f, 2.25f, 65504.0f}));
  EXPECT_EQ((x.to(kBF16).to(kF32).to_vector<float>()), (std::vector<float>{-1.5f, 0.0f, 2.25f, 65536.0f}));
  EXPECT_EQ((x.to(kI32).to_vector<int32_t>()), (std::vector<int32_t>{-1, 0, 2, 65504}));
  EXPECT_EQ((x.to(kBool).to_vector<bool>()), (std::vector<bool>{true, false, true, true}));
  EXPECT_EQ(x.to(kF64).dtype(), kF64);
  // Half precision edge cases: rounding to nearest even, subnormals, overflow, NaN.
  EXPECT_EQ(static_cast<float>(Half(1.0f + 1.0f / 2048)), 1.0f);
  EXPECT_EQ(static_cast<float>(Half(5.960464477539063e-08f)), 5.960464477539063e-08f);
  EXPECT_TRUE(std::isinf(static_cast<float>(Half(70000.0f))));
  EXPECT_TRUE(std::isnan(static_cast<float>(Half(NAN))));
  EXPECT_TRUE(std::isnan(static_cast<float>(BFloat16(NAN))));
  EXPECT_EQ(static_cast<float>(BFloat16(1.00390625f)), 1.0f);  // tie rounds to even
  EXPECT_EQ(dtype_from_name("bf16"), kBF16);
  EXPECT_THROW(dtype_from_name("f8"), ValueError);
}

// Contiguous conversions between float and the 16-bit floats run in bulk (core/tensor/half_convert.h);
// they must give exactly what Half and BFloat16 give one value at a time (the strided path), across
// rounding ties, subnormals, overflow, infinities and NaN, and at lengths that leave a vector tail.
TEST(Tensor, BulkHalfConversionsMatchTheScalarOnes) {
  std::vector<float> values{0.0f, -0.0f, 1.0f, -1.5f, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 1.00390625f,
                            1.01171875f, 65504.0f, 65519.0f, 65520.0f, 70000.0f, -70000.0f, 5.960464477539063e-08f,
                            2.9802322387695312e-08f, 1e-10f, 3.4e38f, -3.4e38f, INFINITY, -INFINITY, 1e-45f,
                            6.1035156e-05f, 6.0975552e-05f, 3.14159265f, -2.71828182f};
  for (int i = 0; i < 200; ++i) values.push_back(std::ldexp(static_cast<float>(i * 7919 % 1000) / 999.0f - 0.5f, i % 40 - 20));
  for (int64_t n : {static_cast<int64_t>(values.size()), int64_t{7}, int64_t{16}, int64_t{17}}) {
    std::vector<float> v(values.begin(), values.begin() + n);
    // A column of a [n, 2] tensor is strided: converted one value at a time, as the reference.
    std::vector<float> pairs;
    for (float f : v) pairs.insert(pairs.end(), {f, 0.0f});
    Tensor contiguous = from_vector<float>(v);
    Tensor strided = from_vector<float>(pairs, {n, 2}).slice(1, 0, 1);  // [n, 1], row stride 2
    ASSERT_FALSE(strided.is_contiguous());
    for (DType half : {kF16, kBF16}) {
      SCOPED_TRACE(str_cat(dtype_name(half), " n=", n));
      Tensor bulk = contiguous.to(half), one_by_one = strided.to(half);
      std::vector<float> a = bulk.to(kF32).to_vector<float>(), b = one_by_one.to(kF32).to_vector<float>();
      // And back: the same halves widened in bulk (contiguous) and one at a time (a strided column).
      std::vector<float> c = one_by_one.to(kF32).to_vector<float>();
      Tensor column = concat({one_by_one, one_by_one}, 1).slice(1, 0, 1);
      ASSERT_FALSE(column.is_contiguous());
      std::vector<float> d = column.to(kF32).to_vector<float>();
      for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(b[i])) {
          EXPECT_TRUE(std::isnan(a[i])) << "value " << v[i];
          continue;
        }
        EXPECT_EQ(std::signbit(a[i]), std::signbit(b[i])) << "value " << v[i];
        EXPECT_EQ(a[i], b[i]) << "value " << v[i];
        EXPECT_EQ(c[i], d[i]) << "value " << v[i];
      }
    }
  }
  std::vector<float> nan{NAN, -NAN};
  EXPECT_TRUE(std::isnan(from_vector<float>(nan).to(kBF16).to(kF32).to_vector<float>()[1]));
  EXPECT_TRUE(std::isnan(from_vector<float>(nan).to(kF16).to(kF32).to_vector<float>()[0]));
}

TEST(Tensor, HalfArithmeticRunsInFloat) {
  Tensor a = from_vector<float>({1, 2, 3}).to(kF16);
  Tensor b = from_vector<float>({0.5f, 0.25f, 4}).to(kBF16);
  Tensor c = add(a, a);
  EXPECT_EQ(c.dtype(), kF16);
  EXPECT_EQ((c.to_vector<float>()), (std::vector<float>{2, 4, 6}));
  EXPECT_EQ((mul(b, b).to_vector<float>()), (std::vector<float>{0.25f, 0.0625f, 16}));
  EXPECT_EQ(sum(c).dtype(), kF16);
  EXPECT_FLOAT_EQ(sum(c).item<float>(), 12);
}

TEST(Tensor, Devices) {
  EXPECT_EQ(Device::parse("cpu"), kCPU);
  EXPECT_EQ(Device::parse("cuda:3"), Device::cuda(3));
  EXPECT_EQ(Device::parse("cuda"), Device::cuda(0));
  EXPECT_THROW(Device::parse("tpu"), ValueError);
  EXPECT_THROW(Device::parse("cuda:x"), ValueError);
  if (cuda_device_count() == 0) {
    EXPECT_THROW(zeros({2}).to(Device::cuda(0)), DeviceError);
  }
}

TEST(Tensor, NumpyLikePrinting) {
  EXPECT_EQ(from_vector<float>({1, 2, 3, 4}, {2, 2}).str(),
            "[[1. 2.]\n [3. 4.]]\nTensor(shape=[2,2], dtype=f32, device=cpu)");
  EXPECT_EQ(from_vector<int32_t>({1, -20, 3}).str(), "[  1 -20   3]\nTensor(shape=[3], dtype=i32, device=cpu)");
  EXPECT_EQ(from_vector<bool>({true, false}).str(), "[ True False]\nTensor(shape=[2], dtype=bool, device=cpu)");
  EXPECT_EQ(scalar(0.5).str(), "0.5\nTensor(shape=[], dtype=f32, device=cpu)");
  std::string big = arange(0, 2000).str();
  EXPECT_NE(big.find("[   0.    1.    2. ... 1997. 1998. 1999.]"), std::string::npos) << big;
  EXPECT_EQ(Tensor().str(), "Tensor(undefined)");
}

TEST(Random, SameSeedSameNumbersAnyThreadCount) {
  int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> one = random_normal({100000}, 0, 1, kF32, kCPU, 42).to_vector<float>();
  omp_set_num_threads(std::max(2, threads));
  std::vector<float> many = random_normal({100000}, 0, 1, kF32, kCPU, 42).to_vector<float>();
  omp_set_num_threads(threads);
  EXPECT_EQ(one, many);
  EXPECT_NE(one, random_normal({100000}, 0, 1, kF32, kCPU, 43).to_vector<float>());
}

TEST(Random, GlobalSeedRepeatsAndStreamsDiffer) {
  set_seed(7);
  std::vector<float> a = random_uniform({8}).to_vector<float>();
  std::vector<float> b = random_uniform({8}).to_vector<float>();
  set_seed(7);
  EXPECT_EQ(a, random_uniform({8}).to_vector<float>());
  EXPECT_NE(a, b);
  // A prefix of a longer draw is the shorter draw: element i depends only on (seed, stream, i).
  std::vector<float> longer = random_uniform({16}, 0, 1, kF32, kCPU, 5).to_vector<float>();
  std::vector<float> shorter = random_uniform({8}, 0, 1, kF32, kCPU, 5).to_vector<float>();
  EXPECT_TRUE(std::equal(shorter.begin(), shorter.end(), longer.begin()));
}

// Element i of a float draw is word i % 4 of Philox block i / 4 (random_math.h, which the CUDA kernel
// uses too); the CPU loop computes each block once for its four elements, on any thread, with a tail
// for sizes that are not a multiple of 4. A double draw takes block i for element i.
TEST(Random, UniformFloatsTakeFourWordsOfABlockAndDoublesOne) {
  for (int64_t n : {int64_t{1}, int64_t{3}, int64_t{4}, int64_t{5}, int64_t{1001}, int64_t{(1 << 18) + 7}}) {
    std::vector<float> f = random_uniform({n}, -2, 3, kF32, kCPU, 9).to_vector<float>();
    std::vector<double> d = random_uniform({n}, -2, 3, kF64, kCPU, 9).to_vector<double>();
    const RandomStream rs = take_random_stream(9);
    for (int64_t i = 0; i < n; i += (i < 64 ? 1 : 97)) {
      ASSERT_EQ(f[i], static_cast<float>(-2 + 5 * static_cast<double>(philox::uniform_float_at(rs.seed, rs.stream, i))))
          << "n=" << n << " i=" << i;
      ASSERT_EQ(d[i], -2 + 5 * philox::uniform_at(rs.seed, rs.stream, i)) << "n=" << n << " i=" << i;
    }
    ASSERT_EQ(f[n - 1], static_cast<float>(-2 + 5 * static_cast<double>(philox::uniform_float_at(rs.seed, rs.stream, n - 1))));
  }
  // 24 bits: a float draw in [0, 1) never rounds up to 1.
  for (float v : random_uniform({100000}, 0, 1, kF32, kCPU, 3).to_vector<float>()) ASSERT_LT(v, 1.0f);
}

TEST(Random, Distributions) {
  int n = 200000;
  std::vector<double> u = random_uniform({n}, -2, 3, kF64, kCPU, 1).to_vector<double>();
  double mean_u = 0;
  for (double v : u) {
    ASSERT_GE(v, -2);
    ASSERT_LT(v, 3);
    mean_u += v / n;
  }
  EXPECT_NEAR(mean_u, 0.5, 0.02);
  std::vector<double> z = random_normal({n}, 1, 2, kF64, kCPU, 2).to_vector<double>();
  double m = 0, v = 0;
  for (double x : z) m += x / n;
  for (double x : z) v += (x - m) * (x - m) / n;
  EXPECT_NEAR(m, 1, 0.02);
  EXPECT_NEAR(std::sqrt(v), 2, 0.02);
  std::vector<double> t = truncated_normal({n}, 0, 1, kF64, kCPU, 3).to_vector<double>();
  double tv = 0;
  for (double x : t) {
    ASSERT_LE(std::abs(x), 2.0);
    tv += x * x / n;
  }
  EXPECT_NEAR(tv, 0.774, 0.01);  // variance of a standard normal truncated at +-2
  EXPECT_THROW(random_uniform({2}, 0, 1, kI32), DTypeError);
}

#if defined(__x86_64__)
// 1e-38 * 0.01 is a denormal; flushed, it is 0. The tensor is large enough for every OpenMP worker to take
// a share, so a worker that was missed shows up as a nonzero element.
TEST(Denormals, FlushedInOpsAndOpenMPWorkersAndRestoredAfter) {
  ASSERT_TRUE(flush_denormal_enabled());
  const int64_t n = int64_t{1} << 21;
  const unsigned kFlushBits = 0x8040;  // FTZ and DAZ; the other bits hold sticky exception flags
  unsigned caller_mode = _mm_getcsr() & kFlushBits;
  std::vector<float> out = (full({n}, 1e-38, kF32) * 0.01).to_vector<float>();
  EXPECT_EQ(_mm_getcsr() & kFlushBits, caller_mode) << "the caller's floating-point mode must be restored";
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(out[i], 0.0f) << "element " << i << " was not flushed";

  ASSERT_TRUE(set_flush_denormal(false));
  out = (full({n}, 1e-38, kF32) * 0.01).to_vector<float>();
  set_flush_denormal(true);
  for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(out[i], 1e-40f, 1e-42f) << "element " << i;
}

TEST(Denormals, FlushedInFusedOptimizerUpdates) {
  Variable w(full({1 << 20}, 1e-38, kF32), "w");
  optimizers::SGD sgd({.learning_rate = 0.99});
  sgd.apply_gradients({full({1 << 20}, 1e-38, kF32)}, {w});  // 1e-38 - 0.99e-38: a denormal
  std::vector<float> v = w.value().to_vector<float>();
  for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(v[i], 0.0f) << "element " << i;
}
#endif

}  // namespace
}  // namespace gradflow
