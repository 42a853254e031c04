// Layers and models: naming, lazy building, shapes, numerics, the functional API and summary().
#include <gtest/gtest.h>

#include "core/gradflow.h"
#include "tests/core/grad_check.h"

namespace gradflow {
namespace {

class NnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    reset_layer_names();
    set_seed(1);
  }
};

TEST_F(NnTest, KerasStyleUniqueNames) {
  EXPECT_EQ(Dense(4).name(), "dense");
  EXPECT_EQ(Dense(4).name(), "dense_1");
  EXPECT_EQ(Conv2D(2, {3, 3}).name(), "conv2d");
  EXPECT_EQ(Dense(4, {.name = "head"}).name(), "head");
  EXPECT_EQ(Dense(4).name(), "dense_2");
}

TEST_F(NnTest, DenseBuildsLazilyWithKerasDefaults) {
  Layer d = Dense(3, {.activation = "relu"});
  EXPECT_TRUE(d.variables().empty());
  Tensor y = d(ones({2, 5}));
  EXPECT_EQ(y.shape(), (Shape{2, 3}));
  std::vector<Variable> v = d.trainable_variables();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].name(), "dense/kernel");
  EXPECT_EQ(v[0].shape(), (Shape{5, 3}));  // [in, out]
  EXPECT_EQ(v[1].name(), "dense/bias");
  EXPECT_EQ(v[1].value().to_vector<float>(), (std::vector<float>{0, 0, 0}));
  double limit = std::sqrt(6.0 / 8);  // glorot_uniform
  for (float w : v[0].value().to_vector<float>()) EXPECT_LE(std::abs(w), limit);
  // y = relu(x @ W + b)
  std::vector<float> expect = relu(matmul(ones({2, 5}), v[0].value())).to_vector<float>();
  EXPECT_EQ(y.to_vector<float>(), expect);
  EXPECT_THROW(d(ones({2, 4})), ShapeError);
  EXPECT_THROW(Dense(0), ValueError);
  EXPECT_THROW(Dense(2, {.activation = "swishy"}), ValueError);
}

TEST_F(NnTest, LayerShapes) {
  Tensor img = random_normal({2, 8, 8, 3});
  EXPECT_EQ(Conv2D(4, {3, 3})(img).shape(), (Shape{2, 6, 6, 4}));
  EXPECT_EQ(Conv2D(4, {3, 3}, {.strides = {2, 2}, .padding = "same"})(img).shape(), (Shape{2, 4, 4, 4}));
  EXPECT_EQ(MaxPool2D()(img).shape(), (Shape{2, 4, 4, 3}));
  EXPECT_EQ(AvgPool2D({3, 3}, {.strides = std::array<int64_t, 2>{1, 1}, .padding = "same"})(img).shape(),
            (Shape{2, 8, 8, 3}));
  EXPECT_EQ(GlobalAveragePooling2D()(img).shape(), (Shape{2, 3}));
  EXPECT_EQ(Flatten()(img).shape(), (Shape{2, 192}));
  EXPECT_EQ(Reshape({64, 3})(img).shape(), (Shape{2, 64, 3}));
  EXPECT_EQ(Embedding(10, 4)(from_vector<int64_t>({1, 2, 3, 9, 0, 0}, {2, 3})).shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(LSTM(5)(random_normal({2, 7, 3})).shape(), (Shape{2, 5}));
  EXPECT_EQ(LSTM(5, {.return_sequences = true})(random_normal({2, 7, 3})).shape(), (Shape{2, 7, 5}));
  EXPECT_THROW(Conv2D(4, {3, 3}, {.padding = "full"}), ValueError);
}

TEST_F(NnTest, DropoutOnlyInTraining) {
  Layer drop = Dropout(0.5);
  Tensor x = ones({1000});
  EXPECT_EQ(drop(x).to_vector<float>(), x.to_vector<float>());
  std::vector<float> y = drop(x, /*training=*/true).to_vector<float>();
  int zeros_count = static_cast<int>(std::count(y.begin(), y.end(), 0.0f));
  EXPECT_NEAR(zeros_count, 500, 60);
}

TEST_F(NnTest, BatchNormalizationMovingStatistics) {
  Layer bn = BatchNormalization({.momentum = 0.5});
  Tensor x = from_vector<float>({1, 10, 3, 30}, {2, 2});
  Tensor y = bn(x, true);
  EXPECT_NEAR(y.to_vector<float>()[0], -1, 1e-3);
  std::vector<Variable> vars = bn.variables();
  ASSERT_EQ(vars.size(), 4u);
  EXPECT_EQ(vars[2].name(), "batch_normalization/moving_mean");
  EXPECT_FALSE(vars[2].trainable());
  EXPECT_EQ(vars[2].value().to_vector<float>(), (std::vector<float>{1, 10}));       // 0.5*0 + 0.5*[2,20]
  EXPECT_EQ(vars[3].value().to_vector<float>(), (std::vector<float>{1, 50.5}));     // 0.5*1 + 0.5*[1,100]
  EXPECT_EQ(bn.trainable_variables().size(), 2u);
  Tensor inference = bn(x, false);  // uses the moving statistics
  EXPECT_NEAR(inference.to_vector<float>()[0], 0, 1e-3);
}

// Without a strategy SyncBatchNormalization is BatchNormalization: outputs, gradients and moving
// statistics agree (its statistics come from sums, not the fused kernel's two passes).
TEST_F(NnTest, SyncBatchNormalizationAloneEqualsBatchNormalization) {
  Layer bn = BatchNormalization({.momentum = 0.5}), sync = SyncBatchNormalization({.momentum = 0.5});
  Tensor x = random_normal({6, 2, 3}, 1, 2, kF32, kCPU, 4);
  bn(x);
  sync(x);
  EXPECT_EQ(sync.variables()[2].name(), "sync_batch_normalization/moving_mean");
  auto forward_backward = [&](Layer& layer) {
    std::vector<Variable> vars = layer.trainable_variables();
    GradientTape tape;
    tape.watch(x);
    Tensor y = layer(x, true);
    Tensor loss = sum(y * y * random_uniform({3}, 0, 1, kF32, kCPU, 9));
    std::vector<Tensor> g = tape.gradient(loss, {x, vars[0], vars[1]});
    g.insert(g.begin(), y);
    return g;
  };
  std::vector<Tensor> a = forward_backward(bn), b = forward_backward(sync);
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<float> u = a[i].to_vector<float>(), v = b[i].to_vector<float>();
    ASSERT_EQ(u.size(), v.size());
    for (size_t k = 0; k < u.size(); ++k) EXPECT_NEAR(u[k], v[k], 2e-4 * std::max(1.0f, std::abs(u[k]))) << i << " " << k;
  }
  for (int w : {2, 3}) {
    std::vector<float> u = bn.variables()[w].value().to_vector<float>(), v = sync.variables()[w].value().to_vector<float>();
    for (size_t k = 0; k < u.size(); ++k) EXPECT_NEAR(u[k], v[k], 1e-4 * std::max(1.0f, std::abs(u[k])));
  }
  EXPECT_TRUE(sync.impl().synchronizes_replicas());
  EXPECT_FALSE(bn.impl().synchronizes_replicas());
}

