// Keras-style training on a GPU (DeviceScope): fit, evaluate, predict, a custom GradientTape loop and
// checkpoints give what the same code gives on the CPU, while the model's weights and optimizer slots
// stay on the GPU. SKIPPED without a CUDA device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "core/checkpoint/checkpoint.h"
#include "core/gradflow.h"

namespace gradflow {
namespace {

const Device kGpu = Device::cuda(0);

// 256 examples of 12 features in 4 classes, on the host as a data pipeline hands them out.
std::pair<Tensor, Tensor> data() {
  Tensor x = random_normal({256, 3, 4}, 0, 1, kF32, kCPU, 1);
  Tensor y = (random_uniform({256}, 0, 1, kF32, kCPU, 2) * 4.0).to(kI64);
  return {x, y};
}

// The seed's model, smaller; no input shape, so fit's first batch builds it.
Sequential seed_like(bool dropout) {
  std::vector<Layer> layers{Flatten(), Dense(32, {.activation = "relu"})};
  if (dropout) layers.push_back(Dropout(0.2));
  layers.push_back(Dense(4, {.activation = "softmax"}));
  return Sequential(layers);
}

std::vector<std::vector<double>> weights(Model& m) {
  std::vector<std::vector<double>> out;
  for (const Variable& v : m.variables()) out.push_back(v.value_unwatched().reshape({-1}).to_vector<double>());
  return out;
}

// Float sums in another order (cuBLAS against oneDNN) over a few Adam steps: close, not bitwise.
void expect_close(const std::vector<std::vector<double>>& got, const std::vector<std::vector<double>>& want,
                  double tol = 2e-4) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t v = 0; v < want.size(); ++v) {
    ASSERT_EQ(got[v].size(), want[v].size());
    double worst = 0;
    for (size_t i = 0; i < want[v].size(); ++i) {
      worst = std::max(worst, std::abs(got[v][i] - want[v][i]) / std::max(1.0, std::abs(want[v][i])));
    }
    EXPECT_LE(worst, tol) << "variable " << v;
  }
}

struct Trained {
  std::vector<std::vector<double>> weights;
  History history;
  Logs evaluation;
  std::vector<double> predictions;
  std::vector<Device> devices;  // of the variables and the optimizer's slots
};

Trained fit_on(Device device, bool dropout) {
  reset_layer_names();
  set_seed(3);
  auto [x, y] = data();
  DeviceScope scope(device);
  Sequential model = seed_like(dropout);
  auto adam = std::make_shared<optimizers::Adam>(optimizers::AdamOptions{.learning_rate = 0.01});
  model.compile(adam, "sparse_categorical_crossentropy", {"accuracy"});
  Trained t;
  t.history = model.fit(x, y, {.epochs = 2, .batch_size = 32, .verbose = 0});
  t.evaluation = model.evaluate(x, y);
  t.predictions = model.predict(x.slice(0, 0, 8)).to_vector<double>();
  t.weights = weights(model);
  for (const Variable& v : model.variables()) t.devices.push_back(v.value_unwatched().device());
  for (const Variable& s : adam->variables()) {
    if (s.name() != "iteration") t.devices.push_back(s.value_unwatched().device());  // a host counter
  }
  return t;
}

class TrainingCuda : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  }
};

