// Reductions and row-wise softmax kernels. A reducer (SumR, MaxR, ...) says how to start, add an
// element, combine two partial results and finish; the same reducers run in three kernels: a block per
// output row (reduced elements contiguous), a thread per output (reduced elements strided, outputs
// contiguous), and a pass that combines the partial results of outputs split into chunks.
#include <algorithm>

#include "core/ops/cuda/reduce_kernels.h"
#include "core/tensor/cuda/kernel_common.cuh"

namespace gradflow::cuda {
namespace {

// ---- combining (max, sum of exp) pairs: logsumexp and softmax ----
template <typename C>
struct Lse {
  C m;  // running maximum
  C s;  // sum of exp(x - m)
};

template <typename C>
__device__ __forceinline__ Lse<C> lse_combine(Lse<C> a, Lse<C> b) {
  if (b.m == -infinity<C>()) return a;  // b is empty or only -inf: it adds exp(-inf) = 0
  if (a.m == -infinity<C>()) return b;
  if (is_nan(a.m) || is_nan(b.m)) return {a.m + b.m, C(1)};
  C m = a.m > b.m ? a.m : b.m;
  if (m == infinity<C>()) return {m, C(1)};
  return {m, a.s * m_exp(a.m - m) + b.s * m_exp(b.m - m)};
}

template <typename C>
struct LseCombiner {
  __device__ Lse<C> combine(Lse<C> a, Lse<C> b) const { return lse_combine(a, b); }
};

// ---- reducers over input type T ----
template <typename T>
struct SumR {
  using In = T;
  using Out = T;
  using Acc = ::cuda::std::conditional_t<::cuda::std::is_integral_v<T>, int64_t, double>;
  __device__ Acc init() const { return 0; }
  __device__ Acc step(Acc a, T v, int64_t) const { return a + static_cast<Acc>(load(v)); }
  __device__ Acc combine(Acc a, Acc b) const { return a + b; }
  __device__ Out finish(Acc a, int64_t) const { return store<T>(static_cast<Compute<T>>(a)); }
};

template <typename T>
struct MeanR : SumR<T> {
  using Acc = typename SumR<T>::Acc;
  __device__ T finish(Acc a, int64_t n) const {
    double mean = n == 0 ? ::cuda::std::numeric_limits<double>::quiet_NaN() : static_cast<double>(a) / n;
    return store<T>(static_cast<Compute<T>>(mean));
  }
};

// NaN wins: once the accumulator is NaN it stays NaN.
template <typename T, bool kMax>
struct ExtremumR {
  using In = T;
  using Out = T;
  using Acc = Compute<T>;
  __device__ Acc init() const {
    if constexpr (::cuda::std::is_integral_v<Acc>) {
      return kMax ? ::cuda::std::numeric_limits<Acc>::lowest() : ::cuda::std::numeric_limits<Acc>::max();
    } else {
      return kMax ? -infinity<Acc>() : infinity<Acc>();
    }
  }
  __device__ Acc combine(Acc a, Acc v) const {
    bool better = kMax ? v > a : v < a;
    return (better || is_nan(v)) && !is_nan(a) ? v : a;
  }
  __device__ Acc step(Acc a, T v, int64_t) const { return combine(a, load(v)); }
  __device__ Out finish(Acc a, int64_t) const { return store<T>(a); }
};

template <typename C>
struct ArgAcc {
  C v;
  int64_t i;  // -1: no element yet
};

// The first maximum; a NaN beats any number and the first NaN wins.
template <typename T>
struct ArgMaxR {
  using In = T;
  using Out = int64_t;
  using C = Compute<T>;
  using Acc = ArgAcc<C>;
  __device__ static bool better(C v1, int64_t i1, C v2, int64_t i2) {
    bool n1 = is_nan(v1), n2 = is_nan(v2);
    if (n1 || n2) return n1 && (!n2 || i1 < i2);
    if (v1 != v2) return v1 > v2;
    return i1 < i2;
  }
  __device__ Acc init() const { return {C(0), -1}; }
  __device__ Acc step(Acc a, T v, int64_t j) const {
    C c = load(v);
    return a.i < 0 || better(c, j, a.v, a.i) ? Acc{c, j} : a;
  }
  __device__ Acc combine(Acc a, Acc b) const {
    if (b.i < 0) return a;
    if (a.i < 0) return b;
    return better(b.v, b.i, a.v, a.i) ? b : a;
  }
  __device__ Out finish(Acc a, int64_t) const { return a.i; }
};

template <typename T>
struct LogSumExpR {
  using In = T;
  using Out = T;
  using Acc = Lse<double>;
  __device__ Acc init() const { return {-infinity<double>(), 0.0}; }
  __device__ Acc step(Acc a, T v, int64_t) const { return lse_combine(a, Acc{static_cast<double>(load(v)), 1.0}); }
  __device__ Acc combine(Acc a, Acc b) const { return lse_combine(a, b); }
  __device__ Out finish(Acc a, int64_t) const {
    double y = isfinite(a.m) ? a.m + log(a.s) : a.m;  // all -inf (or inf, nan): the maximum itself
    return store<T>(static_cast<Compute<T>>(y));
  }
};

// Tree reduction of one value per thread over the block (blockDim.x == kBlock, a power of two).
template <typename R, typename Acc>
__device__ Acc block_reduce(const R& r, Acc acc) {
  __shared__ Acc shared[kBlock];
  shared[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) shared[threadIdx.x] = r.combine(shared[threadIdx.x], shared[threadIdx.x + w]);
    __syncthreads();
  }
  Acc result = shared[0];
  __syncthreads();  // shared may be reused by the caller's next row
  return result;
}

__device__ __forceinline__ int64_t offset1(const StridedIndex<1>& ix, int64_t i) {
  int64_t off[1];
  offsets(ix, i, off);
  return off[0];
}

// Chunk c of an output's r elements: [begin, end).
__host__ __device__ __forceinline__ void chunk_range(int64_t r, int64_t chunks, int64_t c, int64_t* begin,
                                                     int64_t* end) {
  int64_t len = (r + chunks - 1) / chunks;
  *begin = c * len < r ? c * len : r;
  *end = *begin + len < r ? *begin + len : r;
}

// Block b reduces chunk (b % chunks) of output (b / chunks).
template <typename R>
__global__ void reduce_rows_kernel(typename R::Out* out, const typename R::In* x, ReduceShape shape, int64_t chunks,
                                   typename R::Acc* partial) {
  R r;
  int64_t b = blockIdx.x;
  int64_t o = b / chunks, c = b % chunks, begin, end;
  chunk_range(shape.r, chunks, c, &begin, &end);
  const typename R::In* row = x + offset1(shape.kept, o);
  typename R::Acc acc = r.init();
  for (int64_t j = begin + threadIdx.x; j < end; j += blockDim.x) acc = r.step(acc, row[offset1(shape.reduced, j)], j);
  acc = block_reduce(r, acc);
  if (threadIdx.x != 0) return;
  if (chunks == 1) {
    out[o] = r.finish(acc, shape.r);
  } else {
    partial[b] = acc;
  }
}

// Thread t reduces chunk (t / outer) of output (t % outer): neighbouring threads read neighbouring outputs.
template <typename R>
__global__ void reduce_columns_kernel(typename R::Out* out, const typename R::In* x, ReduceShape shape, int64_t chunks,
                                      typename R::Acc* partial) {
  R r;
  GF_GRID_STRIDE_LOOP(t, shape.outer * chunks) {
    int64_t o = t % shape.outer, c = t / shape.outer, begin, end;
    chunk_range(shape.r, chunks, c, &begin, &end);
    const typename R::In* row = x + offset1(shape.kept, o);
    typename R::Acc acc = r.init();
    for (int64_t j = begin; j < end; ++j) acc = r.step(acc, row[offset1(shape.reduced, j)], j);
    if (chunks == 1) {
      out[o] = r.finish(acc, shape.r);
    } else {
      partial[o * chunks + c] = acc;
    }
  }
}

template <typename R>
__global__ void reduce_finish_kernel(typename R::Out* out, const typename R::Acc* partial, int64_t outer,
                                     int64_t chunks, int64_t count) {
  R r;
  GF_GRID_STRIDE_LOOP(o, outer) {
    typename R::Acc acc = partial[o * chunks];
    for (int64_t c = 1; c < chunks; ++c) acc = r.combine(acc, partial[o * chunks + c]);
    out[o] = r.finish(acc, count);
  }
}

template <typename R>
cudaError_t run_reduce(cudaStream_t stream, void* out_ptr, const void* x_ptr, const ReduceShape& shape,
                       const ReducePlan& plan, void* workspace) {
  using Acc = typename R::Acc;
  static_assert(sizeof(Acc) <= 16, "partial results are given 16 bytes each");
  auto* out = static_cast<typename R::Out*>(out_ptr);
  auto* x = static_cast<const typename R::In*>(x_ptr);
  auto* partial = static_cast<Acc*>(workspace);
  int64_t work = shape.outer * plan.chunks;
  if (plan.by_rows) {
    reduce_rows_kernel<R><<<static_cast<unsigned>(work), kBlock, 0, stream>>>(out, x, shape, plan.chunks, partial);
  } else {
    reduce_columns_kernel<R><<<grid_for(work), kBlock, 0, stream>>>(out, x, shape, plan.chunks, partial);
  }
  cudaError_t error = cudaGetLastError();
  if (error != cudaSuccess || plan.chunks == 1) return error;
  reduce_finish_kernel<R>
      <<<grid_for(shape.outer), kBlock, 0, stream>>>(out, partial, shape.outer, plan.chunks, shape.r);
  return cudaGetLastError();
}

// ---- softmax, log_softmax, sparse cross-entropy over rows ----
template <typename T, RowOp kOp>
__device__ __forceinline__ void row_write(T* out, const T* row, const int64_t* labels, int64_t o, int64_t n,
                                          int64_t out_stride, int64_t x_stride, Lse<Compute<T>> acc, int64_t first,
                                          int64_t step) {
  using C = Compute<T>;
  if constexpr (kOp == RowOp::kSparseXent) {
    if (first == 0) *out = store<T>(acc.m + m_log(acc.s) - load(row[labels[o] * x_stride]));
  } else if constexpr (kOp == RowOp::kLogSoftmax) {
    C lse = acc.m + m_log(acc.s);
    for (int64_t j = first; j < n; j += step) out[j * out_stride] = store<T>(load(row[j * x_stride]) - lse);
  } else {
    for (int64_t j = first; j < n; j += step) {
      out[j * out_stride] = store<T>(m_exp(load(row[j * x_stride]) - acc.m) / acc.s);
    }
  }
}

// A block per row (long rows).
template <typename T, RowOp kOp>
__global__ void row_op_block_kernel(T* out, const T* x, const int64_t* labels, StridedIndex<2> rows, int64_t outer,
                                    int64_t n, int64_t out_stride, int64_t x_stride) {
  using C = Compute<T>;
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    int64_t off[2];
    offsets(rows, o, off);
    const T* row = x + off[1];
    Lse<C> acc{-infinity<C>(), C(0)};
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc = lse_combine(acc, Lse<C>{load(row[j * x_stride]), C(1)});
    acc = block_reduce(LseCombiner<C>{}, acc);
    row_write<T, kOp>(out + off[0], row, labels, o, n, out_stride, x_stride, acc, threadIdx.x, blockDim.x);
  }
}

