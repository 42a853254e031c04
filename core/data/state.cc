// The JSON form of iterator state: nesting helpers, tensors and elements as bytes, and errors carried by
// background threads.
#include <cstring>
#include <thread>

#include "core/data/internal.h"
#include "core/tensor/error.h"

namespace gradflow::data_internal {

State new_state(std::string_view op) {
  State s = State::object();
  s["op"] = std::string(op);
  return s;
}

void check_state(const State& state, std::string_view op) {
  if (!state.is_object() || !state.contains("op") || !state["op"].is_string()) {
    throw ValueError(str_cat("restore: malformed iterator state where the pipeline has '", op, "'"));
  }
  const std::string& saved = state["op"].get_ref<const std::string&>();
  if (saved != op) {
    throw ValueError(str_cat("restore: the state was saved from '", saved, "' but the pipeline has '", op,
                             "' at this point (was the pipeline changed?)"));
  }
}

std::unique_ptr<IteratorImpl> restore_input(const DatasetNode& input, const State* state, const char* key) {
  if (state == nullptr || !state->contains(key) || (*state)[key].is_null()) return input.make_iterator(nullptr);
  return input.make_iterator(&(*state)[key]);
}

State tensor_to_state(const Tensor& t) {
  Tensor c = t.cpu().contiguous();
  State s = State::object();
  s["dtype"] = std::string(dtype_name(c.dtype()));
  s["shape"] = std::vector<int64_t>(c.shape().begin(), c.shape().end());
  const auto* bytes = static_cast<const uint8_t*>(c.raw_data());
  s["data"] = State::binary(std::vector<uint8_t>(bytes, bytes + c.numel() * dtype_size(c.dtype())));
  return s;
}

Tensor tensor_from_state(const State& s) {
  DType dtype = dtype_from_name(s.at("dtype").get<std::string>());
  std::vector<int64_t> dims = s.at("shape").get<std::vector<int64_t>>();
  const auto& data = s.at("data").get_binary();
  Shape shape(dims.begin(), dims.end());
  for (int64_t d : dims) {
    if (d < 0) throw ValueError(str_cat("restore: negative dimension in saved tensor shape ", shape_str(shape)));
  }
  size_t expected = static_cast<size_t>(numel(shape)) * dtype_size(dtype);
  if (data.size() != expected) {
    throw ValueError(str_cat("restore: saved tensor ", shape_str(shape), " ", dtype_name(dtype), " holds ",
                             data.size(), " bytes, expected ", expected));
  }
  Tensor t = empty(shape, dtype);
  if (expected > 0) std::memcpy(t.raw_data(), data.data(), expected);
  return t;
}

State element_to_state(const Element& e) {
  State s = State::array();
  for (const Tensor& t : e) s.push_back(tensor_to_state(t));
  return s;
}

Element element_from_state(const State& s) {
  Element e;
  for (const State& t : s) e.push_back(tensor_from_state(t));
  return e;
}

int64_t autotune_parallelism() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int64_t>(n);
}

Result next_result(IteratorImpl& it) {
  Result r;
  try {
    r.element = it.next();
  } catch (...) {
    r.error = std::current_exception();
  }
  return r;
}

std::optional<Element> unwrap(Result r) {
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.element);
}

State error_to_state(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

std::exception_ptr error_from_state(const State& s) { return std::make_exception_ptr(Error(s.get<std::string>())); }

State result_to_state(const Result& r) {
  State s = State::object();
  if (r.error) s["error"] = error_to_state(r.error);
  if (r.element) s["element"] = element_to_state(*r.element);
  return s;
}

Result result_from_state(const State& s) {
  Result r;
  if (s.contains("error")) r.error = error_from_state(s["error"]);
  if (s.contains("element")) r.element = element_from_state(s["element"]);
  return r;
}

}  // namespace gradflow::data_internal

namespace gradflow {

std::string IteratorState::debug_string() const {
  using data_internal::State;
  State s;
  try {
    s = State::from_cbor(bytes_);
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(str_cat("IteratorState: not a saved iterator state (", e.what(), ")"));
  }
  // Tensors become "f32[2,3]" so the structure stays readable.
  std::function<void(State&)> shorten = [&](State& node) {
    if (node.is_object() && node.contains("dtype") && node.contains("data") && node["data"].is_binary()) {
      std::vector<int64_t> dims = node["shape"].get<std::vector<int64_t>>();
      node = str_cat(node["dtype"].get<std::string>(), shape_str(Shape(dims.begin(), dims.end())));
      return;
    }
    if (node.is_structured()) {
      for (State& child : node) shorten(child);
    }
  };
  shorten(s);
  return s.dump(2);
}

}  // namespace gradflow
