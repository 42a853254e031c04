// The correctness checks every backend must pass, written once for any Communicator: the thread tests
// (N ranks as N threads over Gloo), the MPI tests (under mpirun -np 2 and -np 4) and the NCCL tests call
// them with their own communicator. Rank r contributes value(r, i) = (r + i) % 3 + 1 at element i, so
// sums, products, minima and maxima are exact in every dtype (u8 included) for up to 4 ranks.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/gradflow.h"
#include "distributed/comm/communicator.h"

namespace gradflow::distributed::testing {

inline double value(int rank, int64_t i) { return static_cast<double>((rank + i) % 3 + 1); }

// A tensor of `shape` holding value(rank, i) (bool: whether it is odd), in `dtype`.
inline Tensor rank_tensor(int rank, Shape shape, DType dtype) {
  int64_t n = numel(shape);
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = value(rank, i);
  Tensor t = from_vector<double>(v, shape);
  if (dtype == kBool) return not_equal(t, scalar(2.0, kF64));  // true where the value is odd
  return t.to(dtype);
}

inline double expected_reduction(int size, int64_t i, ReduceOp op, DType dtype) {
  double acc = op == ReduceOp::kProd ? 1 : op == ReduceOp::kMin ? 1e9 : op == ReduceOp::kMax ? -1e9 : 0;
  for (int r = 0; r < size; ++r) {
    double v = dtype == kBool ? (value(r, i) != 2.0 ? 1 : 0) : value(r, i);
    switch (op) {
      case ReduceOp::kSum:
      case ReduceOp::kAvg: acc += v; break;
      case ReduceOp::kProd: acc *= v; break;
      case ReduceOp::kMin: acc = std::min(acc, v); break;
      case ReduceOp::kMax: acc = std::max(acc, v); break;
    }
  }
  if (op == ReduceOp::kAvg) acc /= size;
  if (dtype == kBool) {
    bool any = op == ReduceOp::kSum || op == ReduceOp::kMax;
    return any ? (acc > 0 ? 1 : 0) : (acc > 0 ? 1 : 0);
  }
  return acc;
}

inline std::vector<double> host_values(const Tensor& t) { return t.to(kCPU).to(kF64).reshape({-1}).to_vector<double>(); }

inline const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> dtypes{kF32, kF64, kF16, kBF16, kI32, kI64, kU8, kBool};
  return dtypes;
}

// Sizes the issue asks for: empty, one element, primes, not a multiple of the rank count.
inline const std::vector<int64_t>& small_sizes() {
  static const std::vector<int64_t> sizes{0, 1, 7, 13};
  return sizes;
}

inline void check_all_reduce(Communicator& comm, Device device = kCPU) {
  for (DType dtype : all_dtypes()) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMin, ReduceOp::kMax, ReduceOp::kProd}) {
      if (op == ReduceOp::kAvg && !is_floating(dtype)) continue;
      for (int64_t n : small_sizes()) {
        // A new output, in place through a Work, and the blocking in-place call (no Work: its result is
        // the input's memory).
        for (int mode : {0, 1, 2}) {
          const bool in_place = mode > 0;
          Tensor in = rank_tensor(comm.rank(), {n}, dtype).to(device);
          if (mode == 2) {
            comm.all_reduce_in_place(in, op);
            std::vector<double> got = host_values(in);
            for (int64_t i = 0; i < n; ++i) {
              ASSERT_NEAR(got[i], expected_reduction(comm.size(), i, op, dtype), is_half(dtype) ? 1e-2 : 1e-9)
                  << dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n << " i=" << i << " blocking";
            }
            continue;
          }
          std::vector<Tensor> out = comm.all_reduce({in}, {.op = op, .in_place = in_place})->result();
          ASSERT_EQ(out.size(), 1u);
          ASSERT_EQ(out[0].dtype(), dtype);
          ASSERT_EQ(out[0].shape(), in.shape());
          ASSERT_EQ(out[0].device(), device);
          // In place, the result is the input, holding the reduction; otherwise the input is unchanged.
          if (in_place && n > 0) {
            ASSERT_EQ(out[0].raw_data(), in.raw_data());
          }
          if (!in_place) {
            ASSERT_EQ(host_values(in), host_values(rank_tensor(comm.rank(), {n}, dtype)));
          }
          std::vector<double> got = host_values(in_place ? in : out[0]);
          for (int64_t i = 0; i < n; ++i) {
            ASSERT_NEAR(got[i], expected_reduction(comm.size(), i, op, dtype), is_half(dtype) ? 1e-2 : 1e-9)
                << dtype_name(dtype) << " " << reduce_op_name(op) << " n=" << n << " i=" << i
                << (in_place ? " in place" : "");
          }
        }
      }
    }
  }
}