// A thread per row (short rows).
template <typename T, RowOp kOp>
__global__ void row_op_thread_kernel(T* out, const T* x, const int64_t* labels, StridedIndex<2> rows, int64_t outer,
                                     int64_t n, int64_t out_stride, int64_t x_stride) {
  using C = Compute<T>;
  GF_GRID_STRIDE_LOOP(o, outer) {
    int64_t off[2];
    offsets(rows, o, off);
    const T* row = x + off[1];
    Lse<C> acc{-infinity<C>(), C(0)};
    for (int64_t j = 0; j < n; ++j) acc = lse_combine(acc, Lse<C>{load(row[j * x_stride]), C(1)});
    row_write<T, kOp>(out + off[0], row, labels, o, n, out_stride, x_stride, acc, 0, 1);
  }
}

template <RowOp kOp>
cudaError_t run_row_op(cudaStream_t stream, ScalarType type, void* out, const void* x, const int64_t* labels,
                       const StridedIndex<2>& rows, int64_t outer, int64_t n, int64_t out_stride, int64_t x_stride) {
  return visit_float(type, [&](auto tag) {
    using T = typename decltype(tag)::type;
    auto* o = static_cast<T*>(out);
    auto* xp = static_cast<const T*>(x);
    if (n <= 64) {
      row_op_thread_kernel<T, kOp>
          <<<grid_for(outer), kBlock, 0, stream>>>(o, xp, labels, rows, outer, n, out_stride, x_stride);
    } else {
      unsigned blocks = static_cast<unsigned>(outer < 65536 ? outer : 65536);
      row_op_block_kernel<T, kOp><<<blocks, kBlock, 0, stream>>>(o, xp, labels, rows, outer, n, out_stride, x_stride);
    }
    return cudaGetLastError();
  });
}

}  // namespace

