// For checkpoint_interop.py: `write_checkpoint DIR` trains a small model three Adam steps, saves it with
// CheckpointManager into DIR/ckpts, and writes DIR/expected.json: the checkpoint's path and every tensor
// it should hold (model variables, optimizer slots, "iteration") with its dtype, shape and values, for
// Python to compare with what it loads. Exits non-zero with a message on failure.
#include <cstdio>
#include <fstream>

#include "core/checkpoint/checkpoint.h"
#include "core/gradflow.h"
#include "nlohmann/json.hpp"

using namespace gradflow;

namespace {

nlohmann::json describe(const Tensor& value) {
  Tensor t = value.contiguous();
  nlohmann::json shape = nlohmann::json::array();
  for (int64_t d : t.shape()) shape.push_back(d);
  nlohmann::json values = nlohmann::json::array();
  if (t.dtype() == kI64) {
    for (int64_t v : t.reshape({-1}).to_vector<int64_t>()) values.push_back(v);
  } else {
    for (float v : t.reshape({-1}).to_vector<float>()) values.push_back(v);  // f32: exact in JSON's double
  }
  return {{"dtype", std::string(dtype_name(t.dtype()))}, {"shape", shape}, {"values", values}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_checkpoint DIR\n");
    return 2;
  }
  try {
    std::string dir = argv[1];
    set_seed(3);
    Sequential model({Dense(5, {.activation = "relu", .input_shape = Shape{3}}), Dense(2)});
    model.compile("adam", "mse");
    Tensor x = random_uniform({8, 3}, -1, 1), y = random_uniform({8, 2}, -1, 1);
    for (int step = 0; step < 3; ++step) train_step(model.impl(), x, y);
    std::string path = CheckpointManager(dir + "/ckpts", model).save(3);
    nlohmann::json expected = {{"path", path}, {"model", nlohmann::json::object()}, {"optimizer", nlohmann::json::object()}};
    for (const Variable& v : model.variables()) expected["model"][v.name()] = describe(v.value_unwatched());
    for (const Variable& v : model.impl().training->optimizer->variables()) {
      expected["optimizer"][v.name()] = describe(v.value_unwatched());
    }
    std::ofstream(dir + "/expected.json") << expected.dump(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_checkpoint: %s\n", e.what());
    return 1;
  }
  return 0;
}
