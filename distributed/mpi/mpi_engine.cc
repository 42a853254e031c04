// MpiEngine: maps Engine calls onto MPI collectives one for one, converting int64 counts to MPI's int
// (chunking where MPI allows it) and every MPI error code to CollectiveError.
#include "distributed/mpi/mpi_engine.h"

#include <mpi-ext.h>  // MPIX_Query_cuda_support

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>

#include "core/tensor/dtype.h"
#include "core/tensor/error.h"
#include "distributed/comm/half_reduce.h"

namespace gradflow::distributed {
namespace {

// Half of INT_MAX, not INT_MAX itself: some OpenMPI collectives overflow int byte counts internally well
// before the element count does.
constexpr int64_t kChunk = INT_MAX / 2;

std::string error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return str_cat("error code ", code);
  return std::string(text, length);
}

void check(int code, const char* call) {
  if (code != MPI_SUCCESS) {
    throw CollectiveError(CollectiveFailure::kEngine, str_cat("mpi: ", call, " failed: ", error_text(code)));
  }
}

// Any dtype, for ops that only move bytes: 16-bit floats and bools travel as same-sized integers.
MPI_Datatype mpi_type(DType dtype) {
  switch (dtype) {
    case kF32: return MPI_FLOAT;
    case kF64: return MPI_DOUBLE;
    case kI32: return MPI_INT32_T;
    case kI64: return MPI_INT64_T;
    case kF16: case kBF16: return MPI_UINT16_T;
    case kU8: case kBool: return MPI_UINT8_T;
  }
  throw DTypeError(str_cat("mpi: unknown dtype ", static_cast<int>(dtype)));
}

// 16-bit floats reduce through user-defined ops (MPI has no f16 arithmetic): one per dtype and op, each
// a distinct C function as MPI_Op_create needs.
template <DType kDType, ReduceOp kOp>
void half_op_function(void* in, void* inout, int* len, MPI_Datatype*) {
  static const half_reduce::Fn fn = half_reduce::function_for(kDType, kOp);
  fn(inout, in, inout, static_cast<size_t>(*len));
}

template <DType kDType>
MPI_Op half_op(ReduceOp op) {
  static MPI_Op ops[4];
  static std::once_flag created;
  std::call_once(created, [] {
    check(MPI_Op_create(&half_op_function<kDType, ReduceOp::kSum>, 1, &ops[0]), "MPI_Op_create");
    check(MPI_Op_create(&half_op_function<kDType, ReduceOp::kProd>, 1, &ops[1]), "MPI_Op_create");
    check(MPI_Op_create(&half_op_function<kDType, ReduceOp::kMin>, 1, &ops[2]), "MPI_Op_create");
    check(MPI_Op_create(&half_op_function<kDType, ReduceOp::kMax>, 1, &ops[3]), "MPI_Op_create");
  });
  switch (op) {
    case ReduceOp::kSum: return ops[0];
    case ReduceOp::kProd: return ops[1];
    case ReduceOp::kMin: return ops[2];
    case ReduceOp::kMax: return ops[3];
    case ReduceOp::kAvg: break;
  }
  throw DTypeError(str_cat("mpi: no reduction ", reduce_op_name(op), " for 16-bit floats"));
}

MPI_Op mpi_op(ReduceOp op, DType dtype) {
  if (dtype == kF16) return half_op<kF16>(op);
  if (dtype == kBF16) return half_op<kBF16>(op);
  switch (op) {
    case ReduceOp::kSum: return MPI_SUM;
    case ReduceOp::kMin: return MPI_MIN;
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kProd: return MPI_PROD;
    case ReduceOp::kAvg: break;
  }
  throw DTypeError(str_cat("mpi: no native reduction ", reduce_op_name(op)));
}

bool reducible(DType dtype) {
  return dtype == kF32 || dtype == kF64 || dtype == kI32 || dtype == kI64 || dtype == kU8 || dtype == kF16 ||
         dtype == kBF16;
}

// Refuses what supports_reduction() refused.
MPI_Datatype reduction_type(DType dtype, ReduceOp op, const char* what) {
  GF_CHECK(reducible(dtype) && op != ReduceOp::kAvg, DTypeError, "mpi: ", what, ": no reduction ",
           reduce_op_name(op), " for dtype ", dtype_name(dtype));
  return mpi_type(dtype);
}

// Null stays null (a non-root's reduce output may be), so no arithmetic happens on a null pointer.
const char* at(const void* p, int64_t byte_offset) {
  return p ? static_cast<const char*>(p) + byte_offset : nullptr;
}
char* at(void* p, int64_t byte_offset) { return p ? static_cast<char*>(p) + byte_offset : nullptr; }

// Calls f(byte offset, element count) for consecutive chunks of at most kChunk elements; once for count 0,
// so that every rank still makes the same (empty) MPI call.
template <typename F>
void for_each_chunk(int64_t count, DType dtype, F&& f) {
  const int64_t element = static_cast<int64_t>(dtype_size(dtype));
  int64_t done = 0;
  do {
    const int n = static_cast<int>(std::min(count - done, kChunk));
    f(done * element, n);
    done += n;
  } while (done < count);
}

// The vector ops' counts (or displacements) as MPI ints, one per rank.
std::vector<int> to_ints(const std::vector<int64_t>& values, int size, const char* what, const char* name) {
  GF_CHECK(static_cast<int>(values.size()) == size, ValueError, "mpi: ", what, ": ", values.size(), " ",
           name, " for ", size, " ranks");
  std::vector<int> ints(values.size());
  for (size_t r = 0; r < values.size(); ++r) {
    GF_CHECK(values[r] >= 0 && values[r] <= INT_MAX, ValueError, "mpi: ", what, ": ", name, " ", values[r],
             " (rank ", r, ") is outside [0, INT_MAX = ", INT_MAX, "]");
    ints[r] = static_cast<int>(values[r]);
  }
  return ints;
}

bool all_equal(const std::vector<int64_t>& values) {
  return std::adjacent_find(values.begin(), values.end(), std::not_equal_to<>()) == values.end();
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

}  // namespace

MpiEngine::MpiEngine(MPI_Comm comm) : comm_(comm) {
  try {
    check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
    // Predefined attributes are guaranteed on MPI_COMM_WORLD only, not on its duplicates.
    int* tag_ub = nullptr;
    int found = 0;
    check(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found), "MPI_Comm_get_attr");
    if (found && tag_ub) tag_ub_ = *tag_ub;
    int provided = MPI_THREAD_SINGLE;
    check(MPI_Query_thread(&provided), "MPI_Query_thread");
    inline_only_ = provided < MPI_THREAD_SERIALIZED;
#if defined(MPIX_CUDA_AWARE_SUPPORT) && MPIX_CUDA_AWARE_SUPPORT
    cuda_aware_ = MPIX_Query_cuda_support() == 1;  // the build may be CUDA-aware while the runtime is not
#endif
  } catch (...) {
    MPI_Comm_free(&comm_);
    throw;
  }
}

