#include "core/tensor/threads.h"

#include <omp.h>

#include "core/tensor/error.h"

extern "C" void openblas_set_num_threads(int);

namespace gradflow {

void set_num_threads(int n) {
  if (n < 1) throw ValueError(str_cat("set_num_threads: need at least 1 thread, got ", n));
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int get_num_threads() { return omp_get_max_threads(); }

}  // namespace gradflow
