// Writes a known set of summaries into the logdir given as argv[1], for tensorboard_readback.py, which
// reads them back with TensorBoard and checks every tag, step and value.
#include <cstdio>
#include <exception>

#include "core/io/summary_writer.h"
#include "core/tensor/creation.h"

using namespace gradflow;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s LOGDIR\n", argv[0]);
    return 2;
  }
  try {
    SummaryWriter writer(argv[1]);
    writer.layer_graph({
        {.name = "input", .op = "Placeholder"},
        {.name = "dense_1/MatMul", .op = "MatMul", .inputs = {"input"}, .attrs = {{"units", "128"}}},
        {.name = "dense_1/Relu", .op = "Relu", .inputs = {"dense_1/MatMul"}},
        {.name = "dense_2/MatMul", .op = "MatMul", .inputs = {"dense_1/Relu"}, .attrs = {{"units", "10"}}},
    });
    std::vector<float> weights;  // -5.0, -4.9, ..., 4.9
    for (int i = -50; i < 50; ++i) weights.push_back(static_cast<float>(i) / 10.0f);
    for (int step = 0; step < 10; ++step) {  // steps never go back: TensorBoard purges on a step reset
      writer.scalar("loss", 1.0 / (step + 1), step);
      writer.scalar("accuracy", 0.1 * step, step);
      if (step == 0) {
        writer.text("notes", "hello **world**", step);
        writer.histogram("weights", from_vector<float>(weights, {10, 10}), step);
      }
      if (step == 1) writer.histogram("weights", from_vector<int64_t>({1, 2, 2, 3, 3, 3}), step);
    }
    writer.flush();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "write_test_events: %s\n", e.what());
    return 1;
  }
  return 0;
}