MpiEngine::~MpiEngine() {
  if (comm_ != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm_);
}

bool MpiEngine::supports_device(Device device) const {
  return device.is_cpu() || (device.is_cuda() && cuda_aware_);
}

bool MpiEngine::supports_reduction(DType dtype, ReduceOp op) const {
  return reducible(dtype) && op != ReduceOp::kAvg;
}

void MpiEngine::all_reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, Timeout) {
  const MPI_Datatype type = reduction_type(dtype, op, "all_reduce");
  for_each_chunk(count, dtype, [&](int64_t offset, int n) {
    const void* send = in == out ? MPI_IN_PLACE : at(in, offset);
    check(MPI_Allreduce(send, at(out, offset), n, type, mpi_op(op, dtype), comm_), "MPI_Allreduce");
  });
}

void MpiEngine::broadcast(void* buffer, int64_t count, DType dtype, int root, Timeout) {
  for_each_chunk(count, dtype, [&](int64_t offset, int n) {
    check(MPI_Bcast(at(buffer, offset), n, mpi_type(dtype), root, comm_), "MPI_Bcast");
  });
}

void MpiEngine::reduce(const void* in, void* out, int64_t count, DType dtype, ReduceOp op, int root,
                       Timeout) {
  const MPI_Datatype type = reduction_type(dtype, op, "reduce");
  // MPI_IN_PLACE is legal at the root only.
  const bool in_place = rank_ == root && in == out;
  for_each_chunk(count, dtype, [&](int64_t offset, int n) {
    const void* send = in_place ? MPI_IN_PLACE : at(in, offset);
    check(MPI_Reduce(send, at(out, offset), n, type, mpi_op(op, dtype), root, comm_), "MPI_Reduce");
  });
}

