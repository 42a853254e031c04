// Sources: range, from_tensor_slices, from_tensors and from_generator. Their position is a counter,
// except a generator's, which is opaque.
#include "core/data/internal.h"
#include "core/tensor/creation.h"
#include "core/tensor/error.h"

namespace gradflow {
namespace data_internal {
namespace {

// Elements 0..count-1, each made by element(i): shared by range and from_tensor_slices.
class IndexedIterator : public IteratorImpl {
 public:
  IndexedIterator(std::string_view op, int64_t count, std::function<Element(int64_t)> element, const State* state)
      : op_(op), count_(count), element_(std::move(element)) {
    if (state != nullptr) {
      check_state(*state, op_);
      index_ = state->at("index").get<int64_t>();
      if (index_ < 0 || index_ > count_) {
        throw ValueError(str_cat("restore: ", op_, " position ", index_, " is outside [0, ", count_, "]"));
      }
    }
  }
  std::optional<Element> next() override {
    if (index_ >= count_) return std::nullopt;
    return element_(index_++);
  }
  bool skip() override {  // an element is a function of its index alone
    if (index_ >= count_) return false;
    ++index_;
    return true;
  }
  State save() override {
    State s = new_state(op_);
    s["index"] = index_;
    return s;
  }

 private:
  std::string_view op_;
  int64_t count_;
  std::function<Element(int64_t)> element_;
  int64_t index_ = 0;
};

class RangeNode : public DatasetNode {
 public:
  RangeNode(int64_t start, int64_t stop, int64_t step) : start_(start), step_(step) {
    int64_t span = stop - start;
    count_ = step > 0 ? (span > 0 ? (span + step - 1) / step : 0) : (span < 0 ? (-span + -step - 1) / -step : 0);
  }
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    int64_t start = start_, step = step_;
    return std::make_unique<IndexedIterator>(
        op(), count_,
        [start, step](int64_t i) { return Element{from_vector<int64_t>({start + i * step}, Shape{})}; }, state);
  }
  int64_t cardinality() const override { return count_; }
  std::string_view op() const override { return "range"; }
  NodePtr with_inputs(std::vector<NodePtr>) const override { throw StateError("with_inputs on a source"); }

 private:
  int64_t start_, step_, count_;
};

// Row i of c as a view: what c.slice(0, i, i + 1).squeeze(0) gives, without two trips through the op
// registry per component of every element (an epoch of Fashion-MNIST has 60,000).
Tensor row_view(const Tensor& c, int64_t i) {
  Shape shape(c.shape().begin() + 1, c.shape().end());
  Strides strides(c.strides().begin() + 1, c.strides().end());
  return make_view(c, std::move(shape), std::move(strides), c.offset() + i * c.strides()[0]);
}

class TensorSlicesNode : public DatasetNode {
 public:
  explicit TensorSlicesNode(std::vector<Tensor> components) : components_(std::move(components)) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    const std::vector<Tensor>& components = components_;
    return std::make_unique<IndexedIterator>(
        op(), cardinality(),
        [&components](int64_t i) {
          Element e;
          e.reserve(components.size());
          for (const Tensor& c : components) e.push_back(row_view(c, i));
          return e;
        },
        state);
  }
  int64_t cardinality() const override { return components_[0].dim(0); }
  std::string_view op() const override { return "from_tensor_slices"; }
  NodePtr with_inputs(std::vector<NodePtr>) const override { throw StateError("with_inputs on a source"); }

 private:
  std::vector<Tensor> components_;
};

class TensorsNode : public DatasetNode {
 public:
  explicit TensorsNode(Element element) : element_(std::move(element)) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    const Element& element = element_;
    return std::make_unique<IndexedIterator>(op(), 1, [&element](int64_t) { return element; }, state);
  }
  int64_t cardinality() const override { return 1; }
  std::string_view op() const override { return "from_tensors"; }
  NodePtr with_inputs(std::vector<NodePtr>) const override { throw StateError("with_inputs on a source"); }

 private:
  Element element_;
};

class GeneratorIterator : public IteratorImpl {
 public:
  explicit GeneratorIterator(GeneratorFn fn) : fn_(std::move(fn)) {}
  std::optional<Element> next() override {
    if (done_) return std::nullopt;
    std::optional<Element> e = fn_();
    if (!e) done_ = true;
    return e;
  }
  State save() override {
    throw StateError(
        "from_generator: an iterator over a generator cannot be saved (its position is opaque); build the "
        "pipeline from range/from_tensor_slices and map, or cache() it to a file");
  }

 private:
  GeneratorFn fn_;
  bool done_ = false;
};

class GeneratorNode : public DatasetNode {
 public:
  explicit GeneratorNode(GeneratorFactory factory) : factory_(std::move(factory)) {}
  std::unique_ptr<IteratorImpl> make_iterator(const State* state) const override {
    if (state != nullptr) check_state(*state, op());  // never saved, so any state here is for another op
    GeneratorFn fn = factory_();
    GF_CHECK(fn != nullptr, ValueError, "from_generator: the factory returned an empty function");
    return std::make_unique<GeneratorIterator>(std::move(fn));
  }
  int64_t cardinality() const override { return Dataset::kUnknown; }
  std::string_view op() const override { return "from_generator"; }
  NodePtr with_inputs(std::vector<NodePtr>) const override { throw StateError("with_inputs on a source"); }

 private:
  GeneratorFactory factory_;
};

}  // namespace
}  // namespace data_internal

Dataset Dataset::range(int64_t start, int64_t stop, int64_t step) {
  GF_CHECK(step != 0, ValueError, "range: step must not be 0 (start ", start, ", stop ", stop, ")");
  return Dataset(std::make_shared<data_internal::RangeNode>(start, stop, step));
}

Dataset Dataset::from_tensor_slices(std::vector<Tensor> components) {
  GF_CHECK(!components.empty(), ValueError, "from_tensor_slices: no tensors given");
  for (size_t i = 0; i < components.size(); ++i) {
    const Tensor& c = components[i];
    GF_CHECK(c.defined(), ValueError, "from_tensor_slices: component ", i, " is an undefined tensor");
    GF_CHECK(c.rank() >= 1, ShapeError, "from_tensor_slices: component ", i,
             " is a scalar; slicing needs rank >= 1 (use from_tensors)");
    if (c.dim(0) != components[0].dim(0)) {
      throw ShapeError(str_cat("from_tensor_slices: component ", i, " has shape ", shape_str(c.shape()),
                               " but component 0 has ", shape_str(components[0].shape()), ": first dimensions ",
                               components[0].dim(0), " and ", c.dim(0), " differ"));
    }
  }
  return Dataset(std::make_shared<data_internal::TensorSlicesNode>(std::move(components)));
}

Dataset Dataset::from_tensors(Element element) {
  GF_CHECK(!element.empty(), ValueError, "from_tensors: no tensors given");
  for (size_t i = 0; i < element.size(); ++i) {
    GF_CHECK(element[i].defined(), ValueError, "from_tensors: component ", i, " is an undefined tensor");
  }
  return Dataset(std::make_shared<data_internal::TensorsNode>(std::move(element)));
}

Dataset Dataset::from_generator(GeneratorFactory factory) {
  GF_CHECK(factory != nullptr, ValueError, "from_generator: empty factory");
  return Dataset(std::make_shared<data_internal::GeneratorNode>(std::move(factory)));
}

}  // namespace gradflow