inline void check_all_reduce_large(Communicator& comm, int64_t n, Device device = kCPU) {
  Tensor in = rank_tensor(comm.rank(), {n}, kF32).to(device);
  std::vector<double> got = host_values(comm.all_reduce({in})->result()[0]);
  for (int64_t i = 0; i < n; i += std::max<int64_t>(1, n / 1000)) {
    ASSERT_EQ(got[i], expected_reduction(comm.size(), i, ReduceOp::kSum, kF32)) << "n=" << n << " i=" << i;
  }
  ASSERT_EQ(got[n - 1], expected_reduction(comm.size(), n - 1, ReduceOp::kSum, kF32));
}

inline void check_coalesced(Communicator& comm, Device device = kCPU) {
  std::vector<Tensor> in{rank_tensor(comm.rank(), {2, 3}, kF32).to(device), rank_tensor(comm.rank(), {5}, kI64).to(device),
                         rank_tensor(comm.rank(), {}, kF32).to(device)};
  std::vector<Tensor> out = comm.all_reduce(in, {.op = ReduceOp::kMax})->result();
  ASSERT_EQ(out.size(), 3u);
  for (size_t k = 0; k < in.size(); ++k) {
    ASSERT_EQ(out[k].shape(), in[k].shape());
    ASSERT_EQ(out[k].dtype(), in[k].dtype());
    std::vector<double> got = host_values(out[k]);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected_reduction(comm.size(), i, ReduceOp::kMax, kF32));
  }
  // In place: a list with a dtype converted on the wire (f16) and a non-contiguous view, each written
  // back into its own memory.
  {
    Tensor base = rank_tensor(comm.rank(), {3, 2}, kF32).to(device);
    std::vector<Tensor> targets{base.transpose(0, 1), rank_tensor(comm.rank(), {7}, kF16).to(device)};
    std::vector<Tensor> results = comm.all_reduce(targets, {.op = ReduceOp::kSum, .in_place = true})->result();
    ASSERT_EQ(results.size(), 2u);
    for (size_t k = 0; k < targets.size(); ++k) ASSERT_EQ(results[k].raw_data(), targets[k].raw_data()) << k;
    std::vector<double> got = host_values(base);  // the view's writes land in the base tensor
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected_reduction(comm.size(), i, ReduceOp::kSum, kF32));
    got = host_values(targets[1]);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected_reduction(comm.size(), i, ReduceOp::kSum, kF16));
  }
  // The blocking in-place call on a non-contiguous view (which the engine cannot take directly: it goes
  // through a Work and ends the same) and on f16 (which some engines reduce as f32).
  {
    Tensor base = rank_tensor(comm.rank(), {3, 2}, kF32).to(device);
    comm.all_reduce_in_place(base.transpose(0, 1), ReduceOp::kMax);
    std::vector<double> got = host_values(base);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected_reduction(comm.size(), i, ReduceOp::kMax, kF32));
    Tensor half = rank_tensor(comm.rank(), {5}, kF16).to(device);
    comm.all_reduce_in_place(half, ReduceOp::kSum);
    got = host_values(half);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expected_reduction(comm.size(), i, ReduceOp::kSum, kF16));
  }
  // broadcast of a list from the last rank
  int root = comm.size() - 1;
  std::vector<Tensor> b = comm.broadcast(in, {.root = root})->result();
  for (size_t k = 0; k < in.size(); ++k) {
    ASSERT_EQ(host_values(b[k]), host_values(rank_tensor(root, in[k].shape(), in[k].dtype()))) << k;
  }
}

