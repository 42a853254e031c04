// What the strategy tests share: each rank's "rank R: ... ok|FAILED" lines (the multi-rank tests pass on
// every rank printing no FAILED), the distance between two models' variables, and the checkpoint tests' model.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "core/gradflow.h"

namespace gradflow::testing {

// The checkpoint rank programs' model: 8 features, Dense(16, relu), Dropout(0.25), Dense(4, softmax), Adam;
// layer names reset, so every process (and every restart) names the variables alike.
inline Sequential dropout_classifier() {
  reset_layer_names();
  Sequential m({Dense(16, {.activation = "relu", .input_shape = Shape{8}}), Dropout(0.25),
                Dense(4, {.activation = "softmax"})});
  m.compile("adam", "sparse_categorical_crossentropy");
  return m;
}

// Failed checks so far in this process (its exit status).
inline int& failures() {
  static int count = 0;
  return count;
}

inline void check(bool ok, int rank, const std::string& what) {
  std::printf("rank %d: %s %s\n", rank, what.c_str(), ok ? "ok" : "FAILED");
  failures() += !ok;
}

// The largest |a - b| / max(1e-3, |b|) over every element of every variable (same models, same order).
inline double max_relative_difference(const std::vector<Variable>& a, const std::vector<Variable>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<double> x = a[i].value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
    std::vector<double> y = b[i].value_unwatched().to(kF64).reshape({-1}).to_vector<double>();
    for (size_t k = 0; k < x.size(); ++k) worst = std::max(worst, std::abs(x[k] - y[k]) / std::max(1e-3, std::abs(y[k])));
  }
  return worst;
}

// Every variable's values, in order: for bitwise comparisons of whole models.
inline std::vector<std::vector<float>> weights(Sequential& m) {
  std::vector<std::vector<float>> out;
  for (const Variable& v : m.variables()) out.push_back(v.value_unwatched().reshape({-1}).to_vector<float>());
  return out;
}

// A rank program's `--store-dir DIR` (a directory every rank shares); "" after printing the usage.
inline std::string store_dir_argument(int argc, char** argv, const char* program) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--store-dir") return argv[i + 1];
  }
  std::fprintf(stderr, "usage: %s --store-dir DIR (a directory all ranks share)\n", program);
  return "";
}

}  // namespace gradflow::testing
