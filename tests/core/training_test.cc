// compile/fit/evaluate/predict, History, callbacks and the Keras progress bar.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/gradflow.h"
#include "core/nn/batch_prefetcher.h"

namespace gradflow {
namespace {

// Two Gaussian blobs per class in 2-D: learnable to ~100% by a small MLP.
std::pair<Tensor, Tensor> blobs(int64_t n, uint64_t seed) {
  Tensor labels = (random_uniform({n}, 0, 1, kF32, kCPU, seed) * 3.0).to(kI64);
  Tensor centers = from_vector<float>({-2, -2, 2, 2, -2, 2}, {3, 2});
  Tensor x = gather(centers, labels) + random_normal({n, 2}, 0, 0.5, kF32, kCPU, seed + 1);
  return {x, labels};
}

Sequential small_model() {
  return Sequential({Dense(16, {.activation = "relu", .input_shape = Shape{2}}), Dense(3, {.activation = "softmax"})});
}

class TrainingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reset_layer_names();
    set_seed(3);
  }
};

TEST_F(TrainingTest, FitLearnsAndReportsHistory) {
  auto [x, y] = blobs(512, 10);
  auto [xv, yv] = blobs(128, 20);
  Sequential model = small_model();
  model.compile(std::make_shared<optimizers::Adam>(optimizers::AdamOptions{.learning_rate = 0.01}),
                "sparse_categorical_crossentropy", {"accuracy"});
  History h = model.fit(x, y, {.epochs = 5, .batch_size = 32, .validation_data = ValidationData{xv, yv}, .verbose = 0});
  EXPECT_EQ(h.epoch, (std::vector<int>{0, 1, 2, 3, 4}));
  ASSERT_EQ(h.history["loss"].size(), 5u);
  EXPECT_LT(h.history["loss"].back(), h.history["loss"].front());
  EXPECT_GT(h.history["accuracy"].back(), 0.95);
  EXPECT_GT(h.history["val_accuracy"].back(), 0.95);
  Logs r = model.evaluate(xv, yv);
  EXPECT_NEAR(r["accuracy"], h.history["val_accuracy"].back(), 1e-9);
  Tensor p = model.predict(xv, 50);
  EXPECT_EQ(p.shape(), (Shape{128, 3}));
  EXPECT_NEAR(mean(equal(argmax(p, 1), yv).to(kF32)).item(), r["accuracy"], 1e-6);
}

TEST_F(TrainingTest, FitBuildsAModelWithoutAnInputShapeOnItsFirstBatch) {
  // As in Keras: layers build from the first input; the first step must already train them.
  auto [x, y] = blobs(96, 5);
  Sequential model({Dense(16, {.activation = "relu"}), Dense(3, {.activation = "softmax"})});
  model.compile("sgd", "sparse_categorical_crossentropy", {"accuracy"});
  History h = model.fit(x, y, {.epochs = 2, .batch_size = 16, .verbose = 0});
  EXPECT_EQ(model.trainable_variables().size(), 4u);
  EXPECT_EQ(h.history.at("loss").size(), 2u);
}

TEST_F(TrainingTest, FitOnADatasetMatchesFitOnTensorsWithoutShuffle) {
  auto [x, y] = blobs(96, 30);
  set_seed(5);
  Sequential a = small_model();
  a.compile("sgd", "sparse_categorical_crossentropy", {"accuracy"});
  History ha = a.fit(x, y, {.epochs = 2, .batch_size = 32, .shuffle = false, .verbose = 0});
  reset_layer_names();
  set_seed(5);
  Sequential b = small_model();
  b.compile("sgd", "sparse_categorical_crossentropy", {"accuracy"});
  History hb = b.fit(Dataset::from_tensor_slices({x, y}).batch(32), {.epochs = 2, .verbose = 0});
  EXPECT_EQ(ha.history["loss"], hb.history["loss"]);
  std::vector<Variable> va = a.trainable_variables(), vb = b.trainable_variables();
  for (size_t i = 0; i < va.size(); ++i) {
    EXPECT_EQ(va[i].value().to_vector<float>(), vb[i].value().to_vector<float>()) << va[i].name();
  }
  EXPECT_NEAR(b.evaluate(Dataset::from_tensor_slices({x, y}).batch(10))["loss"], a.evaluate(x, y)["loss"], 1e-5);
}

