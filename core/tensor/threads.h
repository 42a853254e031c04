// The number of CPU threads ops use (OpenMP loops and OpenBLAS, which share one OpenMP pool).
#pragma once

namespace gradflow {

// n >= 1; ValueError otherwise.
void set_num_threads(int n);
int get_num_threads();

}  // namespace gradflow
