// The seed's model (Flatten, Dense(128, relu), Dropout(0.2), Dense(10, softmax); Adam; sparse
// categorical cross-entropy; batch 32) on Fashion-MNIST, written with the core alone: tensors, ops, a
// GradientTape custom training loop and optimizers::Adam (core/optim). The Keras-style API (Sequential,
// compile, fit) will replace the hand-written layers here.
//
//   build/bin/fashion_mnist_tape --epochs 1
//   ... test_loss=0.4200 test_accuracy=0.8480
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>

#include "core/data/idx.h"
#include "core/gradflow.h"
#include "core/optim/optimizers.h"

using namespace gradflow;

namespace {

struct Split {
  Tensor images;  // [n, 784] f32 in [0, 1]
  Tensor labels;  // [n] i64
};

Split load(const std::string& dir, const std::string& prefix) {
  Tensor images = read_idx(dir + "/" + prefix + "-images-idx3-ubyte.gz");
  Tensor labels = read_idx(dir + "/" + prefix + "-labels-idx1-ubyte.gz");
  return {images.reshape({images.dim(0), -1}).to(kF32) / 255.0, labels.to(kI64)};
}

// Keras' glorot_uniform: U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)).
Variable glorot(int64_t in, int64_t out, const std::string& name) {
  double limit = std::sqrt(6.0 / static_cast<double>(in + out));
  return Variable(random_uniform({in, out}, -limit, limit), name);
}

struct SeedModel {
  Variable w1 = glorot(784, 128, "dense/kernel");
  Variable b1{zeros({128}), "dense/bias"};
  Variable w2 = glorot(128, 10, "dense_1/kernel");
  Variable b2{zeros({10}), "dense_1/bias"};

  std::vector<Variable> trainable_variables() const { return {w1, b1, w2, b2}; }
  Tensor logits(const Tensor& x, bool training) const {
    Tensor h = relu(matmul(x, w1) + b1.value());
    if (training) h = dropout(h, 0.2);
    return matmul(h, w2) + b2.value();
  }
};

// Mean loss and accuracy over a split, in batches of 1000.
std::pair<double, double> evaluate(const SeedModel& model, const Split& data) {
  int64_t n = data.images.dim(0);
  double loss = 0, correct = 0;
  for (int64_t start = 0; start < n; start += 1000) {
    int64_t stop = std::min(n, start + 1000);
    Tensor logits = model.logits(data.images.slice(0, start, stop), false);
    Tensor labels = data.labels.slice(0, start, stop);
    loss += sum(sparse_softmax_cross_entropy_with_logits(labels, logits)).item();
    correct += sum(equal(argmax(logits, 1), labels).to(kF32)).item();
  }
  return {loss / n, correct / n};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train the seed's Fashion-MNIST model with a GradientTape loop on the gradflow core"};
  int epochs = 1;
  int64_t batch_size = 32;
  uint64_t seed = 42;
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string metrics_json;
  int threads = 0;
  app.add_option("--threads", threads, "CPU threads (0: all)")->check(CLI::NonNegativeNumber);
  app.add_option("--epochs", epochs, "passes over the training set")->check(CLI::PositiveNumber);
  app.add_option("--batch-size", batch_size, "examples per step")->check(CLI::PositiveNumber);
  app.add_option("--seed", seed, "seed of initial weights, dropout and shuffling");
  app.add_option("--data-dir", data_dir, "folder with the four Fashion-MNIST .gz files");
  app.add_option("--metrics-json", metrics_json, "also write the final metrics to this JSON file");
  CLI11_PARSE(app, argc, argv);

  try {
    if (threads > 0) set_num_threads(threads);
    set_seed(seed);
    Split train = load(data_dir, "train");
    Split test = load(data_dir, "t10k");
    SeedModel model;
    std::vector<Variable> vars = model.trainable_variables();
    optimizers::Adam optimizer({.learning_rate = 1e-3});
    std::vector<int64_t> order(train.images.dim(0));
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 shuffle_rng(seed);
    int64_t steps = (static_cast<int64_t>(order.size()) + batch_size - 1) / batch_size;

    for (int epoch = 1; epoch <= epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), shuffle_rng);
      auto start = std::chrono::steady_clock::now();
      double loss_sum = 0;
      for (int64_t step = 0; step < steps; ++step) {
        int64_t lo = step * batch_size, hi = std::min<int64_t>(lo + batch_size, order.size());
        Tensor idx = from_vector<int64_t>(std::vector<int64_t>(order.begin() + lo, order.begin() + hi));
        Tensor x = gather(train.images, idx), y = gather(train.labels, idx);
        GradientTape tape;
        Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(y, model.logits(x, true)));
        std::vector<Tensor> grads = tape.gradient(loss, std::vector<GradSource>(vars.begin(), vars.end()));
        optimizer.apply_gradients(grads, vars);
        loss_sum += loss.item();
      }
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("Epoch %d/%d - %.1fs %.0fus/step - loss: %.4f\n", epoch, epochs, seconds, 1e6 * seconds / steps,
                  loss_sum / steps);
    }
    auto [test_loss, test_accuracy] = evaluate(model, test);
    std::printf("test_loss=%.4f test_accuracy=%.4f\n", test_loss, test_accuracy);
    if (!metrics_json.empty()) {
      std::ofstream out(metrics_json);
      out << "{\"test_loss\": " << test_loss << ", \"test_accuracy\": " << test_accuracy << "}\n";
      if (!out) throw Error(str_cat(metrics_json, ": cannot write metrics"));
    }
  } catch (const Error& e) {
    std::cerr << "fashion_mnist_tape: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