// Accumulating k batches of b gives the update of one batch of k x b (the same rows), also for a short
// last group; the optimizer steps once per group.
TEST_F(TrainingTest, GradientAccumulationMatchesOneLargerBatch) {
  auto [x, y] = blobs(100, 40);  // groups of 3 x 8 = 24 rows: 4 full groups and a short one of 4 rows
  auto train = [&](int64_t batch, int accumulate) {
    reset_layer_names();
    set_seed(6);
    Sequential model = small_model();
    model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 0.3}),
                  "sparse_categorical_crossentropy");
    model.fit(x, y, {.epochs = 2, .batch_size = batch, .shuffle = false, .verbose = 0,
                     .gradient_accumulation_steps = accumulate});
    return model;
  };
  Sequential accumulated = train(8, 3), large = train(24, 1);
  std::vector<Variable> a = accumulated.trainable_variables(), b = large.trainable_variables();
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<float> va = a[i].value().to_vector<float>(), vb = b[i].value().to_vector<float>();
    for (size_t k = 0; k < va.size(); ++k) EXPECT_NEAR(va[k], vb[k], 1e-5 * std::max(1.0f, std::abs(vb[k]))) << a[i].name();
  }
  // And it differs from not accumulating (k optimizer steps instead of one).
  Sequential plain = train(8, 1);
  EXPECT_NE(plain.trainable_variables()[0].value().to_vector<float>(), a[0].value().to_vector<float>());
  Sequential model = small_model();
  model.compile("sgd", "mse");
  EXPECT_THROW(model.fit(x, y, {.verbose = 0, .gradient_accumulation_steps = 0}), ValueError);
}

TEST_F(TrainingTest, ErrorsNameTheProblem) {
  Sequential model = small_model();
  EXPECT_THROW(model.fit(zeros({4, 2}), zeros({4}, kI64)), StateError);  // not compiled
  model.compile("adam", "sparse_categorical_crossentropy");
  EXPECT_THROW(model.fit(zeros({4, 2}), zeros({5}, kI64), {.verbose = 0}), ShapeError);
  EXPECT_THROW(model.fit(zeros({4, 2}), zeros({4}, kI64), {.batch_size = 0, .verbose = 0}), ValueError);
  EXPECT_THROW(model.compile("adamx", "mse"), ValueError);
  EXPECT_THROW(model.fit(Dataset::from_tensor_slices({zeros({4, 2}), zeros({4}, kI64)}).repeat(), {.verbose = 0}),
               ValueError);
}

TEST_F(TrainingTest, EarlyStoppingStopsAndRestoresBestWeights) {
  auto [x, y] = blobs(64, 40);
  Sequential model = small_model();
  // A learning rate so large that the validation loss soon stops improving.
  model.compile(std::make_shared<optimizers::SGD>(optimizers::SGDOptions{.learning_rate = 5.0}),
                "sparse_categorical_crossentropy");
  History h = model.fit(x, y, {.epochs = 50, .validation_data = ValidationData{x, y},
                               .callbacks = {EarlyStopping({.monitor = "val_loss", .patience = 2,
                                                            .restore_best_weights = true})},
                               .verbose = 0});
  ASSERT_LT(h.epoch.size(), 50u);
  const std::vector<double>& val = h.history["val_loss"];
  double best = *std::min_element(val.begin(), val.end());
  EXPECT_NEAR(model.evaluate(x, y)["loss"], best, 1e-5);
  EXPECT_THROW(EarlyStopping({.mode = "sideways"}), ValueError);
}

