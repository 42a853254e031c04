// Weight initializers with Keras' names and defaults. Each draws from the global Philox generator
// (core/tensor/random.h), so set_seed() makes model initialisation repeatable.
#pragma once

#include <functional>
#include <string>

#include "core/tensor/tensor.h"

namespace gradflow {

// Fills a new tensor of the given shape and dtype.
using Initializer = std::function<Tensor(const Shape& shape, DType dtype)>;

namespace initializers {
Initializer zeros();
Initializer ones();
Initializer constant(double value);
Initializer random_normal(double mean = 0, double stddev = 0.05);
Initializer random_uniform(double minval = -0.05, double maxval = 0.05);
Initializer truncated_normal(double mean = 0, double stddev = 0.05);
// Fan-in/fan-out: for a kernel [..., in, out], receptive field = product of the leading dims.
Initializer glorot_uniform();
Initializer glorot_normal();  // truncated normal, stddev sqrt(2 / (fan_in + fan_out)) / 0.8796
Initializer he_uniform();
Initializer he_normal();
Initializer orthogonal(double gain = 1.0);  // for 2-D shapes (Keras' LSTM recurrent kernels)
// By Keras name ("glorot_uniform", "zeros", ...); ValueError for unknown names.
Initializer get(const std::string& name);
}  // namespace initializers

}  // namespace gradflow
