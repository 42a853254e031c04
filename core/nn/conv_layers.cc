// Conv2D, MaxPool2D, AvgPool2D, GlobalAveragePooling2D (channels last).
#include "core/nn/layers.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

Padding parse_padding(const std::string& layer, const std::string& padding) {
  if (padding == "valid") return Padding::kValid;
  if (padding == "same") return Padding::kSame;
  throw ValueError(str_cat(layer, ": padding must be \"valid\" or \"same\", got \"", padding, "\""));
}

class Conv2DImpl : public LayerImpl {
 public:
  Conv2DImpl(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DLayerOptions o)
      : LayerImpl("conv2d", o.name), filters_(filters), kernel_size_(kernel_size), options_(std::move(o)) {
    if (filters <= 0) throw ValueError(str_cat("Conv2D: filters must be positive, got ", filters));
    conv_ = {.strides = options_.strides, .padding = parse_padding("Conv2D", options_.padding),
             .dilation = options_.dilation_rate};
    apply_activation(options_.activation, zeros({1}));
    if (options_.input_shape) set_input_shape(*options_.input_shape);
  }

 protected:
  void build(const std::vector<Shape>& shapes) override {
    const Shape& s = shapes.at(0);
    if (s.size() != 4) throw ShapeError(str_cat(name(), ": Conv2D needs [batch, h, w, channels], got ", shape_str(s)));
    kernel_ = add_weight("kernel", {kernel_size_[0], kernel_size_[1], s[3], filters_},
                         initializers::get(options_.kernel_initializer));
    if (options_.use_bias) bias_ = add_weight("bias", {filters_}, initializers::get(options_.bias_initializer));
  }
  Tensor call(const Tensor& x, bool) override {
    Tensor y = conv2d(x, kernel_.value(), conv_);
    if (options_.use_bias) y = add(y, bias_.value());
    return apply_activation(options_.activation, y);
  }

 private:
  int64_t filters_;
  std::array<int64_t, 2> kernel_size_;
  Conv2DLayerOptions options_;
  Conv2DOptions conv_;
  Variable kernel_, bias_;
};

class PoolImpl : public LayerImpl {
 public:
  PoolImpl(bool max, std::array<int64_t, 2> pool_size, PoolOptions o)
      : LayerImpl(max ? "max_pooling2d" : "average_pooling2d", o.name), max_(max) {
    pool_ = {.pool_size = pool_size, .strides = o.strides.value_or(pool_size),
             .padding = parse_padding(type_name(), o.padding)};
  }

 protected:
  Tensor call(const Tensor& x, bool) override { return max_ ? max_pool2d(x, pool_) : avg_pool2d(x, pool_); }

 private:
  bool max_;
  Pool2DOptions pool_;
};

class GlobalAveragePooling2DImpl : public LayerImpl {
 public:
  explicit GlobalAveragePooling2DImpl(std::string name) : LayerImpl("global_average_pooling2d", std::move(name)) {}

 protected:
  Tensor call(const Tensor& x, bool) override {
    if (x.rank() != 4) {
      throw ShapeError(str_cat(name(), ": needs [batch, h, w, channels], got ", shape_str(x.shape())));
    }
    return mean(x, {1, 2});
  }
};

}  // namespace

Layer Conv2D(int64_t filters, std::array<int64_t, 2> kernel_size, Conv2DLayerOptions options) {
  return Layer(std::make_shared<Conv2DImpl>(filters, kernel_size, std::move(options)));
}
Layer MaxPool2D(std::array<int64_t, 2> pool_size, PoolOptions options) {
  return Layer(std::make_shared<PoolImpl>(true, pool_size, std::move(options)));
}
Layer AvgPool2D(std::array<int64_t, 2> pool_size, PoolOptions options) {
  return Layer(std::make_shared<PoolImpl>(false, pool_size, std::move(options)));
}
Layer GlobalAveragePooling2D(std::string name) {
  return Layer(std::make_shared<GlobalAveragePooling2DImpl>(std::move(name)));
}

}  // namespace gradflow