ReducePlan plan_reduce(const ReduceShape& shape) {
  ReducePlan plan;
  if (shape.outer == 0) return plan;  // nothing to launch (and no occupancy to divide by)
  const StridedIndex<1>& red = shape.reduced;
  bool row_contiguous = red.rank > 0 && red.strides[0][red.rank - 1] == 1;
  plan.by_rows = shape.r > 32 && (row_contiguous || shape.outer == 1) && shape.outer <= (int64_t{1} << 30);
  if (plan.by_rows && shape.outer < 256) {
    int64_t by_size = (shape.r + kBlock * 16 - 1) / (kBlock * 16);  // at least 4096 elements per block
    int64_t by_occupancy = 1024 / shape.outer;
    plan.chunks = std::max<int64_t>(1, std::min(by_size, by_occupancy));
  } else if (!plan.by_rows && shape.outer < 16384 && shape.r > 0) {
    int64_t by_size = (shape.r + 63) / 64;  // at least 64 elements per thread
    int64_t by_occupancy = (65536 + shape.outer - 1) / shape.outer;
    plan.chunks = std::max<int64_t>(1, std::min(by_size, by_occupancy));
  }
  if (plan.chunks > 1) plan.workspace_bytes = static_cast<size_t>(shape.outer * plan.chunks) * 16;
  return plan;
}

