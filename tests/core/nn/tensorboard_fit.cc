// Fits a small model with the TensorBoard callback (batch scalars every 2 steps, weight histograms each
// epoch, validation data) into LOGDIR and prints the History as JSON, for tensorboard_callback_readback.py.
#include <iostream>

#include "core/gradflow.h"

using namespace gradflow;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tensorboard_fit LOGDIR\n";
    return 2;
  }
  set_seed(11);
  Tensor x = random_normal({64, 4}, 0, 1, kF32, kCPU, 1);
  Tensor y = (random_uniform({64}, 0, 3, kF32, kCPU, 2)).to(kI64);
  Sequential model({Dense(8, {.activation = "relu", .input_shape = Shape{4}}), Dense(3, {.activation = "softmax"})});
  model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
  History h = model.fit(x, y, {.epochs = 3, .batch_size = 16, .validation_data = ValidationData{x, y},
                               .callbacks = {TensorBoard({.log_dir = argv[1], .update_freq = "2", .histogram_freq = 1})},
                               .verbose = 0});
  std::cout << "{";
  bool first = true;
  for (const auto& [key, values] : h.history) {
    std::cout << (first ? "" : ", ") << "\"" << key << "\": [";
    for (size_t i = 0; i < values.size(); ++i) std::cout << (i ? ", " : "") << values[i];
    std::cout << "]";
    first = false;
  }
  std::cout << "}\n";
  return 0;
}
