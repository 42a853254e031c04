// Dense, Flatten, Reshape, Dropout, Activation.
#include "core/nn/layers.h"
#include "core/ops/ops.h"

namespace gradflow {

Tensor apply_activation(const std::string& name, const Tensor& x) {
  if (name.empty() || name == "linear") return x;
  if (name == "relu") return relu(x);
  if (name == "gelu") return gelu(x);
  if (name == "tanh") return tanh(x);
  if (name == "sigmoid") return sigmoid(x);
  if (name == "softmax") return softmax(x, -1);
  if (name == "softplus") return softplus(x);
  throw ValueError(str_cat("unknown activation '", name, "' (expected relu, gelu, tanh, sigmoid, softmax, softplus or linear)"));
}

namespace {

void check_activation(const std::string& name) { apply_activation(name, zeros({1})); }

class DenseImpl : public LayerImpl {
 public:
  DenseImpl(int64_t units, DenseOptions o) : LayerImpl("dense", o.name), units_(units), options_(std::move(o)) {
    if (units <= 0) throw ValueError(str_cat("Dense: units must be positive, got ", units));
    check_activation(options_.activation);
    if (options_.input_shape) set_input_shape(*options_.input_shape);
  }

 protected:
  void build(const std::vector<Shape>& shapes) override {
    const Shape& s = shapes.at(0);
    if (s.size() < 2) throw ShapeError(str_cat(name(), ": Dense needs inputs of rank >= 2, got ", shape_str(s)));
    kernel_ = add_weight("kernel", {s.back(), units_}, initializers::get(options_.kernel_initializer));
    if (options_.use_bias) bias_ = add_weight("bias", {units_}, initializers::get(options_.bias_initializer));
  }
  Tensor call(const Tensor& x, bool) override {
    if (x.dim(-1) != kernel_.shape()[0]) {
      throw ShapeError(str_cat(name(), ": expected ", kernel_.shape()[0], " input features, got input ",
                               shape_str(x.shape())));
    }
    Tensor y = matmul(x, kernel_.value());
    if (options_.use_bias) y = add(y, bias_.value());
    return apply_activation(options_.activation, y);
  }

 private:
  int64_t units_;
  DenseOptions options_;
  Variable kernel_, bias_;
};

class FlattenImpl : public LayerImpl {
 public:
  FlattenImpl(std::optional<Shape> input_shape, std::string name) : LayerImpl("flatten", std::move(name)) {
    if (input_shape) set_input_shape(*input_shape);
  }

 protected:
  Tensor call(const Tensor& x, bool) override { return x.reshape({x.rank() == 0 ? 1 : x.dim(0), -1}); }
};

class ReshapeImpl : public LayerImpl {
 public:
  ReshapeImpl(Shape target, std::string name) : LayerImpl("reshape", std::move(name)), target_(std::move(target)) {}

 protected:
  Tensor call(const Tensor& x, bool) override {
    Shape s{x.dim(0)};
    s.insert(s.end(), target_.begin(), target_.end());
    return x.reshape(s);
  }

 private:
  Shape target_;
};

class DropoutImpl : public LayerImpl {
 public:
  DropoutImpl(double rate, std::optional<uint64_t> seed, std::string name)
      : LayerImpl("dropout", std::move(name)), rate_(rate), seed_(seed) {
    if (!(rate >= 0 && rate < 1)) throw ValueError(str_cat("Dropout: rate ", rate, " is not in [0, 1)"));
  }

 protected:
  Tensor call(const Tensor& x, bool training) override {
    if (!training || rate_ == 0) return x;
    // A fixed seed still varies per step: each call draws from the next stream of that seed.
    std::optional<uint64_t> seed;
    if (seed_) seed = *seed_ + 0x9E3779B97F4A7C15ull * ++calls_;
    return dropout(x, rate_, seed);
  }

 private:
  double rate_;
  std::optional<uint64_t> seed_;
  uint64_t calls_ = 0;
};

class ActivationImpl : public LayerImpl {
 public:
  ActivationImpl(std::string activation, std::string name)
      : LayerImpl("activation", std::move(name)), activation_(std::move(activation)) {
    check_activation(activation_);
  }

 protected:
  Tensor call(const Tensor& x, bool) override { return apply_activation(activation_, x); }

 private:
  std::string activation_;
};

}  // namespace

Layer Dense(int64_t units, DenseOptions options) { return Layer(std::make_shared<DenseImpl>(units, std::move(options))); }
Layer Flatten(std::optional<Shape> input_shape, std::string name) {
  return Layer(std::make_shared<FlattenImpl>(std::move(input_shape), std::move(name)));
}
Layer Reshape(Shape target_shape, std::string name) {
  return Layer(std::make_shared<ReshapeImpl>(std::move(target_shape), std::move(name)));
}
Layer Dropout(double rate, std::optional<uint64_t> seed, std::string name) {
  return Layer(std::make_shared<DropoutImpl>(rate, seed, std::move(name)));
}
Layer Activation(const std::string& activation, std::string name) {
  return Layer(std::make_shared<ActivationImpl>(activation, std::move(name)));
}

}  // namespace gradflow
