// BatchNormalization and LayerNormalization over the last axis.
#include "core/autodiff/tape.h"
#include "core/nn/layers.h"
#include "core/nn/replica_context.h"
#include "core/ops/ops.h"

namespace gradflow {
namespace {

class BatchNormalizationImpl : public LayerImpl {
 public:
  explicit BatchNormalizationImpl(BatchNormalizationOptions o, const char* type = "batch_normalization")
      : LayerImpl(type, o.name), options_(std::move(o)) {
    if (!(options_.momentum >= 0 && options_.momentum <= 1)) {
      throw ValueError(str_cat("BatchNormalization: momentum ", options_.momentum, " is not in [0, 1]"));
    }
  }

 protected:
  void build(const std::vector<Shape>& shapes) override {
    int64_t c = shapes.at(0).back();
    gamma_ = add_weight("gamma", {c}, initializers::ones(), options_.scale);
    beta_ = add_weight("beta", {c}, initializers::zeros(), options_.center);
    // Each process's replica keeps them from its own rows; strategies average them (VariableAggregation).
    moving_mean_ = add_weight("moving_mean", {c}, initializers::zeros(), false, kF32, VariableAggregation::kMean);
    moving_variance_ = add_weight("moving_variance", {c}, initializers::ones(), false, kF32, VariableAggregation::kMean);
  }
  Tensor call(const Tensor& x, bool training) override {
    if (!training) {
      return batch_norm_inference(x, moving_mean_.value(), moving_variance_.value(), gamma_.value(), beta_.value(),
                                  options_.epsilon);
    }
    BatchNormResult r = batch_norm_training(x, gamma_.value(), beta_.value(), options_.epsilon);
    update_moving(r.batch_mean, r.batch_variance);
    return r.y;
  }
  void update_moving(const Tensor& batch_mean, const Tensor& batch_variance) {
    // Replicas on threads share these variables: replica 0 keeps them (from its rows; from the global
    // batch with SyncBatchNormalization, where every replica computes the same), the others leave them.
    if (ReplicaContext* ctx = current_replica_context(); ctx && ctx->in_process() && ctx->replica_id() != 0) return;
    autodiff::SuspendRecording no_record;
    double m = options_.momentum;
    moving_mean_.assign(moving_mean_.value_unwatched() * m + batch_mean * (1 - m));
    moving_variance_.assign(moving_variance_.value_unwatched() * m + batch_variance * (1 - m));
  }

  BatchNormalizationOptions options_;
  Variable gamma_, beta_, moving_mean_, moving_variance_;
};

// SyncBatchNormalization: the batch statistics are those of the global batch, every replica's rows
// together (one cross_replica_sum of the per-channel sums, sums of squares and counts), so replicas
// normalize identically, their moving statistics stay equal, and N replicas of B rows train as one of N x B.
class SyncBatchNormalizationImpl : public BatchNormalizationImpl {
 public:
  explicit SyncBatchNormalizationImpl(BatchNormalizationOptions o) : BatchNormalizationImpl(std::move(o), "sync_batch_normalization") {}
  bool synchronizes_replicas() const override { return true; }

 protected:
  Tensor call(const Tensor& x, bool training) override {
    if (!training) return BatchNormalizationImpl::call(x, false);
    const int64_t c = x.dim(-1);
    std::vector<int64_t> axes;
    for (int64_t a = 0; a + 1 < x.rank(); ++a) axes.push_back(a);
    Tensor rows = full({1}, static_cast<double>(x.numel() / std::max<int64_t>(c, 1)), x.dtype(), x.device());
    // Sums of x - shift rather than of x: the variance is E[(x-shift)^2] - E[x-shift]^2 exactly for any
    // constant shift, and with the moving mean (the same on every replica) the two terms stay small, so
    // the difference loses far less to rounding than E[x^2] - E[x]^2 would.
    // A copy: under replicas on threads, replica 0 updates the moving mean in place once every replica
    // has passed the sum below, while the others still use the shift.
    Tensor shift = moving_mean_.value_unwatched() + 0.0;
    Tensor centered = x - shift;
    Tensor totals = cross_replica_sum(concat({sum(centered, axes), sum(centered * centered, axes), rows}, 0));
    Tensor global_rows = totals.slice(0, 2 * c, 2 * c + 1);
    Tensor count = maximum(global_rows, full({1}, 1.0, x.dtype(), x.device()));
    Tensor centered_mean = totals.slice(0, 0, c) / count;
    Tensor variance = maximum(totals.slice(0, c, 2 * c) / count - centered_mean * centered_mean,
                              zeros({c}, x.dtype(), x.device()));
    Tensor mean = centered_mean + shift;
    Tensor y = (x - mean) * rsqrt(variance + options_.epsilon) * gamma_.value() + beta_.value();
    // A step in which no replica has rows (fit's last, which finds the epoch over) leaves them alone.
    if (global_rows.to(kF64).item() > 0) update_moving(mean, variance);
    return y;
  }
};

class LayerNormalizationImpl : public LayerImpl {
 public:
  explicit LayerNormalizationImpl(LayerNormalizationOptions o)
      : LayerImpl("layer_normalization", o.name), options_(std::move(o)) {}

