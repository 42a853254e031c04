// Everything for training steps: optimizers (with learning-rate schedules), losses and metrics.
//
//   using namespace gradflow;
//   optimizers::Adam adam({.learning_rate = 1e-3});
//   losses::SparseCategoricalCrossentropy loss_fn({.from_logits = true});
//   metrics::SparseCategoricalAccuracy accuracy;
#pragma once

#include "core/optim/losses.h"
#include "core/optim/metrics.h"
#include "core/optim/optimizer.h"
#include "core/optim/optimizers.h"
#include "core/optim/schedules.h"