TEST_F(TrainingTest, LearningRateSchedulerAndCsvLogger) {
  auto [x, y] = blobs(64, 50);
  Sequential model = small_model();
  model.compile("sgd", "sparse_categorical_crossentropy", {"accuracy"});
  std::string csv = (std::filesystem::temp_directory_path() / "gradflow_training_test.csv").string();
  std::vector<double> seen;
  model.fit(x, y, {.epochs = 3,
                   .callbacks = {LearningRateScheduler([&](int epoch, double lr) {
                                   seen.push_back(lr);
                                   return 0.1 / (epoch + 1);
                                 }),
                                 CSVLogger(csv)},
                   .verbose = 0});
  EXPECT_NEAR(seen[0], 0.01, 1e-12);  // SGD's default
  EXPECT_NEAR(seen[1], 0.1, 1e-12);
  EXPECT_NEAR(seen[2], 0.05, 1e-12);
  std::ifstream in(csv);
  std::string header, row;
  std::getline(in, header);
  EXPECT_EQ(header, "epoch,accuracy,loss");
  int rows = 0;
  while (std::getline(in, row)) ++rows;
  EXPECT_EQ(rows, 3);
}

TEST_F(TrainingTest, ProgressBarInKerasFormat) {
  auto [x, y] = blobs(64, 60);
  Sequential model = small_model();
  model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
  std::ostringstream line_mode, tty_mode;
  double predicted = mean(equal(argmax(model.predict(x), 1), y).to(kF32)).item();
  EXPECT_NEAR(model.evaluate(x, y)["accuracy"], predicted, 1e-6);
  model.fit(x, y, {.epochs = 1, .batch_size = 16, .callbacks = {ProgbarLogger(1, &line_mode, false)}, .verbose = 0});
  std::string s = line_mode.str();
  // "Epoch 1/1\n4/4 [==============================] - 0s 1ms/step - loss: 1.0764 - accuracy: 0.4219\n"
  EXPECT_EQ(s.rfind("Epoch 1/1\n4/4 [==============================] - 0s ", 0), 0u) << s;
  EXPECT_NE(s.find("step - loss: "), std::string::npos) << s;
  EXPECT_NE(s.find(" - accuracy: "), std::string::npos) << s;
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 2);
  model.fit(x, y, {.epochs = 1, .batch_size = 16, .callbacks = {ProgbarLogger(1, &tty_mode, true)}, .verbose = 0});
  std::string t = tty_mode.str();
  EXPECT_NE(t.find("\r1/4 [======>.......................] - ETA: "), std::string::npos) << t;
  EXPECT_NE(t.find("\r4/4 [==============================] - 0s "), std::string::npos) << t;
  std::ostringstream verbose2;
  model.fit(x, y, {.epochs = 1, .batch_size = 16, .callbacks = {ProgbarLogger(2, &verbose2)}, .verbose = 0});
  EXPECT_EQ(verbose2.str().rfind("Epoch 1/1\n4/4 - 0s - loss: ", 0), 0u) << verbose2.str();
}

// The prefetcher hands out the source's batches in order, ends with nullopt (and keeps saying so),
// passes an exception on at the batch it replaced, and can be destroyed mid-epoch.
TEST(BatchPrefetcher, KeepsOrderEndsAndPassesErrorsOn) {
  auto counting = [](int count, int throw_at) {
    auto next = std::make_shared<int>(0);
    return [=]() -> BatchPrefetcher::Batch {
      int i = (*next)++;
      if (i == throw_at) throw ValueError(str_cat("batch ", i, " is bad"));
      if (i >= count) return std::nullopt;
      return std::pair{full({2}, i), full({1}, -i)};
    };
  };
  {
    BatchPrefetcher batches(counting(50, -1));
    for (int i = 0; i < 50; ++i) {
      BatchPrefetcher::Batch b = batches();
      ASSERT_TRUE(b) << i;
      EXPECT_EQ(b->first.to_vector<float>()[0], i);
      EXPECT_EQ(b->second.to_vector<float>()[0], -i);
    }
    EXPECT_FALSE(batches());
    EXPECT_FALSE(batches()) << "after the end";
  }
  {
    BatchPrefetcher batches(counting(50, 3));
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(batches());
    EXPECT_THROW(batches(), ValueError);
    EXPECT_FALSE(batches()) << "after the error";
  }
  { BatchPrefetcher batches(counting(50, -1)); }  // destroyed with a batch made ahead
  {
    BatchPrefetcher batches(counting(50, -1));
    EXPECT_TRUE(batches());  // destroyed while the next may be in the making
  }
}