 protected:
  void build(const std::vector<Shape>& shapes) override {
    int64_t c = shapes.at(0).back();
    gamma_ = add_weight("gamma", {c}, initializers::ones(), options_.scale);
    beta_ = add_weight("beta", {c}, initializers::zeros(), options_.center);
  }
  Tensor call(const Tensor& x, bool) override {
    return layer_norm(x, gamma_.value(), beta_.value(), options_.epsilon);
  }

 private:
  LayerNormalizationOptions options_;
  Variable gamma_, beta_;
};

class EmbeddingImpl : public LayerImpl {
 public:
  EmbeddingImpl(int64_t input_dim, int64_t output_dim, EmbeddingOptions o)
      : LayerImpl("embedding", o.name), input_dim_(input_dim), output_dim_(output_dim), options_(std::move(o)) {
    if (input_dim <= 0 || output_dim <= 0) {
      throw ValueError(str_cat("Embedding: input_dim and output_dim must be positive, got ", input_dim, " and ",
                               output_dim));
    }
  }

 protected:
  void build(const std::vector<Shape>&) override {
    embeddings_ = add_weight("embeddings", {input_dim_, output_dim_}, initializers::get(options_.embeddings_initializer));
  }
  Tensor call(const Tensor& ids, bool) override {
    Tensor int_ids = is_floating(ids.dtype()) ? ids.to(kI64) : ids;
    return embedding_lookup(embeddings_.value(), int_ids);
  }

 private:
  int64_t input_dim_, output_dim_;
  EmbeddingOptions options_;
  Variable embeddings_;
};

class LSTMImpl : public LayerImpl {
 public:
  LSTMImpl(int64_t units, LSTMOptions o) : LayerImpl("lstm", o.name), units_(units), options_(std::move(o)) {
    if (units <= 0) throw ValueError(str_cat("LSTM: units must be positive, got ", units));
    apply_activation(options_.activation, zeros({1}));
    apply_activation(options_.recurrent_activation, zeros({1}));
  }

 protected:
  void build(const std::vector<Shape>& shapes) override {
    const Shape& s = shapes.at(0);
    if (s.size() != 3) throw ShapeError(str_cat(name(), ": LSTM needs [batch, time, features], got ", shape_str(s)));
    kernel_ = add_weight("kernel", {s[2], 4 * units_}, initializers::glorot_uniform());
    recurrent_kernel_ = add_weight("recurrent_kernel", {units_, 4 * units_}, initializers::orthogonal());
    int64_t u = units_;
    Initializer bias_init = options_.unit_forget_bias
                                ? Initializer([u](const Shape&, DType d) {
                                    return concat({zeros({u}, d), ones({u}, d), zeros({2 * u}, d)});
                                  })
                                : initializers::zeros();
    bias_ = add_weight("bias", {4 * units_}, bias_init);
  }
  // Gates in Keras' order: input, forget, cell, output.
  Tensor call(const Tensor& x, bool) override {
    int64_t batch = x.dim(0), steps = x.dim(1);
    Tensor projected = add(matmul(x.reshape({batch * steps, x.dim(2)}), kernel_.value()), bias_.value())
                           .reshape({batch, steps, 4 * units_});
    Tensor h = zeros({batch, units_}, x.dtype(), x.device());
    Tensor c = h;
    std::vector<Tensor> outputs;
    for (int64_t t = 0; t < steps; ++t) {
      Tensor z = add(projected.slice(1, t, t + 1).squeeze(1), matmul(h, recurrent_kernel_.value()));
      std::vector<Tensor> g = split(z, 4, 1);
      Tensor i = apply_activation(options_.recurrent_activation, g[0]);
      Tensor f = apply_activation(options_.recurrent_activation, g[1]);
      Tensor candidate = apply_activation(options_.activation, g[2]);
      Tensor o = apply_activation(options_.recurrent_activation, g[3]);
      c = add(mul(f, c), mul(i, candidate));
      h = mul(o, apply_activation(options_.activation, c));
      if (options_.return_sequences) outputs.push_back(h);
    }
    return options_.return_sequences ? stack(outputs, 1) : h;
  }

 private:
  int64_t units_;
  LSTMOptions options_;
  Variable kernel_, recurrent_kernel_, bias_;
};

}  // namespace

Layer BatchNormalization(BatchNormalizationOptions options) {
  return Layer(std::make_shared<BatchNormalizationImpl>(std::move(options)));
}

Layer SyncBatchNormalization(BatchNormalizationOptions options) {
  return Layer(std::make_shared<SyncBatchNormalizationImpl>(std::move(options)));
}
Layer LayerNormalization(LayerNormalizationOptions options) {
  return Layer(std::make_shared<LayerNormalizationImpl>(std::move(options)));
}
Layer Embedding(int64_t input_dim, int64_t output_dim, EmbeddingOptions options) {
  return Layer(std::make_shared<EmbeddingImpl>(input_dim, output_dim, std::move(options)));
}
Layer LSTM(int64_t units, LSTMOptions options) { return Layer(std::make_shared<LSTMImpl>(units, std::move(options))); }

}  // namespace gradflow
