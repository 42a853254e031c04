// A small convolutional network on Fashion-MNIST, trained from a tf.data-style pipeline:
// Conv2D(16, 3x3, relu), MaxPool2D, Conv2D(32, 3x3, relu), MaxPool2D, Flatten, Dense(10, softmax).
//
//   build/bin/fashion_mnist_cnn --epochs 1
//   ...
//   test_loss=0.3900 test_accuracy=0.8600
//
// The same flags and launches as fashion_mnist (examples/example_job.h): data-parallel under gfrun,
// mpirun or srun with several ranks (the pipeline is sharded by element across them), --strategy
// mirrored, --device, --checkpoint-dir, --logdir, --metrics-json.
#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>

#include "core/gradflow.h"
#include "examples/example_job.h"

using namespace gradflow;

int main(int argc, char** argv) {
  CLI::App app{"Train a small CNN on Fashion-MNIST"};
  examples::ExampleFlags flags{.epochs = 1, .seed = 7};
  examples::add_common_flags(app, flags);
  int64_t train_examples = 60000;
  app.add_option("--train-examples", train_examples, "use the first N training images")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);

  try {
    examples::FashionMnist data = examples::load_fashion_mnist(flags.data_dir);
    examples::ExampleJob job(flags);
    int64_t n = std::min(train_examples, data.x_train.dim(0));
    Tensor x_train = data.x_train.slice(0, 0, n).reshape({n, 28, 28, 1}), y_train = data.y_train.slice(0, 0, n);
    Tensor x_test = data.x_test.reshape({-1, 28, 28, 1});
    Dataset train =
        Dataset::from_tensor_slices({x_train, y_train}).shuffle(10000, flags.seed).batch(flags.batch_size).prefetch(2);

    Sequential model({
        Conv2D(16, {3, 3}, {.activation = "relu", .input_shape = Shape{28, 28, 1}}),
        MaxPool2D(),
        Conv2D(32, {3, 3}, {.activation = "relu"}),
        MaxPool2D(),
        Flatten(),
        Dense(10, {.activation = "softmax"}),
    });
    if (flags.verbose > 0 && job.chief()) std::cout << model.summary();
    model.compile("adam", "sparse_categorical_crossentropy", {"accuracy"});
    auto start = job.synchronized_now();
    model.fit(train, {.epochs = flags.epochs, .callbacks = job.callbacks(), .verbose = flags.verbose});
    double seconds_per_epoch = std::chrono::duration<double>(job.synchronized_now() - start).count() / flags.epochs;
    job.report(model.evaluate(x_test, data.y_test, {.batch_size = 500}), seconds_per_epoch, n);
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist_cnn: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
