// batch and padded_batch: gather batch_size elements in one next() call and stack them component-wise;
// merge_batches: join them along axis 0 instead. Nothing is held between calls, so the state is the
// input's.
#include <algorithm>
#include <cstring>

#include "core/data/internal.h"
#include "core/ops/ops.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

struct BatchSpec {
  int64_t batch_size;
  bool drop_remainder;
  bool padded;
  std::vector<Shape> padded_shapes;   // per component; empty: pad every dimension to the batch's longest
  std::vector<double> padding_values;  // per component; empty: 0
  bool concat = false;                 // merge_batches: join along axis 0 rather than stack
};

void check_components(std::string_view op, const std::vector<Element>& elements) {
  for (size_t i = 1; i < elements.size(); ++i) {
    if (elements[i].size() != elements[0].size()) {
      throw ShapeError(str_cat(op, ": element ", i, " of the batch has ", elements[i].size(),
                               " components but element 0 has ", elements[0].size()));
    }
  }
}

// stack(parts), each part copied straight into its row of one new tensor (stack would first make a view
// of every part through the op registry, then concatenate).
Tensor stack_rows(const std::vector<Tensor>& parts) {
  const Tensor& first = parts[0];
  for (const Tensor& t : parts) {
    if (t.device() != first.device()) return stack(parts);  // its error names the devices
  }
  Shape shape = first.shape();
  shape.insert(shape.begin(), static_cast<int64_t>(parts.size()));
  Tensor out = empty(shape, first.dtype(), first.device());
  const Strides& strides = out.strides();
  const Strides row_strides(strides.begin() + 1, strides.end());
  const size_t row_bytes = static_cast<size_t>(first.numel()) * dtype_size(first.dtype());
  for (size_t i = 0; i < parts.size(); ++i) {
    const int64_t offset = static_cast<int64_t>(i) * strides[0];
    if (first.device().is_cpu() && parts[i].is_contiguous()) {
      if (row_bytes > 0) std::memcpy(static_cast<char*>(out.raw_data()) + offset * dtype_size(first.dtype()), parts[i].raw_data(), row_bytes);
    } else {
      copy_into(make_view(out, first.shape(), row_strides, offset), parts[i]);
    }
  }
  return out;
}

Element stack_batch(const std::vector<Element>& elements) {
  check_components("batch", elements);
  Element out;
  for (size_t c = 0; c < elements[0].size(); ++c) {
    std::vector<Tensor> parts;
    for (size_t i = 0; i < elements.size(); ++i) {
      const Tensor& t = elements[i][c];
      if (t.shape() != elements[0][c].shape()) {
        throw ShapeError(str_cat("batch: element ", i, " of the batch has component ", c, " of shape ",
                                 shape_str(t.shape()), " but element 0 has ", shape_str(elements[0][c].shape()),
                                 " (padded_batch pads varying shapes)"));
      }
      if (t.dtype() != elements[0][c].dtype()) {
        throw DTypeError(str_cat("batch: element ", i, " of the batch has component ", c, " of dtype ",
                                 dtype_name(t.dtype()), " but element 0 has ", dtype_name(elements[0][c].dtype())));
      }
      parts.push_back(t);
    }
    out.push_back(stack_rows(parts));
  }
  return out;
}

Element concat_batch(const std::vector<Element>& elements) {
  check_components("merge_batches", elements);
  Element out;
  for (size_t c = 0; c < elements[0].size(); ++c) {
    std::vector<Tensor> parts;
    for (size_t i = 0; i < elements.size(); ++i) {
      const Tensor& t = elements[i][c];
      const Tensor& first = elements[0][c];
      bool same_rows_shape = t.rank() == first.rank() && t.rank() >= 1;
      for (int d = 1; same_rows_shape && d < t.rank(); ++d) same_rows_shape = t.shape()[d] == first.shape()[d];
      if (!same_rows_shape) {
        throw ShapeError(str_cat("merge_batches: element ", i, " has component ", c, " of shape ", shape_str(t.shape()),
                                 " but element 0 has ", shape_str(first.shape()),
                                 ": they must be batches that differ only in axis 0"));
      }
      if (t.dtype() != first.dtype()) {
        throw DTypeError(str_cat("merge_batches: element ", i, " has component ", c, " of dtype ",
                                 dtype_name(t.dtype()), " but element 0 has ", dtype_name(first.dtype())));
      }
      parts.push_back(t);
    }
    out.push_back(parts.size() == 1 ? parts[0] : concat(parts, 0));
  }
  return out;
}

// The padded shape of component c: the spec's dimension where given, else the batch's longest.
Shape padded_shape(const BatchSpec& spec, const std::vector<Element>& elements, size_t c) {
  const Tensor& first = elements[0][c];
  Shape target(first.rank(), 0);
  for (size_t i = 0; i < elements.size(); ++i) {
    const Tensor& t = elements[i][c];
    if (t.rank() != first.rank()) {
      throw ShapeError(str_cat("padded_batch: element ", i, " of the batch has component ", c, " of shape ",
                               shape_str(t.shape()), " but element 0 has ", shape_str(first.shape()),
                               ": ranks differ"));
    }
    for (int d = 0; d < t.rank(); ++d) target[d] = std::max(target[d], t.shape()[d]);
  }
  if (c < spec.padded_shapes.size() && !spec.padded_shapes[c].empty()) {
    const Shape& want = spec.padded_shapes[c];
    if (static_cast<int>(want.size()) != first.rank()) {
      throw ShapeError(str_cat("padded_batch: padded shape ", shape_str(want), " for component ", c,
                               " does not have the rank of its elements (", shape_str(first.shape()), ")"));
    }
    for (int d = 0; d < first.rank(); ++d) {
      if (want[d] < 0) continue;
      for (size_t i = 0; i < elements.size(); ++i) {
        if (elements[i][c].shape()[d] > want[d]) {
          throw ShapeError(str_cat("padded_batch: element ", i, " of the batch has component ", c, " of shape ",
                                   shape_str(elements[i][c].shape()), ", larger than its padded shape ",
                                   shape_str(want)));
        }
      }
      target[d] = want[d];
    }
  }
  return target;
}