// Keras rounds the time spent ("1s" for an epoch of 0.98 s; the bar said "0s" until it did too) and
// truncates the ETA.
TEST(Progbar, ElapsedTimeIsRoundedAndTheEtaTruncatedAsInKeras) {
  EXPECT_EQ(format_elapsed(0.98), "1s");
  EXPECT_EQ(format_elapsed(0.49), "0s");
  EXPECT_EQ(format_elapsed(125.4), "125s");
  EXPECT_EQ(format_eta(7.9), "7s");
  EXPECT_EQ(format_eta(125.9), "2:05");
  EXPECT_EQ(format_eta(3723.5), "1:02:03");
}

TEST_F(TrainingTest, DeviceScopeRefusesADeviceThisProcessCannotUse) {
  // One past the last visible GPU (cuda:0 on a machine without one): an error naming it, at once.
  Device missing = Device::cuda(cuda_device_count());
  try {
    DeviceScope scope(missing);
    FAIL() << "DeviceScope accepted " << missing.str();
  } catch (const DeviceError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.str()), std::string::npos) << e.what();
  }
  EXPECT_EQ(current_device(), kCPU);  // the failed scope changed nothing
  {
    DeviceScope outer(kCPU);
    Sequential model = small_model();
    EXPECT_EQ(model.impl().device(), kCPU);
  }
  EXPECT_EQ(current_device(), kCPU);
}

TEST_F(TrainingTest, CustomLoopWithTheSameLayersAndOptimizer) {
  auto [x, y] = blobs(256, 70);
  Sequential model = small_model();
  optimizers::Adam adam({.learning_rate = 0.01});
  losses::SparseCategoricalCrossentropy loss_fn;
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    Tensor xb = x.slice(0, (step % 8) * 32, (step % 8 + 1) * 32), yb = y.slice(0, (step % 8) * 32, (step % 8 + 1) * 32);
    GradientTape tape;
    Tensor loss = loss_fn(yb, model(xb, true));
    std::vector<Variable> vars = model.trainable_variables();
    adam.apply_gradients(tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end())), vars);
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_LT(last, first / 3);
}

TEST_F(TrainingTest, TraceStepsRecordsTheAskedStepsPartByPart) {
  // 96 rows in batches of 16: steps 0-5; the timeline asks for [2, 4). "{rank}" becomes 0 alone.
  auto [x, y] = blobs(96, 80);
  Sequential model = small_model();
  model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
  const std::string pattern = (std::filesystem::temp_directory_path() / "gradflow_trace_steps_{rank}.json").string();
  const std::string path = (std::filesystem::temp_directory_path() / "gradflow_trace_steps_0.json").string();
  model.fit(x, y, {.epochs = 2, .batch_size = 16, .callbacks = {TraceSteps(pattern, 2, 4)}, .verbose = 0});
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  nlohmann::json trace = nlohmann::json::parse(in);
  in.close();
  std::filesystem::remove(path);
  // The training thread's bars in time order: step 2's parts, step 3's fetch, step 3's parts. The window
  // opens as step 2 begins (its batch already fetched) and closes in step 3's batch-end callbacks.
  std::vector<std::pair<double, std::string>> bars;
  for (const auto& e : trace["traceEvents"]) {
    if (e["ph"] == "X") bars.emplace_back(e["ts"].get<double>(), e["name"].get<std::string>());
  }
  std::sort(bars.begin(), bars.end());
  std::vector<std::string> names;
  for (const auto& [ts, name] : bars) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"forward", "backward", "optimizer", "metrics", "callbacks", "next batch",
                                             "forward", "backward", "optimizer", "metrics"}))
      << trace.dump();
  EXPECT_THROW(TraceSteps(pattern, 3, 3), ValueError);
}

}  // namespace
}  // namespace gradflow