// Every built-in optimizer updates a GPU variable in one kernel (core/optim/fused_cuda.h) with the CPU
// loops' own per-element rules: three steps with the same gradients give the CPU's weights and slots (to
// the last bits that FMA contraction may move), for every variant of the rules.
TEST_F(TrainingCuda, FusedOptimizerUpdatesMatchTheCpu) {
  using namespace optimizers;
  std::vector<std::pair<std::string, std::function<std::unique_ptr<Optimizer>()>>> makers = {
      {"adam", [] { return std::make_unique<Adam>(AdamOptions{.learning_rate = 0.01}); }},
      {"adam amsgrad clipvalue", [] { return std::make_unique<Adam>(AdamOptions{.amsgrad = true, .clipvalue = 0.5}); }},
      {"adamw", [] { return std::make_unique<AdamW>(AdamWOptions{.learning_rate = 0.01}); }},
      {"sgd", [] { return std::make_unique<SGD>(SGDOptions{.learning_rate = 0.1, .weight_decay = 0.01}); }},
      {"sgd momentum", [] { return std::make_unique<SGD>(SGDOptions{.learning_rate = 0.1, .momentum = 0.9}); }},
      {"sgd nesterov", [] { return std::make_unique<SGD>(SGDOptions{.learning_rate = 0.1, .momentum = 0.9, .nesterov = true}); }},
      {"rmsprop", [] { return std::make_unique<RMSprop>(RMSpropOptions{.learning_rate = 0.01}); }},
      {"rmsprop momentum centered", [] { return std::make_unique<RMSprop>(RMSpropOptions{.momentum = 0.5, .centered = true}); }},
      {"rmsprop momentum", [] { return std::make_unique<RMSprop>(RMSpropOptions{.momentum = 0.5}); }},
      {"rmsprop centered", [] { return std::make_unique<RMSprop>(RMSpropOptions{.centered = true}); }},
      {"adagrad", [] { return std::make_unique<Adagrad>(AdagradOptions{.learning_rate = 0.1}); }},
  };
  for (DType dtype : {kF32, kF64}) {
    for (auto& [name, make] : makers) {
      SCOPED_TRACE(name + (dtype == kF32 ? " f32" : " f64"));
      Tensor start = random_uniform({1000, 3}, -1, 1, dtype, kCPU, 5);
      Variable on_cpu(start, "w"), on_gpu(start.to(kGpu), "w");
      std::unique_ptr<Optimizer> cpu = make(), gpu = make();
      for (int step = 0; step < 3; ++step) {
        Tensor g = random_uniform({1000, 3}, -1, 1, dtype, kCPU, 10 + step);
        cpu->apply_gradients({g}, {on_cpu});
        gpu->apply_gradients({g.to(kGpu)}, {on_gpu});
      }
      ASSERT_EQ(on_gpu.device(), kGpu);
      const double tol = dtype == kF32 ? 1e-6 : 1e-14;
      expect_close({on_gpu.value_unwatched().reshape({-1}).to_vector<double>()},
                   {on_cpu.value_unwatched().reshape({-1}).to_vector<double>()}, tol);
      std::vector<Variable> cpu_slots = cpu->slots(on_cpu), gpu_slots = gpu->slots(on_gpu);
      ASSERT_EQ(cpu_slots.size(), gpu_slots.size());
      for (size_t k = 0; k < cpu_slots.size(); ++k) {
        EXPECT_EQ(gpu_slots[k].device(), kGpu);
        expect_close({gpu_slots[k].value_unwatched().reshape({-1}).to_vector<double>()},
                     {cpu_slots[k].value_unwatched().reshape({-1}).to_vector<double>()}, tol);
      }
    }
  }
}

TEST_F(TrainingCuda, FitEvaluatePredictMatchTheCpu) {
  Trained cpu = fit_on(kCPU, /*dropout=*/false);
  Trained gpu = fit_on(kGpu, /*dropout=*/false);
  ASSERT_FALSE(gpu.devices.empty());
  for (Device d : gpu.devices) EXPECT_EQ(d, kGpu) << "a variable or slot left the GPU";
  expect_close(gpu.weights, cpu.weights);
  for (size_t e = 0; e < 2; ++e) EXPECT_NEAR(gpu.history.history["loss"][e], cpu.history.history["loss"][e], 1e-4);
  EXPECT_NEAR(gpu.evaluation["loss"], cpu.evaluation["loss"], 1e-4);
  // Argmax over near-ties may flip one of the 256 predictions between cuBLAS and oneDNN sums.
  EXPECT_NEAR(gpu.evaluation["accuracy"], cpu.evaluation["accuracy"], 1.5 / 256);
  ASSERT_EQ(gpu.predictions.size(), cpu.predictions.size());
  for (size_t i = 0; i < cpu.predictions.size(); ++i) EXPECT_NEAR(gpu.predictions[i], cpu.predictions[i], 1e-5);
}

