// LocalDeviceGroup over NCCL (distributed/comm/local_device_group.h).
#include <nccl.h>

#include <algorithm>

#include "core/tensor/cuda/cuda_device.h"
#include "core/tensor/error.h"
#include "core/ops/ops.h"
#include "core/tensor/creation.h"
#include "distributed/comm/local_device_group.h"
#include "distributed/nccl/nccl_common.h"

namespace gradflow::distributed {
namespace {

using nccl_internal::group;
using nccl_internal::nccl_dtype;
using nccl_internal::nccl_error;

class NcclLocalGroup final : public LocalDeviceGroup {
 public:
  explicit NcclLocalGroup(std::vector<int> devices) : devices_(std::move(devices)), comms_(devices_.size(), nullptr) {
    ncclResult_t result = ncclCommInitAll(comms_.data(), static_cast<int>(devices_.size()), devices_.data());
    if (result != ncclSuccess) {
      std::fill(comms_.begin(), comms_.end(), nullptr);
      throw CollectiveError(CollectiveFailure::kEngine,
                            str_cat("nccl: ncclCommInitAll over ", describe(), ": ", nccl_error(nullptr, result)));
    }
  }
  ~NcclLocalGroup() override {
    for (ncclComm_t comm : comms_) {
      if (comm != nullptr) ncclCommDestroy(comm);
    }
  }

  const std::vector<int>& devices() const override { return devices_; }

  std::vector<Tensor> all_reduce_sum(const std::vector<Tensor>& values) override {
    check(values, "all_reduce_sum");
    std::vector<Tensor> in(values.size()), out(values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      in[i] = values[i].contiguous();
      out[i] = empty(in[i].shape(), in[i].dtype(), in[i].device());
    }
    const ncclDataType_t type = nccl_dtype(in[0].dtype());
    ncclResult_t result = group([&] {
      for (size_t i = 0; i < in.size(); ++i) {
        ncclResult_t r = ncclAllReduce(in[i].raw_data(), out[i].raw_data(), static_cast<size_t>(in[i].numel()), type,
                                       ncclSum, comms_[i], cuda::stream(devices_[i]));
        if (r != ncclSuccess) return r;
      }
      return ncclSuccess;
    });
    fail_on(result, "ncclAllReduce");
    return out;
  }

  std::vector<Tensor> reduce_sum(const std::vector<std::vector<Tensor>>& values, int root) override {
    check_root(values.size(), root, "reduce_sum");
    const size_t count = values[0].size();
    std::vector<std::vector<Tensor>> in(values.size());
    for (size_t m = 0; m < values.size(); ++m) {
      if (values[m].size() != count) {
        throw ValueError(str_cat("nccl local group: reduce_sum: member ", m, " passed ", values[m].size(),
                                 " tensors, member 0 ", count));
      }
    }
    std::vector<Tensor> column(values.size()), out(count);
    for (size_t i = 0; i < count; ++i) {
      for (size_t m = 0; m < values.size(); ++m) column[m] = values[m][i];
      check(column, str_cat("reduce_sum of tensor ", i).c_str());
      for (size_t m = 0; m < values.size(); ++m) in[m].push_back(values[m][i].contiguous());
      out[i] = empty(in[root][i].shape(), in[root][i].dtype(), in[root][i].device());
    }
    ncclResult_t result = group([&] {
      for (size_t i = 0; i < count; ++i) {
        const ncclDataType_t type = nccl_dtype(out[i].dtype());
        for (size_t m = 0; m < in.size(); ++m) {
          void* recv = static_cast<int>(m) == root ? out[i].raw_data() : nullptr;  // only the root's is used
          ncclResult_t r = ncclReduce(in[m][i].raw_data(), recv, static_cast<size_t>(out[i].numel()), type, ncclSum,
                                      root, comms_[m], cuda::stream(devices_[m]));
          if (r != ncclSuccess) return r;
        }
      }
      return ncclSuccess;
    });
    fail_on(result, "ncclReduce");
    return out;
  }