TEST_F(NnTest, LayerGradientsMatchFiniteDifferences) {
  // Layers are compositions of checked ops; check a Dense/LSTM/LayerNorm stack end to end in f64.
  Layer lstm = LSTM(3, {.return_sequences = true});
  Layer norm = LayerNormalization();
  Tensor x = testing::random_f64({2, 4, 3}, 5);
  lstm(x.to(kF32));  // builds f32 weights; the check below uses f64 copies as inputs
  norm(zeros({1, 3}));
  std::vector<Variable> lv = lstm.variables();
  testing::expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        // One LSTM step written with the layer's gate order, on f64 copies of its weights.
        Tensor z = add(add(matmul(in[0].slice(1, 0, 1).squeeze(1), in[1]), in[3]), matmul(zeros({2, 3}, kF64), in[2]));
        std::vector<Tensor> g = split(z, 4, 1);
        Tensor c = mul(sigmoid(g[0]), tanh(g[2]));
        return mul(sigmoid(g[3]), tanh(c));
      },
      {x, lv[0].value().to(kF64), lv[1].value().to(kF64), lv[2].value().to(kF64)});
  // The same step through the layer must agree with the hand-written one (f32).
  Tensor one_step = LSTM(3, {.name = "check"})(x.slice(1, 0, 1).to(kF32));
  EXPECT_EQ(one_step.shape(), (Shape{2, 3}));
}

TEST_F(NnTest, SequentialAndSummary) {
  Sequential model({
      Flatten(Shape{28, 28}),
      Dense(128, {.activation = "relu"}),
      Dropout(0.2),
      Dense(10, {.activation = "softmax"}),
  });
  EXPECT_EQ(model.name(), "sequential");
  EXPECT_EQ(model.count_params(), 101770);
  EXPECT_EQ(model.summary(),
            "Model: \"sequential\"\n"
            "_________________________________________________________________\n"
            " Layer (type)                Output Shape              Param #   \n"
            "=================================================================\n"
            " flatten (Flatten)           (None, 784)               0         \n"
            "                                                                 \n"
            " dense (Dense)               (None, 128)               100480    \n"
            "                                                                 \n"
            " dropout (Dropout)           (None, 128)               0         \n"
            "                                                                 \n"
            " dense_1 (Dense)             (None, 10)                1290      \n"
            "                                                                 \n"
            "=================================================================\n"
            "Total params: 101,770\n"
            "Trainable params: 101,770\n"
            "Non-trainable params: 0\n"
            "_________________________________________________________________\n");
  Tensor p = model(random_uniform({3, 28, 28}));
  EXPECT_EQ(p.shape(), (Shape{3, 10}));
  EXPECT_NEAR(sum(p).item(), 3.0, 1e-5);
  EXPECT_THROW(model(zeros({3, 27, 28})), ShapeError);
}