TEST_F(TrainingCuda, DropoutDrawsTheCpusMasks) {
  // Philox gives both devices the same numbers, so the same seed drops the same units.
  expect_close(fit_on(kGpu, /*dropout=*/true).weights, fit_on(kCPU, /*dropout=*/true).weights);
}

TEST_F(TrainingCuda, ModelsBuiltAtConstructionLiveOnTheGpu) {
  // A declared input shape (the seed's Flatten(Shape{28, 28})) and the functional API build the layers
  // when the model is made, by running them on probes: those must be on the GPU too.
  DeviceScope scope(kGpu);
  Sequential sequential({Flatten(Shape{3, 4}), Dense(8, {.activation = "relu"}), Dense(4, {.activation = "softmax"})});
  SymbolicTensor in = Input({12});
  Model functional({in}, {Dense(4, {.activation = "softmax"})(Dense(8)(in))});
  for (Model* m : {static_cast<Model*>(&sequential), &functional}) {
    ASSERT_FALSE(m->variables().empty());
    for (const Variable& v : m->variables()) EXPECT_EQ(v.device(), kGpu) << v.name();
    EXPECT_NE(m->summary().find("Total params"), std::string::npos);
    m->compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
  }
  auto [x, y] = data();
  sequential.fit(x, y, {.epochs = 1, .verbose = 0});
  functional.fit(x.reshape({256, 12}), y, {.epochs = 1, .verbose = 0});
  // Layers added after the scope ended still join the model's device.
  Sequential grown({Flatten(Shape{3, 4})});
  {
    DeviceScope host(kCPU);
    grown.add(Dense(4));
  }
  for (const Variable& v : grown.variables()) EXPECT_EQ(v.device(), kGpu) << v.name();
}

TEST_F(TrainingCuda, CustomTapeLoopOnHostBatches) {
  auto loop = [](Device device) {
    reset_layer_names();
    set_seed(3);
    auto [x, y] = data();
    DeviceScope scope(device);
    Sequential model = seed_like(false);
    optimizers::Adam adam({.learning_rate = 0.01});
    losses::SparseCategoricalCrossentropy loss_fn;
    for (int step = 0; step < 8; ++step) {
      Tensor xb = x.slice(0, step * 32, step * 32 + 32), yb = y.slice(0, step * 32, step * 32 + 32);
      GradientTape tape;
      Tensor y_pred = model(xb, true);
      EXPECT_EQ(y_pred.device(), device);
      Tensor loss = loss_fn(yb, y_pred);  // host labels follow the predictions
      std::vector<Variable> vars = model.trainable_variables();
      std::vector<Tensor> grads = tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end()));
      for (const Tensor& g : grads) EXPECT_EQ(g.device(), device);
      adam.apply_gradients(grads, vars);
    }
    return weights(model);
  };
  expect_close(loop(kGpu), loop(kCPU));
}

TEST_F(TrainingCuda, CheckpointWrittenFromTheGpuRestoresOnTheCpu) {
  std::string dir = (std::filesystem::temp_directory_path() / ("gradflow_training_cuda_" + std::to_string(::getpid())))
                        .string();
  std::filesystem::remove_all(dir);
  auto [x, y] = data();
  auto model_on = [&](Device device) {
    reset_layer_names();
    DeviceScope scope(device);
    Sequential model = seed_like(false);
    model.compile("adam", "sparse_categorical_crossentropy");
    model.fit(x.slice(0, 0, 64), y.slice(0, 0, 64), {.epochs = 1, .batch_size = 32, .verbose = 0});
    return model;
  };
  Sequential gpu_model = model_on(kGpu);
  CheckpointManager(dir, gpu_model).save(2);
  Sequential cpu_model = model_on(kCPU);
  ASSERT_TRUE(CheckpointManager(dir, cpu_model).restore_latest().has_value());
  EXPECT_EQ(weights(cpu_model), weights(gpu_model));
  // And back: the CPU's values restored into the GPU model keep it on the GPU.
  CheckpointManager(dir, cpu_model).save(3);
  ASSERT_TRUE(CheckpointManager(dir, gpu_model).restore_latest().has_value());
  for (const Variable& v : gpu_model.variables()) EXPECT_EQ(v.value_unwatched().device(), kGpu);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace gradflow