void MpiEngine::all_gather(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                           Timeout) {
  const std::vector<int> ints = to_ints(counts, size_, "all_gather", "count");
  const std::vector<int64_t> offsets = engine_internal::prefix_offsets(counts);
  const MPI_Datatype type = mpi_type(dtype);
  const int64_t own_part = offsets[rank_] * static_cast<int64_t>(dtype_size(dtype));
  const void* send = in == at(out, own_part) ? MPI_IN_PLACE : in;
  if (all_equal(counts)) {
    check(MPI_Allgather(send, ints[rank_], type, out, ints[rank_], type, comm_), "MPI_Allgather");
    return;
  }
  const std::vector<int> displacements = to_ints(offsets, size_, "all_gather", "displacement");
  check(MPI_Allgatherv(send, ints[rank_], type, out, ints.data(), displacements.data(), type, comm_),
        "MPI_Allgatherv");
}

void MpiEngine::reduce_scatter(const void* in, void* out, const std::vector<int64_t>& counts, DType dtype,
                               ReduceOp op, Timeout) {
  const MPI_Datatype type = reduction_type(dtype, op, "reduce_scatter");
  const std::vector<int> ints = to_ints(counts, size_, "reduce_scatter", "count");
  const void* send = in == out ? MPI_IN_PLACE : in;
  if (all_equal(counts)) {
    check(MPI_Reduce_scatter_block(send, out, ints[rank_], type, mpi_op(op, dtype), comm_),
          "MPI_Reduce_scatter_block");
  } else {
    check(MPI_Reduce_scatter(send, out, ints.data(), type, mpi_op(op, dtype), comm_), "MPI_Reduce_scatter");
  }
}

void MpiEngine::all_to_all(const void* in, const std::vector<int64_t>& send_counts, void* out,
                           const std::vector<int64_t>& recv_counts, DType dtype, Timeout) {
  const std::vector<int> sends = to_ints(send_counts, size_, "all_to_all", "send count");
  const std::vector<int> recvs = to_ints(recv_counts, size_, "all_to_all", "receive count");
  const bool in_place = in == out;
  // In place, MPI takes the outgoing parts from out and lays them out by the receive counts.
  GF_CHECK(!in_place || send_counts == recv_counts, ValueError,
           "mpi: all_to_all: in place needs equal send and receive counts");
  const MPI_Datatype type = mpi_type(dtype);
  const void* send = in_place ? MPI_IN_PLACE : in;
  if (all_equal(send_counts) && all_equal(recv_counts) && sends[0] == recvs[0]) {
    check(MPI_Alltoall(send, sends[0], type, out, recvs[0], type, comm_), "MPI_Alltoall");
    return;
  }
  const std::vector<int> send_displs =
      to_ints(engine_internal::prefix_offsets(send_counts), size_, "all_to_all", "send displacement");
  const std::vector<int> recv_displs =
      to_ints(engine_internal::prefix_offsets(recv_counts), size_, "all_to_all", "receive displacement");
  check(MPI_Alltoallv(send, sends.data(), send_displs.data(), type, out, recvs.data(), recv_displs.data(),
                      type, comm_),
        "MPI_Alltoallv");
}

void MpiEngine::barrier(Timeout) { check(MPI_Barrier(comm_), "MPI_Barrier"); }

void MpiEngine::check_tag(int tag, const char* op) const {
  GF_CHECK(tag >= 0 && tag <= tag_ub_, ValueError, "mpi: ", op, ": tag ", tag,
           " is outside [0, MPI_TAG_UB = ", tag_ub_, "]");
}

void MpiEngine::send(const void* buffer, int64_t count, DType dtype, int dst, int tag, Timeout) {
  check_tag(tag, "send");
  for_each_chunk(count, dtype, [&](int64_t offset, int n) {
    check(MPI_Send(at(buffer, offset), n, mpi_type(dtype), dst, tag, comm_), "MPI_Send");
  });
}

