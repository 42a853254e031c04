// TraceSteps: a timeline of some training steps (core/trace/trace.h), as TensorBoard's profile_batch
// gives in TensorFlow: what each thread did in steps [first, last) of the first epoch that has them, written as
// Chrome trace JSON to path (open it in ui.perfetto.dev). "{rank}" in path becomes the replica id, so
// each data-parallel rank writes its own file.
//
//   model.fit(x, y, {.callbacks = {TraceSteps("/tmp/steps.{rank}.trace.json", 10, 13)}});
#pragma once

#include <string>

#include "core/nn/callbacks.h"

namespace gradflow {

CallbackPtr TraceSteps(std::string path, int64_t first_step, int64_t last_step);

}  // namespace gradflow