inline void check_broadcast_and_reduce(Communicator& comm, Device device = kCPU) {
  for (DType dtype : all_dtypes()) {
    for (int64_t n : small_sizes()) {
      for (int root : {0, comm.size() - 1}) {
        Tensor in = rank_tensor(comm.rank(), {n}, dtype).to(device);
        Tensor out = comm.broadcast({in}, {.root = root})->result()[0];
        ASSERT_EQ(out.dtype(), dtype);
        ASSERT_EQ(host_values(out), host_values(rank_tensor(root, {n}, dtype))) << dtype_name(dtype) << " n=" << n;

        Tensor reduced = comm.reduce({in}, {.root = root, .op = ReduceOp::kSum})->result()[0];
        std::vector<double> got = host_values(reduced);
        for (int64_t i = 0; i < n; ++i) {
          double want = comm.rank() == root ? expected_reduction(comm.size(), i, ReduceOp::kSum, dtype) : value(comm.rank(), i);
          if (dtype == kBool && comm.rank() != root) want = value(comm.rank(), i) != 2.0;
          ASSERT_NEAR(got[i], want, 1e-9) << dtype_name(dtype) << " n=" << n << " root=" << root;
        }
      }
    }
  }
}

inline void check_gathers(Communicator& comm, Device device = kCPU) {
  int size = comm.size(), rank = comm.rank();
  for (DType dtype : {kF32, kI64, kF16, kU8}) {
    for (int64_t rows : {int64_t{0}, int64_t{1}, int64_t{3}}) {
      Tensor in = rank_tensor(rank, {rows, 2}, dtype).to(device);
      Tensor out = comm.all_gather(in)->result()[0];
      ASSERT_EQ(out.shape(), (Shape{rows * size, 2}));
      std::vector<double> got = host_values(out);
      for (int r = 0; r < size; ++r) {
        std::vector<double> want = host_values(rank_tensor(r, {rows, 2}, dtype));
        ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * rows * 2)) << "from rank " << r;
      }
    }
  }
  // Rank r has r rows (rank 0 none): the sizes differ and one is empty.
  Tensor in = rank_tensor(rank, {rank, 3}, kF64).to(device);
  Tensor out = comm.all_gather_v(in)->result()[0];
  int64_t total_rows = static_cast<int64_t>(size) * (size - 1) / 2;
  ASSERT_EQ(out.shape(), (Shape{total_rows, 3}));
  std::vector<double> got = host_values(out);
  int64_t offset = 0;
  for (int r = 0; r < size; ++r) {
    std::vector<double> want = host_values(rank_tensor(r, {r, 3}, kF64));
    ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + offset)) << "from rank " << r;
    offset += static_cast<int64_t>(want.size());
  }
}

inline void check_reduce_scatter(Communicator& comm, Device device = kCPU) {
  int size = comm.size(), rank = comm.rank();
  for (int64_t rows : {int64_t{0}, int64_t{1}, int64_t{13}, int64_t{4} * size}) {
    for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax}) {
      Tensor in = rank_tensor(rank, {rows, 2}, kF32).to(device);
      Tensor out = comm.reduce_scatter(in, {.op = op})->result()[0];
      int64_t mine = rows / size + (rank < rows % size ? 1 : 0);
      int64_t first = rank * (rows / size) + std::min<int64_t>(rank, rows % size);
      ASSERT_EQ(out.shape(), (Shape{mine, 2})) << "rows=" << rows;
      std::vector<double> got = host_values(out);
      for (int64_t i = 0; i < mine * 2; ++i) {
        ASSERT_NEAR(got[i], expected_reduction(size, first * 2 + i, op, kF32), 1e-6) << "rows=" << rows << " i=" << i;
      }
    }
  }
}

