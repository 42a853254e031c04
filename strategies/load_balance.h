// Splitting a step's global batch among replicas that are not equally fast (DataParallelOptions::
// balance_load): each replica's rows in proportion to its measured speed, so that all finish their
// forward and backward at about the same time and none waits in the all-reduce for a slower one. The
// averaged gradient is the same whatever the split (each replica is weighted by its rows).
#pragma once

#include <cstdint>
#include <vector>

namespace gradflow::strategies {

// Bounds [b_0 = 0, b_1, ..., b_n = total] of n parts of `total` rows in proportion to `speeds` (rows per
// second, one per replica). Each part gets floor(total x share), the rows left over go to the largest
// fractional parts (ties: the lower replica), and while total >= n no part is empty (a replica without
// rows could not be timed). Equal parts (numpy.array_split) when a speed is missing or not positive.
// A pure function of its arguments, so every rank computes the same split from the same speeds.
std::vector<int64_t> balanced_bounds(int64_t total, const std::vector<double>& speeds);

// Each replica's speed after a step that gave replica r rows[r] rows in seconds[r] (its work since its
// previous all-reduce): an exponential moving average of rows / seconds, so that one noisy step does not swing the
// split (replicas with no rows or no time keep their old speed).
std::vector<double> updated_speeds(const std::vector<double>& speeds, const std::vector<int64_t>& rows,
                                   const std::vector<double>& seconds);

}  // namespace gradflow::strategies