cudaError_t launch_reduce(cudaStream_t stream, ReduceOp op, ScalarType type, void* out, const void* x,
                          const ReduceShape& shape, const ReducePlan& plan, void* workspace) {
  if (shape.outer == 0) return cudaSuccess;
  auto with = [&](auto make_reducer) {
    return [&, make_reducer](auto tag) {
      using R = decltype(make_reducer(tag));
      return run_reduce<R>(stream, out, x, shape, plan, workspace);
    };
  };
  switch (op) {
    case ReduceOp::kSum:
      return visit_numeric(type, with([](auto tag) { return SumR<typename decltype(tag)::type>{}; }));
    case ReduceOp::kMean:
      return visit_numeric(type, with([](auto tag) { return MeanR<typename decltype(tag)::type>{}; }));
    case ReduceOp::kMax:
      return visit_numeric(type, with([](auto tag) { return ExtremumR<typename decltype(tag)::type, true>{}; }));
    case ReduceOp::kMin:
      return visit_numeric(type, with([](auto tag) { return ExtremumR<typename decltype(tag)::type, false>{}; }));
    case ReduceOp::kLogSumExp:
      return visit_float(type, with([](auto tag) { return LogSumExpR<typename decltype(tag)::type>{}; }));
    case ReduceOp::kArgMax:
      return visit_numeric(type, with([](auto tag) { return ArgMaxR<typename decltype(tag)::type>{}; }));
  }
  return cudaErrorInvalidValue;
}

cudaError_t launch_row_op(cudaStream_t stream, RowOp op, ScalarType type, void* out, const void* x,
                          const int64_t* labels, const StridedIndex<2>& rows, int64_t outer, int64_t n,
                          int64_t out_stride, int64_t x_stride) {
  if (outer == 0 || n == 0) return cudaSuccess;
  switch (op) {
    case RowOp::kSoftmax:
      return run_row_op<RowOp::kSoftmax>(stream, type, out, x, labels, rows, outer, n, out_stride, x_stride);
    case RowOp::kLogSoftmax:
      return run_row_op<RowOp::kLogSoftmax>(stream, type, out, x, labels, rows, outer, n, out_stride, x_stride);
    case RowOp::kSparseXent:
      return run_row_op<RowOp::kSparseXent>(stream, type, out, x, labels, rows, outer, n, out_stride, x_stride);
  }
  return cudaErrorInvalidValue;
}

}  // namespace gradflow::cuda