inline void check_all_to_all(Communicator& comm, Device device = kCPU) {
  int size = comm.size(), rank = comm.rank();
  // Equal parts: row j*2+k of rank r's input goes to rank j; values encode (sender, row).
  {
    std::vector<double> v;
    for (int64_t row = 0; row < 2 * size; ++row) v.push_back(rank * 100 + row);
    Tensor out = comm.all_to_all(from_vector<double>(v, {2 * size}).to(device))->result()[0];
    std::vector<double> got = host_values(out);
    ASSERT_EQ(got.size(), static_cast<size_t>(2 * size));
    for (int r = 0; r < size; ++r) {
      for (int k = 0; k < 2; ++k) ASSERT_EQ(got[r * 2 + k], r * 100 + rank * 2 + k) << "from rank " << r;
    }
  }
  // Uneven parts: rank r sends (r + j) % 3 rows to rank j.
  std::vector<int64_t> splits(size);
  std::vector<double> v;
  for (int j = 0; j < size; ++j) {
    splits[j] = (rank + j) % 3;
    for (int64_t k = 0; k < splits[j]; ++k) v.push_back(rank * 100 + j * 10 + k);
  }
  Tensor out = comm.all_to_all(from_vector<double>(v, {static_cast<int64_t>(v.size())}).to(device),
                               {.input_splits = splits})->result()[0];
  std::vector<double> got = host_values(out);
  size_t at = 0;
  for (int r = 0; r < size; ++r) {
    for (int64_t k = 0; k < (r + rank) % 3; ++k) ASSERT_EQ(got.at(at++), r * 100 + rank * 10 + k) << "from rank " << r;
  }
  ASSERT_EQ(at, got.size());
}

inline void check_point_to_point(Communicator& comm, Device device = kCPU) {
  int size = comm.size(), rank = comm.rank();
  if (size < 2) return;
  // A ring: even ranks send first and odd ranks receive first, so blocking engines cannot deadlock.
  int next = (rank + 1) % size, prev = (rank + size - 1) % size;
  Tensor mine = rank_tensor(rank, {5, 2}, kF32).to(device);
  Tensor got;
  for (int phase = 0; phase < 2; ++phase) {
    if ((phase == 0) == (rank % 2 == 0)) {
      comm.send(mine, next, {.tag = 7})->wait();
    } else {
      got = comm.recv({5, 2}, kF32, prev, {.tag = 7})->result()[0];
    }
  }
  ASSERT_EQ(host_values(got), host_values(rank_tensor(prev, {5, 2}, kF32)));
}

inline void check_barrier_async_and_split(Communicator& comm, Device device = kCPU) {
  comm.barrier()->wait();
  // Several ops in flight at once, completed in order.
  std::vector<WorkPtr> works;
  for (int k = 0; k < 4; ++k) {
    works.push_back(comm.all_reduce({full({3}, k + comm.rank(), kF32, device)}, {.async_op = true}));
  }
  // A blocking call behind them waits for them, then runs: never beside them.
  Tensor after = full({3}, 1.0, kF32, device);
  comm.all_reduce_in_place(after);
  ASSERT_EQ(host_values(after)[2], comm.size());
  for (int k = 0; k < 4; ++k) {
    ASSERT_TRUE(works[k]->completed()) << k;
    double want = comm.size() * k + comm.size() * (comm.size() - 1) / 2.0;
    ASSERT_EQ(host_values(works[k]->result()[0])[0], want) << k;
  }
  // Even and odd ranks; the last rank joins neither when the size is at least 3.
  bool left_out = comm.size() >= 3 && comm.rank() == comm.size() - 1;
  std::unique_ptr<Communicator> half = comm.split(left_out ? -1 : comm.rank() % 2, -comm.rank());
  if (left_out) {
    ASSERT_EQ(half, nullptr);
    return;
  }
  ASSERT_NE(half, nullptr);
  std::vector<int> members;
  for (int r = 0; r < comm.size(); ++r) {
    if (r % 2 == comm.rank() % 2 && !(comm.size() >= 3 && r == comm.size() - 1)) members.push_back(r);
  }
  ASSERT_EQ(half->size(), static_cast<int>(members.size()));
  // key = -rank: the highest rank comes first.
  ASSERT_EQ(half->rank(), static_cast<int>(members.end() - std::find(members.begin(), members.end(), comm.rank())) - 1);
  double sum = 0;
  for (int r : members) sum += r;
  Tensor out = half->all_reduce({full({2}, comm.rank(), kF64, device)})->result()[0];
  ASSERT_EQ(host_values(out)[1], sum);
}

inline void check_everything(Communicator& comm, Device device = kCPU) {
  check_all_reduce(comm, device);
  check_coalesced(comm, device);
  check_broadcast_and_reduce(comm, device);
  check_gathers(comm, device);
  check_reduce_scatter(comm, device);
  check_all_to_all(comm, device);
  check_point_to_point(comm, device);
  check_barrier_async_and_split(comm, device);
}

}  // namespace gradflow::distributed::testing
