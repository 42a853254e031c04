// Keras-style training: compile, fit, evaluate, predict, and the History fit returns.
//
// The free functions behind Model::compile/fit/evaluate/predict (core/nn/model.h), usable on any
// ModelImpl, plus train_step for custom loops that still want the compiled loss and metrics.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/nn/model.h"
#include "core/nn/training_types.h"

namespace gradflow {

void compile(Model& model, OptimizerSpec optimizer, LossSpec loss, std::vector<MetricSpec> metrics = {});
History fit(Model& model, const Tensor& x, const Tensor& y, const FitOptions& options = {});
Logs evaluate(Model& model, const Tensor& x, const Tensor& y, const EvaluateOptions& options = {});
Tensor predict(Model& model, const Tensor& x, int64_t batch_size = 32);
// Datasets yield (x, y) batches; an epoch is one pass over the dataset (which must be finite).
History fit(Model& model, const Dataset& dataset, const FitOptions& options = {});
Logs evaluate(Model& model, const Dataset& dataset, const EvaluateOptions& options = {});

// One optimisation step on one batch; returns the batch's loss and metrics (metrics accumulate).
Logs train_step(ModelImpl& model, const Tensor& x, const Tensor& y);

}  // namespace gradflow
