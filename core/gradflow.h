// Everything a gradflow program needs from the core: tensors, ops, random numbers, autodiff, layers,
// models, training, optimizers, losses and metrics.
#pragma once

#include "core/autodiff/tape.h"
#include "core/autodiff/variable.h"
#include "core/ops/ops.h"
#include "core/tensor/creation.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
#include "core/tensor/denormals.h"
#include "core/tensor/threads.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"
#include "core/data/sharding.h"
#include "core/nn/callbacks.h"
#include "core/nn/layers.h"
#include "core/nn/model.h"
#include "core/nn/replica_context.h"
#include "core/nn/trace_callback.h"
#include "core/nn/training.h"
#include "core/optim/optimizers.h"
#include "core/optim/schedules.h"
