#include "core/autodiff/tape.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "core/ops/ops.h"

namespace gradflow {

struct TapeEntry {
  const OpDef* op;
  TensorList inputs;
  TensorList outputs;
  Attrs attrs;
};

struct GradientTape::State {
  TapeOptions options;
  bool recording = true;
  bool used = false;  // a non-persistent tape has computed its gradient
  std::vector<TapeEntry> entries;
  absl::flat_hash_set<uint64_t> tracked;  // ids of watched tensors and of everything computed from them
  std::vector<Variable> watched_variables;
};

namespace {

thread_local std::vector<GradientTape::State*> active_tapes;
thread_local bool recording_suspended = false;

void track(GradientTape::State& tape, const Tensor& t) { tape.tracked.insert(t.id()); }

}  // namespace

namespace autodiff {

bool any_tape_recording() { return !active_tapes.empty() && !recording_suspended; }

void record_op(const OpDef& op, const TensorList& inputs, const TensorList& outputs, const Attrs& attrs) {
  if (recording_suspended) return;
  for (GradientTape::State* tape : active_tapes) {
    if (!tape->recording) continue;
    bool watched = std::any_of(inputs.begin(), inputs.end(),
                               [&](const Tensor& t) { return tape->tracked.contains(t.id()); });
    if (!watched) continue;
    tape->entries.push_back({&op, inputs, outputs, attrs});
    for (const Tensor& t : outputs) track(*tape, t);
  }
}

void variable_read(const Variable& v) {
  if (recording_suspended || !v.trainable()) return;
  for (GradientTape::State* tape : active_tapes) {
    if (!tape->recording || !tape->options.watch_accessed_variables) continue;
    if (tape->tracked.insert(v.id()).second) tape->watched_variables.push_back(v);
  }
}

SeparateRecording::SeparateRecording() : tapes_(std::exchange(active_tapes, {})), suspended_(recording_suspended) {
  recording_suspended = false;
}
SeparateRecording::~SeparateRecording() {
  active_tapes = std::move(tapes_);
  recording_suspended = suspended_;
}

SuspendRecording::SuspendRecording() : previous_(recording_suspended) { recording_suspended = true; }
SuspendRecording::~SuspendRecording() { recording_suspended = previous_; }

}  // namespace autodiff

GradientTape::GradientTape(TapeOptions options) : state_(std::make_unique<State>()) {
  state_->options = options;
  active_tapes.push_back(state_.get());
}

GradientTape::~GradientTape() {
  auto it = std::find(active_tapes.begin(), active_tapes.end(), state_.get());
  if (it != active_tapes.end()) active_tapes.erase(it);
}

void GradientTape::watch(const Tensor& t) { track(*state_, t); }

void GradientTape::watch(const Variable& v) {
  if (state_->tracked.insert(v.id()).second) state_->watched_variables.push_back(v);
}

std::vector<Variable> GradientTape::watched_variables() const { return state_->watched_variables; }

void GradientTape::reset() {
  state_->entries.clear();
  state_->tracked.clear();
  state_->watched_variables.clear();
  state_->used = false;
  state_->recording = true;
}

GradientTape::Pause::Pause(GradientTape& tape) : tape_(tape), was_recording_(tape.state_->recording) {
  tape_.state_->recording = false;
}
GradientTape::Pause::~Pause() { tape_.state_->recording = was_recording_; }

std::vector<Tensor> GradientTape::gradient(const Tensor& target, const std::vector<GradSource>& source_list,
                                           const Tensor& output_gradient) {
  return gradient(target, source_list, GradientReadyFn(), output_gradient);
}

std::vector<Tensor> GradientTape::gradient(const Tensor& target, const std::vector<GradSource>& source_list,
                                           const GradientReadyFn& on_ready, const Tensor& output_gradient) {
  return gradient(target, source_list, Hooks{on_ready, {}}, output_gradient);
}

namespace {

// Whether a tape other than `self` records on this thread (it would record backward's ops, and keep their
// outputs: those must not live in memory the caller overwrites later).
bool other_tape_recording(const GradientTape::State* self) {
  if (recording_suspended) return false;
  return std::any_of(active_tapes.begin(), active_tapes.end(),
                     [&](const GradientTape::State* t) { return t != self && t->recording; });
}

}  // namespace

std::vector<Tensor> GradientTape::gradient(const Tensor& target, const std::vector<GradSource>& source_list,
                                           const Hooks& hooks, const Tensor& output_gradient) {
  const GradientReadyFn& on_ready = hooks.on_ready;
  std::vector<Tensor> sources;
  sources.reserve(source_list.size());
  for (const GradSource& s : source_list) sources.push_back(s.tensor());
  State& s = *state_;
  if (s.used) {
    throw StateError("GradientTape.gradient: a non-persistent tape can compute gradients only once; "
                     "create it with TapeOptions{.persistent = true} to call gradient() again");
  }
  if (!target.defined()) throw StateError("GradientTape.gradient: the target is an undefined tensor");
  if (output_gradient.defined() && output_gradient.shape() != target.shape()) {
    throw ShapeError(str_cat("GradientTape.gradient: output_gradient shape ", shape_str(output_gradient.shape()),
                                  " differs from the target's ", shape_str(target.shape())));
  }
  // The gradient computation is recorded by enclosing tapes, never by this one.
  bool was_recording = s.recording;
  s.recording = false;
  if (!s.options.persistent) s.used = true;

  // Forward sweep: which recorded ops lie on a path from a source.
  absl::flat_hash_set<uint64_t> reached;
  for (const Tensor& src : sources) {
    if (!src.defined()) throw StateError("GradientTape.gradient: a source is an undefined tensor");
    // As in TF, a source this tape never watched (nor computed from a watched one) gets no gradient.
    if (s.tracked.contains(src.id())) reached.insert(src.id());
  }
  std::vector<bool> relevant(s.entries.size(), false);
  for (size_t i = 0; i < s.entries.size(); ++i) {
    const TapeEntry& e = s.entries[i];
    bool hit = std::any_of(e.inputs.begin(), e.inputs.end(), [&](const Tensor& t) { return reached.contains(t.id()); });
    if (!hit) continue;
    relevant[i] = true;
    for (const Tensor& t : e.outputs) reached.insert(t.id());
  }

  absl::flat_hash_map<uint64_t, Tensor> grads;
  grads[target.id()] = output_gradient.defined() ? output_gradient.to(target.device()) : ones_like(target);

  // For on_ready: a source's gradient is final once the earliest relevant op that reads it has run
  // backward (ops run backward in reverse record order). Sources no relevant op reads are final now.
  std::vector<std::vector<size_t>> ready_after(s.entries.size());  // entry -> sources final after it
  if (on_ready) {
    absl::flat_hash_map<uint64_t, size_t> first_reader;  // source id -> earliest relevant entry reading it
    for (size_t i = 0; i < s.entries.size(); ++i) {
      if (!relevant[i]) continue;
      for (const Tensor& in : s.entries[i].inputs) first_reader.try_emplace(in.id(), i);
    }
    for (size_t k = 0; k < sources.size(); ++k) {
      auto it = first_reader.find(sources[k].id());
      if (it != first_reader.end() && sources[k].id() != target.id()) {
        ready_after[it->second].push_back(k);
      } else {
        auto g = grads.find(sources[k].id());
        on_ready(k, g == grads.end() ? Tensor() : g->second);
      }
    }
  }

  // Destinations, per entry and input: for a source whose gradient comes whole from one op (a leaf, read
  // once by one relevant op, listed once), so that op's gradient function writes it in place.
  absl::flat_hash_map<size_t, TensorList> destinations;
  if (hooks.destination && !other_tape_recording(&s)) {
    absl::flat_hash_map<uint64_t, int> listed;  // source id -> times in the list
    for (const Tensor& src : sources) ++listed[src.id()];
    struct Read {
      int count = 0;
      size_t entry = 0, input = 0;
    };
    absl::flat_hash_map<uint64_t, Read> reads;  // source id -> its reads by relevant ops
    absl::flat_hash_set<uint64_t> produced;     // sources some recorded op computed: not leaves
    for (size_t i = 0; i < s.entries.size(); ++i) {
      if (!relevant[i]) continue;
      const TapeEntry& e = s.entries[i];
      for (size_t j = 0; j < e.inputs.size(); ++j) {
        if (!listed.contains(e.inputs[j].id())) continue;
        Read& r = reads[e.inputs[j].id()];
        r = {r.count + 1, i, j};
      }
      for (const Tensor& t : e.outputs) {
        if (listed.contains(t.id())) produced.insert(t.id());
      }
    }
    for (size_t k = 0; k < sources.size(); ++k) {
      const uint64_t id = sources[k].id();
      auto r = reads.find(id);
      if (r == reads.end() || r->second.count != 1 || listed[id] != 1 || produced.contains(id) || id == target.id()) {
        continue;
      }
      Tensor dest = hooks.destination(k);
      if (!dest.defined()) continue;
      TensorList& list = destinations[r->second.entry];
      list.resize(s.entries[r->second.entry].inputs.size());
      list[r->second.input] = std::move(dest);
    }
  }

  for (size_t i = s.entries.size(); i-- > 0;) {
    if (!relevant[i]) continue;
    const TapeEntry& e = s.entries[i];
    TensorList grad_outputs;
    bool any = false;
    for (const Tensor& out : e.outputs) {
      auto it = grads.find(out.id());
      if (it != grads.end()) {
        grad_outputs.push_back(it->second);
        any = true;
      } else {
        grad_outputs.push_back(Tensor());
      }
    }
    if (any) {
      for (size_t k = 0; k < e.outputs.size(); ++k) {
        if (!grad_outputs[k].defined()) grad_outputs[k] = zeros_like(e.outputs[k]);
      }
      uint64_t needed = 0;
      for (size_t k = 0; k < e.inputs.size() && k < 64; ++k) {
        if (reached.contains(e.inputs[k].id())) needed |= uint64_t{1} << k;
      }
      if (e.inputs.size() > 64) needed = ~uint64_t{0};
      auto dest = destinations.find(i);
      TensorList input_grads = e.op->grad(GradContext{e.inputs, e.outputs, grad_outputs, e.attrs, needed,
                                                      dest == destinations.end() ? nullptr : &dest->second});
      for (size_t k = 0; k < e.inputs.size() && k < input_grads.size(); ++k) {
        const Tensor& in = e.inputs[k];
        if (!input_grads[k].defined() || !reached.contains(in.id())) continue;
        auto [it, inserted] = grads.try_emplace(in.id(), input_grads[k]);
        if (!inserted) it->second = add(it->second, input_grads[k]);
      }
    }
    for (size_t k : ready_after[i]) {
      auto g = grads.find(sources[k].id());
      on_ready(k, g == grads.end() ? Tensor() : g->second);
    }
  }

  std::vector<Tensor> result;
  result.reserve(sources.size());
  for (const Tensor& src : sources) {
    auto it = grads.find(src.id());
    result.push_back(it == grads.end() ? Tensor() : it->second);
  }
  if (s.options.persistent) s.recording = was_recording;
  return result;
}

Tensor stop_gradient(const Tensor& t) { return make_view(t, t.shape(), t.strides(), t.offset()); }

}  // namespace gradflow
