// Everything a gradflow program needs from the core: tensors, ops, random numbers and autodiff.
#pragma once

#include "core/autodiff/tape.h"
#include "core/autodiff/variable.h"
#include "core/ops/ops.h"
#include "core/tensor/creation.h"
#include "core/tensor/random.h"
#include "core/tensor/tensor.h"