TEST_F(NnTest, FunctionalModelWithTwoInputsAndOutputs) {
  SymbolicTensor image = Input({4}, kF32, "image");
  SymbolicTensor meta = Input({2}, kF32, "meta");
  Layer shared = Dense(3, {.name = "shared"});
  SymbolicTensor a = shared(image);
  SymbolicTensor b = Dense(3)(meta);
  SymbolicTensor merged = Dense(1, {.name = "score"})(a);
  Model model({image, meta}, {merged, b}, "two_headed");
  std::vector<Tensor> out = model({ones({5, 4}), ones({5, 2})});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].shape(), (Shape{5, 1}));
  EXPECT_EQ(out[1].shape(), (Shape{5, 3}));
  EXPECT_EQ(model.layers().size(), 3u);
  EXPECT_EQ(model.trainable_variables().size(), 6u);
  EXPECT_NE(model.summary().find(" score (Dense)                  (None, 1)            4           ['shared[0][0]']"),
            std::string::npos)
      << model.summary();
  EXPECT_THROW(model({ones({5, 4})}), ValueError);
  EXPECT_THROW(model({ones({5, 3}), ones({5, 2})}), ShapeError);
  SymbolicTensor stray = Input({2});
  EXPECT_THROW(Model({image}, {Dense(1)(stray)}), ValueError);
}

TEST_F(NnTest, FunctionalSummaryHasInputLayersAndConnections) {
  SymbolicTensor in = Input({4}, kF32, "features");
  Layer shared = Dense(3, {.name = "shared"});
  SymbolicTensor twice = shared(Dense(3, {.name = "pre"})(in));  // shared is applied twice
  Model model({in}, {Dense(1, {.name = "out"})(shared(twice))}, "functional_model");
  std::string rule(98, '_'), bold(98, '='), blank(98, ' ');
  EXPECT_EQ(model.summary(),
            "Model: \"functional_model\"\n" + rule + "\n" +
                " Layer (type)                   Output Shape         Param #     Connected to                     \n" +
                bold + "\n" +
                " features (InputLayer)          [(None, 4)]          0           []                               \n" +
                blank + "\n" +
                " pre (Dense)                    (None, 3)            15          ['features[0][0]']               \n" +
                blank + "\n" +
                " shared (Dense)                 (None, 3)            12          ['pre[0][0]', 'shared[0][0]']    \n" +
                blank + "\n" +
                " out (Dense)                    (None, 1)            4           ['shared[1][0]']                 \n" +
                blank + "\n" + bold + "\n" + "Total params: 31\nTrainable params: 31\nNon-trainable params: 0\n" +
                rule + "\n");
}

TEST_F(NnTest, ModelsNestAsLayers) {
  Sequential inner({Dense(4, {.input_shape = Shape{3}}), Dense(2)});
  Sequential outer({inner.as_layer(), Dense(1)});
  EXPECT_EQ(outer(ones({2, 3})).shape(), (Shape{2, 1}));
  EXPECT_EQ(outer.trainable_variables().size(), 6u);
}

TEST_F(NnTest, FrozenLayersHaveNoTrainableVariables) {
  Layer d = Dense(2);
  d(ones({1, 2}));
  d.impl().trainable = false;
  EXPECT_TRUE(d.trainable_variables().empty());
  EXPECT_EQ(d.impl().non_trainable_variables().size(), 2u);
}

TEST_F(NnTest, Initializers) {
  Tensor q = initializers::orthogonal()({4, 4}, kF64);
  Tensor qtq = matmul(q, q, true, false);
  std::vector<double> v = qtq.to_vector<double>();
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j) EXPECT_NEAR(v[i * 4 + j], i == j ? 1 : 0, 1e-9);
  }
  EXPECT_THROW(initializers::get("lecun"), ValueError);
  std::vector<float> he = initializers::he_normal()({100, 50}, kF32).to_vector<float>();
  float bound = 2 * std::sqrt(2.0f / 100) / 0.8796f;
  for (float w : he) EXPECT_LE(std::abs(w), bound + 1e-6f);
}

}  // namespace
}  // namespace gradflow