  void broadcast(const std::vector<Tensor>& values, int root) override {
    check(values, "broadcast");
    check_root(values.size(), root, "broadcast");
    for (size_t i = 0; i < values.size(); ++i) {
      if (!values[i].is_contiguous()) {
        throw ValueError(str_cat("nccl local group: broadcast: member ", i, "'s tensor is not contiguous"));
      }
    }
    const ncclDataType_t type = nccl_dtype(values[0].dtype());
    ncclResult_t result = group([&] {
      for (size_t i = 0; i < values.size(); ++i) {
        ncclResult_t r = ncclBroadcast(values[i].raw_data(), values[i].raw_data(), static_cast<size_t>(values[i].numel()),
                                       type, root, comms_[i], cuda::stream(devices_[i]));
        if (r != ncclSuccess) return r;
      }
      return ncclSuccess;
    });
    fail_on(result, "ncclBroadcast");
  }

 private:
  std::string describe() const {
    std::string text;
    for (int d : devices_) text += str_cat(text.empty() ? "" : ", ", "cuda:", d);
    return text;
  }

  void check_root(size_t members, int root, const char* op) const {
    throw_if_failed();
    if (members != devices_.size()) {
      throw ValueError(str_cat("nccl local group: ", op, " from ", members, " members over ", devices_.size(),
                               " devices (", describe(), ")"));
    }
    if (root < 0 || root >= static_cast<int>(members)) {
      throw ValueError(str_cat("nccl local group: ", op, " to or from member ", root, " of ", members));
    }
  }

  void check(const std::vector<Tensor>& values, const char* op) const {
    throw_if_failed();
    if (values.size() != devices_.size()) {
      throw ValueError(str_cat("nccl local group: ", op, " of ", values.size(), " tensors over ", devices_.size(),
                               " devices (", describe(), ")"));
    }
    for (size_t i = 0; i < values.size(); ++i) {
      const Tensor& v = values[i];
      if (!v.defined()) throw ValueError(str_cat("nccl local group: ", op, ": member ", i, "'s tensor is undefined"));
      if (v.device() != Device::cuda(devices_[i])) {
        throw ValueError(str_cat("nccl local group: ", op, ": member ", i, "'s tensor is on ", v.device().str(),
                                 ", not cuda:", devices_[i]));
      }
      if (v.shape() != values[0].shape() || v.dtype() != values[0].dtype()) {
        throw ValueError(str_cat("nccl local group: ", op, ": member ", i, " has ", shape_str(v.shape()), " ",
                                 dtype_name(v.dtype()), ", member 0 ", shape_str(values[0].shape()), " ",
                                 dtype_name(values[0].dtype())));
      }
    }
    if (values[0].dtype() == kBool) throw ValueError(str_cat("nccl local group: ", op, ": bool tensors"));
  }

  // A failed group may have launched on some devices only: those kernels would wait forever for the
  // others, and so would every later sync of their streams. Aborting the communicators ends them; the
  // group then refuses every later call.
  void fail_on(ncclResult_t result, const char* call) {
    if (result == ncclSuccess) return;
    failure_ = str_cat("nccl: ", call, " over ", describe(), ": ", nccl_error(nullptr, result));
    for (ncclComm_t& comm : comms_) {
      if (comm != nullptr) ncclCommAbort(comm);
      comm = nullptr;
    }
    throw CollectiveError(CollectiveFailure::kEngine, failure_);
  }
  void throw_if_failed() const {
    if (!failure_.empty()) {
      throw CollectiveError(CollectiveFailure::kAborted, str_cat(failure_, " (the group was aborted then)"));
    }
  }

  std::vector<int> devices_;
  std::vector<ncclComm_t> comms_;
  std::string failure_;  // set by the first failed call
};

}  // namespace

std::unique_ptr<LocalDeviceGroup> make_nccl_local_group(const std::vector<int>& devices) {
  return std::make_unique<NcclLocalGroup>(devices);
}

}  // namespace gradflow::distributed