void MpiEngine::recv(void* buffer, int64_t count, DType dtype, int src, int tag, Timeout) {
  check_tag(tag, "recv");
  const MPI_Datatype type = mpi_type(dtype);
  auto mismatch = [&](const auto& got) {
    return CollectiveError(CollectiveFailure::kEngine, str_cat("mpi: recv from rank ", src, " (tag ", tag,
                                                              "): expected ", count, " ", dtype_name(dtype),
                                                              " elements, got ", got));
  };
  for_each_chunk(count, dtype, [&](int64_t offset, int n) {
    MPI_Status status;
    const int code = MPI_Recv(at(buffer, offset), n, type, src, tag, comm_, &status);
    int error_class = MPI_SUCCESS;
    if (code != MPI_SUCCESS) MPI_Error_class(code, &error_class);
    // The buffer holds exactly count elements, so a longer message shows up as truncation.
    if (error_class == MPI_ERR_TRUNCATE) throw mismatch(str_cat("more than ", count));
    check(code, "MPI_Recv");
    int got = 0;
    check(MPI_Get_count(&status, type, &got), "MPI_Get_count");
    if (got == MPI_UNDEFINED) throw mismatch("a message that is not a whole number of elements");
    // A short chunk ends the sender's data (it chunks the same way), so the total is offset + got.
    if (got != n) throw mismatch(offset / static_cast<int64_t>(dtype_size(dtype)) + got);
  });
}

std::unique_ptr<Engine> MpiEngine::split(int color, const std::vector<int>& members, int new_rank,
                                         std::shared_ptr<Store>) {
  if (color < 0) return nullptr;
  // MPI_Comm_split would need every rank of this communicator, members of any new group or not; the
  // Engine contract only has the new group's members call, which MPI_Comm_create_group allows.
  MPI_Group parent = MPI_GROUP_NULL;
  MPI_Group group = MPI_GROUP_NULL;
  check(MPI_Comm_group(comm_, &parent), "MPI_Comm_group");
  int code = MPI_Group_incl(parent, static_cast<int>(members.size()), members.data(), &group);
  MPI_Group_free(&parent);
  check(code, "MPI_Group_incl");
  MPI_Comm comm = MPI_COMM_NULL;
  // Groups created at the same time are disjoint, so one tag serves them all.
  code = MPI_Comm_create_group(comm_, group, /*tag=*/0, &comm);
  MPI_Group_free(&group);
  check(code, "MPI_Comm_create_group");
  auto engine = std::make_unique<MpiEngine>(comm);
  if (engine->rank() != new_rank || engine->size() != static_cast<int>(members.size())) {
    throw CollectiveError(CollectiveFailure::kEngine,
                          str_cat("mpi: split: the new communicator has this process as rank ",
                                  engine->rank(), " of ", engine->size(), ", expected rank ", new_rank,
                                  " of ", members.size()));
  }
  return engine;
}

std::unique_ptr<Engine> make_mpi_engine(const EngineConfig& config) {
  int initialized = 0;
  check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (mpi_finalized()) {
    throw CollectiveError(CollectiveFailure::kEngine,
                          "mpi: MPI was already finalized in this process and cannot be initialized again");
  }
  int provided = MPI_THREAD_SINGLE;
  if (initialized) {
    check(MPI_Query_thread(&provided), "MPI_Query_thread");
  } else {
    // SERIALIZED, not MULTIPLE: the communicator never calls MPI from two threads at once, and Open MPI's
    // MULTIPLE mode costs about 0.1-0.45 us more per small collective here (its locks). SINGLE (asked
    // for) is faster still (Open MPI takes no locks at all), but then every op runs on the calling thread.
    int wanted = config.mpi_thread_single ? MPI_THREAD_SINGLE : MPI_THREAD_SERIALIZED;
    check(MPI_Init_thread(nullptr, nullptr, wanted, &provided), "MPI_Init_thread");
    std::atexit([] {
      if (!mpi_finalized()) MPI_Finalize();
    });
  }
  // Below SERIALIZED (SINGLE or FUNNELED, asked for or set by the program's own MPI_Init) the engine is
  // inline_only(): the communicator never calls it from its progress thread.
  int rank = 0;
  int size = 0;
  check(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size");
  GF_CHECK(rank == config.rank && size == config.size, ValueError,
           "mpi backend: this process is MPI rank ", rank, " of ", size,
           " but the communicator was asked for rank ", config.rank, " of ", config.size);
  MPI_Comm comm = MPI_COMM_NULL;
  check(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "MPI_Comm_dup");
  return std::make_unique<MpiEngine>(comm);
}

}  // namespace gradflow::distributed