// t grown to `target` by appending `value` along each short dimension.
Tensor pad_to(const Tensor& t, const Shape& target, double value) {
  Tensor out = t;
  for (int d = 0; d < t.rank(); ++d) {
    int64_t missing = target[d] - out.shape()[d];
    if (missing == 0) continue;
    Shape fill_shape = out.shape();
    fill_shape[d] = missing;
    out = concat({out, full(fill_shape, value, t.dtype(), t.device())}, d);
  }
  return out;
}

Element pad_batch(const BatchSpec& spec, const std::vector<Element>& elements) {
  check_components("padded_batch", elements);
  Element out;
  for (size_t c = 0; c < elements[0].size(); ++c) {
    Shape target = padded_shape(spec, elements, c);
    double value = c < spec.padding_values.size() ? spec.padding_values[c] : 0.0;
    std::vector<Tensor> parts;
    for (size_t i = 0; i < elements.size(); ++i) {
      const Tensor& t = elements[i][c];
      if (t.dtype() != elements[0][c].dtype()) {
        throw DTypeError(str_cat("padded_batch: element ", i, " of the batch has component ", c, " of dtype ",
                                 dtype_name(t.dtype()), " but element 0 has ", dtype_name(elements[0][c].dtype())));
      }
      parts.push_back(pad_to(t, target, value));
    }
    out.push_back(stack(parts));
  }
  return out;
}

class BatchIterator : public IteratorImpl {
 public:
  BatchIterator(std::string_view op, const BatchSpec& spec, const DatasetNode& input, const State* state)
      : op_(op), spec_(spec) {
    if (state != nullptr) {
      check_state(*state, op_);
      input_done_ = state->at("input_done").get<bool>();
    }
    input_ = restore_input(input, state, "input");
  }
  std::optional<Element> next() override {
    std::vector<Element> elements;
    while (!input_done_ && static_cast<int64_t>(elements.size()) < spec_.batch_size) {
      std::optional<Element> e = input_->next();
      if (!e) {
        input_done_ = true;
      } else {
        elements.push_back(std::move(*e));
      }
    }
    if (elements.empty()) return std::nullopt;
    if (static_cast<int64_t>(elements.size()) < spec_.batch_size && spec_.drop_remainder) return std::nullopt;
    if (spec_.concat) return concat_batch(elements);
    return spec_.padded ? pad_batch(spec_, elements) : stack_batch(elements);
  }
  // The batch's elements skipped in turn, nothing stacked (nor checked: whoever takes that batch does).
  bool skip() override {
    int64_t taken = 0;
    while (!input_done_ && taken < spec_.batch_size) {
      if (input_->skip()) {
        ++taken;
      } else {
        input_done_ = true;
      }
    }
    return taken > 0 && !(taken < spec_.batch_size && spec_.drop_remainder);
  }
  State save() override {
    State s = new_state(op_);
    s["input_done"] = input_done_;
    s["input"] = input_->save();
    return s;
  }

 private:
  std::string_view op_;
  const BatchSpec& spec_;
  bool input_done_ = false;
  std::unique_ptr<IteratorImpl> input_;
};

class BatchNode : public DatasetNode {
 public:
  BatchNode(NodePtr input, BatchSpec spec) : input_(std::move(input)), spec_(std::move(spec)) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    return std::make_unique<BatchIterator>(op(), spec_, *input_, state);
  }
  int64_t cardinality() const override {
    int64_t c = input_->cardinality();
    if (c < 0) return c;
    return spec_.drop_remainder ? c / spec_.batch_size : (c + spec_.batch_size - 1) / spec_.batch_size;
  }
  std::string_view op() const override {
    return spec_.concat ? "merge_batches" : spec_.padded ? "padded_batch" : "batch";
  }
  std::vector<NodePtr> inputs() const override { return {input_}; }
  NodePtr with_inputs(std::vector<NodePtr> in) const override {
    return std::make_shared<BatchNode>(in.at(0), spec_);
  }

 private:
  NodePtr input_;
  BatchSpec spec_;
};

}  // namespace
}  // namespace data_internal

Dataset Dataset::batch(int64_t batch_size, bool drop_remainder) const {
  GF_CHECK(batch_size >= 1, ValueError, "batch: batch_size must be >= 1, got ", batch_size);
  return Dataset(std::make_shared<data_internal::BatchNode>(
      node(), data_internal::BatchSpec{batch_size, drop_remainder, false, {}, {}}));
}

Dataset Dataset::padded_batch(int64_t batch_size, std::vector<Shape> padded_shapes, std::vector<double> padding_values,
                              bool drop_remainder) const {
  GF_CHECK(batch_size >= 1, ValueError, "padded_batch: batch_size must be >= 1, got ", batch_size);
  return Dataset(std::make_shared<data_internal::BatchNode>(
      node(), data_internal::BatchSpec{batch_size, drop_remainder, true, std::move(padded_shapes),
                                       std::move(padding_values)}));
}

Dataset Dataset::merge_batches(int64_t n) const {
  GF_CHECK(n >= 1, ValueError, "merge_batches: n must be >= 1, got ", n);
  return Dataset(std::make_shared<data_internal::BatchNode>(
      node(), data_internal::BatchSpec{n, false, false, {}, {}, true}));
}

}  // namespace gradflow
